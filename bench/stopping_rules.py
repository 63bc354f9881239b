"""Benchmark: early-stopping rules replayed on every recorded validation curve (all studies, all models).

    python -m bench.stopping_rules [--rules 'epochs10=10' 'default=10:570' 'frac50=10:0:0.5' ...]

Every finished study cell (`studies/results/<study>/<row>-s<seed>.json`) keeps its validation curve
(epoch, optimizer step, validation NDCG@10 after each epoch). A rule — `patience[:patience_steps
[:patience_frac]]`, `pipeline.loop.EarlyStopping` — is run over each curve as training would have
seen it: the epochs it trains, the epoch it keeps, and that epoch's validation value minus the best
of the recorded curve (<= 0: what the rule gives up). Training is deterministic per seed and no
schedule depends on the stopping epoch, so a shorter rule's run is a prefix of the recorded one; a
curve that ends before the rule would stop (its own rule stopped first) says nothing about the rule
and is counted as `ran out`, not averaged. Validation only: the test views are never read.
Writes bench/results/stopping-rules.json and prints one row per (data set, rule).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench import ROOT
from pipeline.loop import EarlyStopping
from pipeline.results import load_rows, save, table

RULES = ["epochs10=10", "epochs20=20", "epochs10_steps570=10:570", "frac25=10:0:0.25", "frac50=10:0:0.5", "frac100=10:0:1"]


def rule(spec: str) -> tuple[str, tuple]:
    name, values = spec.split("=")
    parts = [float(x) for x in values.split(":")] + [0, 0]
    return name, (int(parts[0]), int(parts[1]), parts[2])


def curves(results: Path) -> list[dict]:
    """Every finished cell's validation curve with its study, row, seed, model and data set."""
    out = []
    for path in sorted(results.glob("*/*-s*.json")):
        payload = json.loads(path.read_text())
        for r in payload.get("rows", []):
            curve = r.get("curve") or {}
            key = next((k for k in curve if k.startswith("valid/")), None)
            if key and len(curve[key]) > 1:
                out.append({"study": payload.get("study", path.parent.name), "row": payload.get("row", path.stem),
                            "seed": r.get("seed"), "model": r.get("model"), "dataset": r.get("dataset"),
                            "points": list(zip(curve["epoch"], curve["step"], curve[key]))})
    return out


def replay(runs: list[dict], rules: dict[str, tuple]) -> list[dict]:
    rows = []
    for dataset in sorted({r["dataset"] for r in runs}):
        mine = [r for r in runs if r["dataset"] == dataset]
        for name, (patience, steps, frac) in rules.items():
            done, ran_out = [], 0
            for r in mine:
                stop = EarlyStopping(patience, steps, frac).replay(r["points"])
                if not stop.should_stop(r["points"][-1][1]) and stop.stopped_at == r["points"][-1][0]:
                    ran_out += 1
                    continue
                done.append({"delta": stop.best - max(p[2] for p in r["points"]), "epochs": stop.stopped_at,
                             "share": stop.stopped_at / r["points"][-1][0], "run": f"{r['study']}/{r['row']} s{r['seed']}"})
            deltas = np.array([d["delta"] for d in done]) if done else np.zeros(0)
            worst = min(done, key=lambda d: d["delta"]) if done else None
            rows.append({"dataset": dataset, "rule": name, "patience": patience, "patience_steps": steps,
                         "patience_frac": frac, "runs": len(mine), "replayed": len(done), "ran_out": ran_out,
                         "mean_delta": float(deltas.mean()) if done else None,
                         "worst_delta": worst["delta"] if worst else None, "worst_run": worst["run"] if worst else None,
                         "gave_up_0.005": int((deltas < -0.005).sum()),
                         "mean_share": float(np.mean([d["share"] for d in done])) if done else None,
                         "models": sorted({r["model"] for r in mine})})
    return rows


def print_table(rows: list[dict]) -> None:
    print(table(["data set", "rule", "runs replayed / ran out", "epochs (share of the recorded run)", "Δ valid mean",
                 "Δ valid worst (run)", "runs giving up > 0.005"],
                [[r["dataset"], r["rule"], f"{r['replayed']} / {r['ran_out']}",
                  f"{r['mean_share']:.0%}" if r["mean_share"] is not None else "—",
                  f"{r['mean_delta']:+.4f}" if r["mean_delta"] is not None else "—",
                  f"{r['worst_delta']:+.4f} ({r['worst_run']})" if r["worst_delta"] is not None else "—",
                  r["gave_up_0.005"]] for r in rows]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rules", nargs="+", default=RULES, help="name=patience[:patience_steps[:patience_frac]]")
    ap.add_argument("--results", default=str(ROOT / "studies" / "results"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "stopping-rules.json"))
    ap.add_argument("--report", metavar="JSON", help="only print the table of this result file")
    args = ap.parse_args()
    if args.report:
        return print_table(load_rows(args.report))
    rows = replay(curves(Path(args.results)), dict(rule(s) for s in args.rules))
    save(args.out, rows)
    print_table(rows)


if __name__ == "__main__":
    main()
