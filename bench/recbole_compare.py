"""Benchmark: ours against RecBole 1.2.1, same data, same protocol, several seeds, paired by user.

    python -m bench.recbole_compare ours    --models sasrec gru4rec --seeds 0 1 2   # our runs
    python -m bench.recbole_compare recbole --models sasrec gru4rec --seeds 42      # RecBole's runs
    python -m bench.recbole_compare report  [--models ...]                          # the table
    (all three take --out, default bench/results/recbole-race; run each under `taskset -c <core>`
     or through pipeline/jobs.py so the two libraries never share a core)

1. RecBole lives in its own virtual environment (.venv-recbole), installed on first use with the
   pins it needs on this machine (../shared/anchors/recbole.md): torch==2.13.0 recbole==1.2.1,
   numpy<2, pandas<3, and TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 at run time; anomaly detection off.
2. Data: our preprocessed ML-100K (--work, 5-core) for ours, and the same sequences written as
   RecBole atomic files (timestamps = our order), so both see identical users, items and order.
3. Protocol: leave-one-out by time, full ranking over all items, ties against the target; history
   masking as RecBole does it — none for the sequential models, masked for the general BPR-MF.
   Early stopping on validation NDCG@10: RecBole with stopping_step 10 (its epochs are ~48 steps
   on this data), ours with params.yaml's `train.patience_steps` (an epoch of ours is ~19 steps).
   Hyper-parameters are RecBole's defaults for each model (table MODELS), Adam 1e-3.
4. Each run records its validation curve with wall seconds, test HR/NDCG/MRR@10, s/epoch, peak
   RSS and every test user's rank. The report gives mean ± std over seeds per library, RecBole's
   wall time to its best validation, ours' wall time to reach RecBole's (seed-mean) best
   validation NDCG@10, their ratio, and the paired bootstrap interval of test NDCG@10 (ours −
   RecBole, `pipeline.compare`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

from bench import peak_rss_mb
from pipeline.results import mean_std, save, table

ROOT = Path(__file__).resolve().parents[1]
RECBOLE_VENV = ROOT / ".venv-recbole"
RECBOLE_PINS = ["torch==2.13.0", "recbole==1.2.1"]
RECBOLE_FIXES = ["numpy<2", "pandas<3"]
CE = {"loss_type": "CE", "train_neg_sample_args": None}
BPR = {"train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}}
# ours (models.<name> section) | RecBole (model class, config) | mask the history (RecBole does for general models only)
MODELS = {
    "sasrec": ({"hidden": 64, "layers": 2, "heads": 2, "inner": 256, "dropout": 0.5},
               ("SASRec", CE | {"n_layers": 2, "n_heads": 2, "hidden_size": 64, "inner_size": 256,
                                "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5}), False),
    "gru4rec": ({"embedding": 64, "hidden": 128, "layers": 1, "dropout": 0.3},
                ("GRU4Rec", CE | {"embedding_size": 64, "hidden_size": 128, "num_layers": 1, "dropout_prob": 0.3}),
                False),
    "bprmf": ({"embedding": 64, "loss": "bpr"}, ("BPR", BPR | {"embedding_size": 64}), True),
    "fpmc": ({"embedding": 64, "loss": "bpr"}, ("FPMC", BPR | {"embedding_size": 64, "loss_type": "BPR"}), False),
    "bert4rec": ({"hidden": 64, "layers": 2, "heads": 2, "inner": 256, "dropout": 0.2, "mask_ratio": 0.2,
                  "ft_ratio": 0.5},
                 ("BERT4Rec", CE | {"n_layers": 2, "n_heads": 2, "hidden_size": 64, "inner_size": 256,
                                    "hidden_dropout_prob": 0.2, "attn_dropout_prob": 0.2, "mask_ratio": 0.2,
                                    "ft_ratio": 0.5}), False),
}
ATOMIC = "mmrec_ml100k"
GOAL = 20  # ours' whole early-stopped run at least this many times faster than RecBole's time to its best (was 10)
# RecBole's saved runs (seed 42, same 5-core ML-100K, anomaly detection off; SASRec 2 threads, GRU4Rec 1),
# used where no newer RecBole run exists: one RecBole SASRec run is ~90 min on this machine
LEGACY = ["sasrec=bench/results/recbole-compare-run1.json", "gru4rec=bench/results/recbole-compare-gru4rec.json"]


def ensure_recbole() -> Path:
    py = RECBOLE_VENV / "bin" / "python"
    if not py.exists():
        # `-m venv` from inside a venv builds on the base interpreter, not on our environment
        subprocess.run([sys.executable, "-m", "venv", str(RECBOLE_VENV)], check=True)
    probe = subprocess.run([str(py), "-c", "import recbole, numpy; assert numpy.__version__ < '2'"],
                           capture_output=True)
    if probe.returncode != 0:
        subprocess.run([str(py), "-m", "pip", "install", "-q", *RECBOLE_PINS], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *RECBOLE_FIXES], check=True)
    return py


def recbole_config(data_path: Path, model: str, checkpoint_dir: Path, seed: int, epochs: int = 500) -> dict:
    return {
        "data_path": str(data_path), "dataset": ATOMIC, "checkpoint_dir": str(checkpoint_dir),
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "MAX_ITEM_LIST_LENGTH": 50,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["Hit", "NDCG", "MRR"], "topk": [10], "valid_metric": "NDCG@10",
        "epochs": epochs, "stopping_step": 10, "train_batch_size": 2048, "eval_batch_size": 4096,
        "learning_rate": 0.001, "seed": seed, "reproducibility": True, "use_gpu": torch.cuda.is_available(),
        "show_progress": False, **MODELS[model][1][1],
    }


def load(work: Path):
    from pipeline.data import load_split
    from pipeline.tables import read_json

    return load_split(work / "prepared"), read_json(work / "prepared" / "stats.json")


def run_ours(model: str, split, seed: int, threads: int, variant: dict | None = None) -> dict:
    """One of our runs; `variant` ({"name", and any of lr, batch_size, patience, patience_steps}): a
    speed lever's settings in place of the race's (Adam 1e-3, batch 128, params.yaml's stopping rule)."""
    from pipeline import builder
    from pipeline.config import ProtocolConfig, TrainConfig, load_params
    from pipeline.device import resolve_device
    from pipeline.evaluation import evaluate_queries
    from pipeline.loop import seed_everything
    from pipeline.params import from_dict
    from pipeline.trainer import fit

    section, _, mask = MODELS[model]
    protocol = ProtocolConfig(mask_history=mask)
    train_cfg = from_dict(TrainConfig, load_params(ROOT / "params.yaml")["train"], "train")
    levers = {k: v for k, v in (variant or {}).items() if k != "name"}
    cfg = TrainConfig(**{"epochs": 500, "batch_size": 128, "lr": 1e-3, "patience": train_cfg.patience,
                         "patience_steps": train_cfg.patience_steps, "patience_frac": train_cfg.patience_frac,
                         "seed": seed, "threads": threads,
                         "loss": section.get("loss", "ce")} | levers)
    seed_everything(seed)  # before building: the initial weights are part of the seeded run
    net = builder.build(model, section, builder.inputs_for(split.training, 50, cfg.loss))
    curve, wall = [], 0.0
    rss0 = peak_rss_mb()

    def on_epoch(row: dict) -> None:
        nonlocal wall
        wall += row["train_s"] + row["eval_s"]
        curve.append({"epoch": row["epoch"], "step": row["step"], "wall_s": wall, "valid/ndcg@10": row["valid/ndcg@10"]})

    summary = fit(net, split.training, cfg, protocol, 50, on_epoch)
    test = split.test_queries(50)
    metrics, ranks = evaluate_queries(net, test, protocol, resolve_device("auto"))[:2]
    best = max(curve, key=lambda r: r["valid/ndcg@10"])
    return {"model": model, "library": "ours", "seed": seed, "curve": curve, "best_valid_ndcg@10": summary["best"],
            "best_epoch": summary["best_epoch"], "wall_to_best_s": best["wall_s"], "epochs_run": len(curve),
            "train_wall_s": wall, "s_per_epoch": sum(r["train_s"] for r in summary["history"]) / len(curve),
            "test": {k: v for k, v in metrics.items() if k.endswith("@10")},
            "test_ranks": [[int(u) + 1, int(t), float(r)] for u, t, r in zip(test.users, test.targets, ranks)],
            "peak_rss_mb": max(rss0, peak_rss_mb()),
            "patience_steps": cfg.patience_steps, "patience": cfg.patience, "patience_frac": cfg.patience_frac,
            "threads": threads,
            "variant": (variant or {}).get("name", ""), "lr": cfg.lr, "batch_size": cfg.batch_size}


def run_recbole(model: str, atomic: Path, seed: int, threads: int, max_epochs: int = 500) -> dict:
    """One RecBole run; `max_epochs` < 500 cuts it short (a per-epoch time at another thread count, not
    a race row: `report` leaves such runs out)."""
    from pipeline.tables import read_json

    py = ensure_recbole()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        spec = {"model": MODELS[model][1][0], "threads": threads, "anomaly": False,
                "config": recbole_config(atomic, model, tmp / "saved", seed, max_epochs)}
        (tmp / "spec.json").write_text(json.dumps(spec))
        env = os.environ | {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
        t0 = time.perf_counter()
        subprocess.run([str(py), str(ROOT / "bench" / "recbole_runner.py"), str(tmp / "spec.json"),
                        str(tmp / "theirs.json")], check=True, cwd=tmp, env=env)
        out = read_json(tmp / "theirs.json")
    best = max(out["curve"], key=lambda r: r["valid/ndcg@10"])
    test = {"hr@10": out["test"]["hit@10"], "ndcg@10": out["test"]["ndcg@10"], "mrr@10": out["test"]["mrr@10"]}
    return out | {"model": model, "library": "recbole", "seed": seed, "test": test, "wall_to_best_s": best["wall_s"],
                  "best_epoch": best["epoch"], "process_wall_s": time.perf_counter() - t0, "threads": threads,
                  "max_epochs": max_epochs,
                  "test_ranks": [[int(u), int(i), float(r)] for u, i, r in out["test_ranks"]]}


def ranks_frame(run: dict) -> pl.DataFrame:
    """A run's test ranks as a `ranks` table for pipeline.compare (ranks beyond 10 matter not for @10)."""
    u, t, r = zip(*run["test_ranks"])
    return pl.DataFrame({"query": "test", "user_id": np.asarray(u, np.int32), "target": np.asarray(t, np.int32),
                         "rank": np.asarray(r, np.float32)})


def time_to(curve: list[dict], target: float) -> float | None:
    """Wall seconds at the end of the first epoch whose validation NDCG@10 reaches `target`."""
    return next((r["wall_s"] for r in curve if r["valid/ndcg@10"] >= target), None)


def legacy_run(model: str, path: Path) -> dict:
    """RecBole's side of a 2026-11-23 comparison file (one seed, 42; no per-user ranks) as a race row."""
    run = json.loads(path.read_text())["rows"][0]["recbole"]
    best = max(run["curve"], key=lambda r: r["valid/ndcg@10"])
    test = run["test"]
    return {"model": model, "library": "recbole", "seed": 42, "curve": run["curve"],
            "best_valid_ndcg@10": best["valid/ndcg@10"], "wall_to_best_s": best["wall_s"],
            "test": {"hr@10": test["hit@10"], "ndcg@10": test["ndcg@10"], "mrr@10": test["mrr@10"]},
            "s_per_epoch": run["s_per_epoch"], "peak_rss_mb": run["peak_rss_mb"], "threads": run["threads"],
            "test_ranks": None, "source": str(path.relative_to(ROOT))}


def unpaired(ours: list[dict], theirs: list[dict]) -> dict:
    """Ours' seeds against RecBole's runs when RecBole's have no per-user ranks: Welch's t-test
    (one-sample t-test against RecBole's value when it has one run) of test NDCG@10 over seeds,
    with the t interval of ours' mean minus RecBole's. Only ours' seed-to-seed variation is in it
    when RecBole has a single run, so it is weaker than the paired test over users."""
    from scipy import stats

    a = np.array([r["test"]["ndcg@10"] for r in ours])
    b = np.array([r["test"]["ndcg@10"] for r in theirs])
    diff = float(a.mean() - b.mean())
    if len(b) == 1:
        p = float(stats.ttest_1samp(a, b[0]).pvalue)
        half = float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a)))
    else:
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
        half = float(stats.t.ppf(0.975, min(len(a), len(b)) - 1) *
                     np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
    return {"metric": "ndcg@10", "diff": diff, "ci_low": diff - half, "ci_high": diff + half, "p_value": p,
            "significant": p < 0.05, "test": "unpaired t over seeds (RecBole's run has no per-user ranks)"}


def report(out: Path, models: list[str], legacy: dict[str, Path] | None = None) -> list[dict]:
    from pipeline.compare import compare

    runs = [json.loads(p.read_text()) for p in sorted(out.glob("*.json")) if p.name != "report.json"]
    runs = [r for f in runs for r in f["rows"] if r.get("max_epochs", 500) >= 500]  # cut-short timing runs: apart
    runs += [legacy_run(m, p) for m, p in (legacy or {}).items()
             if not any(r["model"] == m and r["library"] == "recbole" for r in runs)]
    lines, summary = [], []
    for model, variant in [(m, v) for m in models
                           for v in sorted({r.get("variant", "") for r in runs if r["model"] == m and r["library"] == "ours"})]:
        ours = sorted((r for r in runs if r["model"] == model and r["library"] == "ours"
                       and r.get("variant", "") == variant), key=lambda r: r["seed"])
        theirs = sorted((r for r in runs if r["model"] == model and r["library"] == "recbole"), key=lambda r: r["seed"])
        label = f"ours ({variant})" if variant else "ours"
        first = variant == min({r.get("variant", "") for r in runs if r["model"] == model and r["library"] == "ours"})
        if not theirs:  # ours alone (RecBole's run did not fit here): its row, no comparison
            lines.append([model, label, len(ours), mean_std([r["test"]["hr@10"] for r in ours]),
                          mean_std([r["test"]["ndcg@10"] for r in ours]), mean_std([r["test"]["mrr@10"] for r in ours]),
                          mean_std([r["best_valid_ndcg@10"] for r in ours]),
                          mean_std([r["wall_to_best_s"] for r in ours], "{:.0f}"), "no RecBole run",
                          mean_std([r["s_per_epoch"] for r in ours], "{:.1f}"),
                          mean_std([r["peak_rss_mb"] for r in ours if r.get("peak_rss_mb")], "{:.0f}")])
            continue
        target = float(np.mean([r["best_valid_ndcg@10"] for r in theirs]))
        reach = [time_to(r["curve"], target) for r in ours]
        theirs_t = float(np.mean([r["wall_to_best_s"] for r in theirs]))
        if all(r.get("test_ranks") for r in theirs):
            (sig,) = compare([ranks_frame(r) for r in ours], [ranks_frame(r) for r in theirs], ["ndcg@10"])
            sig["test"] = "paired bootstrap over users, Wilcoxon"
        else:
            sig = unpaired(ours, theirs)
        reached = [t for t in reach if t is not None]
        ratio = theirs_t / float(np.mean(reached)) if len(reached) == len(reach) else None
        # the goal (issue 34): RecBole's test quality (not significantly worse) in <= 1/GOAL of its wall time — ours'
        # whole early-stopped run (its selected model is the one tested) against RecBole's time to its best
        whole = theirs_t / float(np.mean([r["train_wall_s"] for r in ours]))
        worse = sig["significant"] and sig["diff"] < 0
        met = whole >= GOAL and not worse
        row = {"model": model, "variant": variant, "recbole_best_valid_mean": target, "ours_time_to_it_s": reach,
               "recbole_time_to_best_s": theirs_t, "speedup_to_recbole_valid": ratio, "speedup_whole_run": whole,
               "test_ndcg@10_diff": sig, "goal_met": met}
        summary.append(row)
        recbole = ("RecBole 1.2.1" + (" (saved run)" if theirs[0].get("source") else ""), theirs)
        for lib, rs in ((label, ours), *([recbole] if first else [])):  # RecBole's row once per model
            t = (f"{mean_std(reached, '{:.0f}')} s ({len(reached)}/{len(reach)} seeds reach it)" if rs is ours
                 else "—")
            lines.append([model, lib, len(rs), mean_std([r["test"]["hr@10"] for r in rs]),
                          mean_std([r["test"]["ndcg@10"] for r in rs]), mean_std([r["test"]["mrr@10"] for r in rs]),
                          mean_std([r["best_valid_ndcg@10"] for r in rs]), mean_std([r["wall_to_best_s"] for r in rs],
                                                                                    "{:.0f}"),
                          t, mean_std([r["s_per_epoch"] for r in rs], "{:.1f}"),
                          mean_std([r["peak_rss_mb"] for r in rs if r.get("peak_rss_mb")], "{:.0f}")])
        lines.append([model, f"{label} − RecBole", "", "", f"{sig['diff']:+.4f} [{sig['ci_low']:+.4f}, {sig['ci_high']:+.4f}]"
                      f" p {sig['p_value']:.2g}{' *' if sig['significant'] else ''}"
                      f"{'' if sig['test'].startswith('paired') else ' (unpaired, over seeds)'}", "", "", "", "",
                      (f"to RecBole's best valid: {ratio:.1f}× faster; " if ratio else "RecBole's best valid not reached; ")
                      + f"whole run vs RecBole's time to best: {whole:.1f}×; goal {'met' if met else 'not met'}", ""])
    print(table(["model", "library", "seeds", "test HR@10", "test NDCG@10", "test MRR@10", "best valid NDCG@10",
                 "wall s to its best valid", "wall s to RecBole's best valid", "s/epoch", "peak RSS MB"], lines))
    (out / "report.json").write_text(json.dumps(summary, indent=2))
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["ours", "recbole", "report"])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=sorted(MODELS))
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="ours: 0 1 2; RecBole: 42")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-epochs", type=int, default=500, help="recbole: stop after this many epochs (a timing "
                    "run at another thread count; not a race row)")
    ap.add_argument("--variant", default="", help="ours: a speed lever's name (its rows are reported apart)")
    ap.add_argument("--lr", type=float, help="ours: Adam's learning rate (the race's: 1e-3)")
    ap.add_argument("--batch", type=int, help="ours: windows per step (the race's: 128)")
    ap.add_argument("--patience", type=int, help="ours: validations without improvement (params.yaml's)")
    ap.add_argument("--patience-steps", type=int, help="ours: and optimizer steps since the best (params.yaml's)")
    ap.add_argument("--patience-frac", type=float, help="ours: and this share of the best's epoch (params.yaml's)")
    ap.add_argument("--work", default=str(ROOT / "bench" / ".work" / "ml-100k"), help="folder with prepared/")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "recbole-race"))
    ap.add_argument("--legacy", nargs="*", default=list(LEGACY), metavar="MODEL=JSON",
                    help="report: RecBole runs from the 2026-11-23 files for models with no RecBole run in --out")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.what == "report":
        report(out, args.models, {m: ROOT / f for m, f in (x.split("=", 1) for x in args.legacy)})
        return
    from pipeline.params import setup_logging
    from pipeline.sources.recbole import write_atomic
    from pipeline.tables import read_table

    setup_logging()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    split, stats = load(work)
    seeds = args.seeds or ([0, 1, 2] if args.what == "ours" else [42])
    levers = {"lr": args.lr, "batch_size": args.batch, "patience": args.patience, "patience_steps": args.patience_steps,
              "patience_frac": args.patience_frac}
    variant = {"name": args.variant} | {k: v for k, v in levers.items() if v is not None}
    if len(variant) > 1 and not args.variant:
        raise SystemExit("recbole_compare ours: name the lever (--variant NAME) when changing lr, batch or patience")
    for model in args.models:
        rows = []
        for seed in seeds:
            if args.what == "ours":
                rows.append(run_ours(model, split, seed, args.threads, variant))
            else:
                atomic = work / "recbole-atomic"
                if not (atomic / ATOMIC / f"{ATOMIC}.inter").is_file():
                    write_atomic(read_table(work / "prepared" / "sequences.parquet", "sequences"), atomic, ATOMIC)
                rows.append(run_recbole(model, atomic, seed, args.threads, args.max_epochs))
            tag = args.variant or (f"t{args.threads}-e{args.max_epochs}" if args.max_epochs < 500 else "")
            save(out / f"{args.what}-{model}{'-' + tag if tag else ''}-s{'-'.join(map(str, seeds))}.json", rows,
                 stats={k: stats[k] for k in ("users", "items", "interactions")})


if __name__ == "__main__":
    main()
