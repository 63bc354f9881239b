"""Benchmark: which SASRec layout is the default, and how long a patience — from measured curves.

    python -m bench.sasrec_options --seeds 0 1 2 --epochs 120      # the runs (one process, one thread)
    python -m bench.sasrec_options --report bench/results/sasrec-options/runs-*.json   # the tables
    python -m bench.sasrec_options --report bench/results/sasrec-options/runs-*.json --race-rows post_ln:visible \
        --chosen 570 --out bench/results/recbole-race/ours-sasrec-s0-1-2.json   # the race's SASRec rows

ML-100K (our 5-core preprocessing), RecBole's protocol and hyper-parameters as in
`bench/recbole_compare.py` (no history masking; hidden 64, 2 layers, 2 heads, inner 256, dropout
0.5, Adam 1e-3, batch 128 windows, full-softmax CE). Options: `variant` pre_ln | post_ln ×
`padding` blocked | visible. Each run trains for a fixed budget with no early stopping and records,
after every epoch, the optimizer step, the validation metrics and — **for this analysis only** —
the test metrics, and every user's test rank at each epoch that sets a new best validation score
(the only epochs any stopping rule can select). Training never reads the test ranks (they are computed in the epoch
callback with the model in eval mode, which draws no random numbers), so an early-stopped run is
exactly a prefix of the recorded one: every stopping rule can be replayed on the curves.

The report replays "stop once the best validation NDCG@10 is P optimizer steps old" for several P,
takes the best-validation epoch before the stop, and gives its test metrics (mean ± std over seeds),
the epochs and wall seconds it needed, and paired bootstrap intervals between options
(`pipeline.compare`) at the chosen P.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from pipeline.results import mean_std, save, table

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = [("pre_ln", "blocked"), ("pre_ln", "visible"), ("post_ln", "blocked"), ("post_ln", "visible")]
RECBOLE_SASREC = {"hidden": 64, "layers": 2, "heads": 2, "inner": 256, "dropout": 0.5, "max_len": 50}
PATIENCES = [190, 380, 570, 950, 1520]  # optimizer steps (ML-100K: 19 steps per epoch -> 10, 20, 30, 50, 80 epochs)


def run(split, variant: str, padding: str, seed: int, epochs: int, threads: int) -> dict:
    import torch

    from pipeline import builder
    from pipeline.config import TrainConfig
    from pipeline.evaluation import ProtocolConfig, evaluate_queries
    from pipeline.loop import seed_everything
    from pipeline.trainer import fit

    protocol = ProtocolConfig(mask_history=False)
    test = split.test_queries(50)
    seed_everything(seed)  # before building: the initial weights are part of the seeded run
    net = builder.build("sasrec", RECBOLE_SASREC | {"variant": variant, "padding": padding},
                        builder.inputs_for(split.training, 50, "ce"))
    curve, test_ranks, wall, best = [], {}, 0.0, -1.0

    def on_epoch(row: dict) -> None:
        nonlocal wall, best
        wall += row["train_s"] + row["eval_s"]
        t = time.perf_counter()
        metrics, ranks, _ = evaluate_queries(net, test, protocol, torch.device("cpu"))  # analysis only
        if row["valid/ndcg@10"] > best:  # only a new best can be the selected epoch of some stopping rule
            best = row["valid/ndcg@10"]
            test_ranks[str(row["epoch"])] = ranks.astype(np.float32).tolist()
        curve.append({k: row[k] for k in ("epoch", "step", "loss", "valid/ndcg@10", "valid/hr@10", "valid/mrr@10")}
                     | {"wall_s": wall, "test/ndcg@10": metrics["ndcg@10"], "test/hr@10": metrics["hr@10"],
                        "test_eval_s": time.perf_counter() - t})

    cfg = TrainConfig(epochs=epochs, batch_size=128, lr=1e-3, patience=epochs, seed=seed, threads=threads)
    fit(net, split.training, cfg, protocol, 50, on_epoch)
    return {"variant": variant, "padding": padding, "seed": seed, "curve": curve, "test_ranks": test_ranks}


def replay(runrow: dict, patience: int) -> dict:
    """The early-stopped run inside a recorded one: the training loop's own rule (pipeline.loop.
    EarlyStopping, patience in optimizer steps) replayed over its curve; the result is the
    best-validation epoch before the stop."""
    from pipeline.loop import EarlyStopping
    from pipeline.metrics import metrics_from_ranks

    curve = runrow["curve"]
    rule = EarlyStopping(patience_steps=patience).replay([(r["epoch"], r["step"], r["valid/ndcg@10"]) for r in curve])
    stop = next(r for r in curve if r["epoch"] == rule.stopped_at)
    ranks = np.asarray(runrow["test_ranks"][str(rule.best_epoch)], dtype=float)
    m = metrics_from_ranks(ranks, [10])
    return {"best_epoch": rule.best_epoch, "stop_epoch": rule.stopped_at, "valid": rule.best,
            "wall_to_stop_s": stop["wall_s"], "ranks": ranks, "censored": not rule.should_stop(stop["step"]),
            **{f"test/{k}": v for k, v in m.items()}}


def load_runs(files: list[str], budget: int | None) -> list[dict]:
    """The recorded runs, each cut to its first `budget` epochs (None: as recorded). A run without
    early stopping is the same for its first N epochs whatever its budget, so runs recorded with
    different budgets compare on the smallest one; mixing budgets unequal is refused."""
    rows = [r for f in files for r in json.loads(Path(f).read_text())["rows"]]
    budget = budget or min(len(r["curve"]) for r in rows)
    if any(len(r["curve"]) < budget for r in rows):
        raise SystemExit(f"--budget {budget}: some runs recorded fewer epochs "
                         f"({sorted({len(r['curve']) for r in rows})}); use at most the smallest")
    return [r | {"curve": r["curve"][:budget]} for r in rows]


def report(files: list[str], chosen: int, budget: int | None = None) -> None:
    import polars as pl

    from pipeline.compare import compare

    rows = load_runs(files, budget)
    options = sorted({(r["variant"], r["padding"]) for r in rows}, key=OPTIONS.index)
    print(f"runs: {len(rows)}; budget {max(len(r['curve']) for r in rows)} epochs; seeds "
          f"{sorted({r['seed'] for r in rows})}\n")
    lines = []
    for opt in options:
        mine = [r for r in rows if (r["variant"], r["padding"]) == opt]
        for p in PATIENCES:
            rep = [replay(r, p) for r in mine]
            plateau = [np.mean([c["test/ndcg@10"] for c in r["curve"][20:50]]) for r in mine]
            lines.append([f"{opt[0]}, padding {opt[1]}", p, mean_std([x["test/ndcg@10"] for x in rep]),
                          mean_std([x["test/hr@10"] for x in rep]), mean_std([x["valid"] for x in rep]),
                          "/".join(str(x["best_epoch"]) for x in rep), "/".join(
                              f"{x['stop_epoch']}{'+' if x['censored'] else ''}" for x in rep),
                          mean_std([x["wall_to_stop_s"] for x in rep], "{:.0f}"), mean_std(plateau)])
    print(table(["option", "patience (steps)", "selected test NDCG@10", "selected test HR@10", "best valid NDCG@10",
                 "best epochs", "stop epochs (+ = budget hit)", "wall s to stop", "test NDCG@10, mean of epochs 21-50"],
                lines))

    def frames(opt):
        mine = sorted((r for r in rows if (r["variant"], r["padding"]) == opt), key=lambda r: r["seed"])
        return [pl.DataFrame({"query": "test", "user_id": np.arange(1, len(x["ranks"]) + 1, dtype=np.int32),
                              "target": np.zeros(len(x["ranks"]), np.int32), "rank": x["ranks"].astype(np.float32)})
                for x in (replay(r, chosen) for r in mine)]

    print(f"\nPaired over users (seeds averaged per user), patience {chosen} steps, test NDCG@10 / HR@10:\n")
    pairs = []
    for i, a in enumerate(options):
        for b in options[i + 1:]:
            for row in compare(frames(a), frames(b), ["ndcg@10", "hr@10"]):
                pairs.append([f"{a[0]}/{a[1]} − {b[0]}/{b[1]}", row["metric"], f"{row['diff']:+.4f}",
                              f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]", f"{row['p_value']:.2g}",
                              "yes" if row["significant"] else "no"])
    print(table(["A − B", "metric", "Δ", "95 % CI", "p (Wilcoxon)", "significant"], pairs))

    from scipy import stats

    def plateau(opt):
        return [float(np.mean([c["test/ndcg@10"] for c in r["curve"][20:50]])) for r in rows
                if (r["variant"], r["padding"]) == opt]

    print("\nOver seeds (Welch's t-test), test NDCG@10 averaged over epochs 21-50 (no stopping rule involved):\n")
    lines = []
    for i, a in enumerate(options):
        for b in options[i + 1:]:
            pa, pb = plateau(a), plateau(b)
            p = float(stats.ttest_ind(pa, pb, equal_var=False).pvalue)
            lines.append([f"{a[0]}/{a[1]} − {b[0]}/{b[1]}", f"{np.mean(pa) - np.mean(pb):+.4f}", f"{p:.2g}",
                          "yes" if p < 0.05 else "no"])
    print(table(["A − B", "Δ plateau", "p (Welch, seeds)", "significant"], lines))


def race_rows(files: list[str], option: str, patience: int, work: Path, out: Path, budget: int | None) -> None:
    """The early-stopped runs inside the recorded ones of `option` as `bench/recbole_compare.py ours`
    rows (curve up to the stop, test of the best-validation epoch, ranks keyed by user and target),
    so the RecBole race reuses these runs instead of training SASRec a fifth time. s/epoch here
    includes the validation pass (the option runs record wall time per epoch, not train time alone)."""
    from pipeline.data import load_split

    variant, padding = option.split(":")
    mine = sorted((r for r in load_runs(files, budget) if (r["variant"], r["padding"]) == (variant, padding)),
                  key=lambda r: r["seed"])
    test = load_split(work / "prepared").test_queries(50)
    rows = []
    for r in mine:
        rep = replay(r, patience)
        curve = [c for c in r["curve"] if c["epoch"] <= rep["stop_epoch"]]
        best = next(c for c in curve if c["epoch"] == rep["best_epoch"])
        rows.append({"model": "sasrec", "library": "ours", "seed": r["seed"], "variant": variant, "padding": padding,
                     "curve": [{k: c[k] for k in ("epoch", "step", "wall_s", "valid/ndcg@10")} for c in curve],
                     "best_valid_ndcg@10": rep["valid"], "best_epoch": rep["best_epoch"],
                     "wall_to_best_s": best["wall_s"], "epochs_run": len(curve), "train_wall_s": curve[-1]["wall_s"],
                     "s_per_epoch": curve[-1]["wall_s"] / len(curve), "peak_rss_mb": None,
                     "test": {k: float(rep[f"test/{k}"]) for k in ("hr@10", "ndcg@10", "mrr@10")},
                     "test_ranks": [[int(u) + 1, int(t), float(x)] for u, t, x in zip(test.users, test.targets,
                                                                                        rep["ranks"])],
                     "patience_steps": patience, "budget_epochs": len(r["curve"]), "censored": rep["censored"],
                     "source": "bench/sasrec_options.py runs, replayed"})
    save(out, rows)
    print(f"{out}: {len(rows)} runs of {option} stopped at patience {patience} steps")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=str(ROOT / "bench" / ".work" / "ml-100k"), help="folder with prepared/")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--options", nargs="+", default=[f"{v}:{p}" for v, p in OPTIONS])
    ap.add_argument("--epochs", type=int, default=120)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "sasrec-options" / "runs.json"))
    ap.add_argument("--report", nargs="+", metavar="JSON", help="only print the tables from these files")
    ap.add_argument("--chosen", type=int, default=570, help="patience (steps) for the paired comparison")
    ap.add_argument("--budget", type=int, help="with --report: compare the runs' first N epochs (default: the "
                    "fewest any run recorded, so every option has the same budget)")
    ap.add_argument("--race-rows", metavar="VARIANT:PADDING", help="with --report's files: write that option's "
                    "early-stopped runs (patience --chosen) as RecBole-race rows to --out")
    args = ap.parse_args()
    if args.race_rows:
        return race_rows(args.report, args.race_rows, args.chosen, Path(args.work), Path(args.out), args.budget)
    if args.report:
        return report(args.report, args.chosen, args.budget)
    from pipeline.data import load_split
    from pipeline.params import setup_logging

    setup_logging()
    split = load_split(Path(args.work) / "prepared")
    rows = []
    for opt in args.options:
        variant, padding = opt.split(":")
        for seed in args.seeds:
            t0 = time.perf_counter()
            rows.append(run(split, variant, padding, seed, args.epochs, args.threads) | {"wall_s": time.perf_counter() - t0})
            save(args.out, rows, protocol="RecBole's: no history masking", hyper=RECBOLE_SASREC, epochs=args.epochs)


if __name__ == "__main__":
    main()
