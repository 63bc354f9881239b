"""Benchmark: our SASRec / GRU4Rec against RecBole's, same data, same protocol, one run.

    python bench/recbole_compare.py --models sasrec gru4rec

1. Installs RecBole in its own virtual environment (.venv-recbole) if missing, with the pins it
   needs on this machine (see ../shared/anchors/recbole.md): torch==2.13.0 recbole==1.2.1,
   numpy<2, pandas<3, and TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 at run time.
2. Prepares ML-100K with our preprocess stage and writes those exact sequences as RecBole atomic
   files (timestamps = our order), so both libraries see identical users, items and order.
3. Runs ours and RecBole's with the same protocol: leave-one-out by time, full ranking, *no history
   masking* (RecBole does not mask in sequential models, so ours is run the same way here), max
   length 50, Adam 1e-3, cross-entropy, early stopping on validation NDCG@10 with patience 10;
   SASRec hidden 64 / 2 layers / 2 heads / inner 256 / dropout 0.5; GRU4Rec emb 64 / hidden 128 /
   dropout 0.3. RecBole runs with anomaly detection off (its sine.py turns it on for every model).
4. Reports test HR/NDCG/MRR@10 for both, our wall time to reach RecBole's best validation
   NDCG@10, RecBole's wall time to its best, per-epoch time and peak RSS, into
   bench/results/recbole-compare.json and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import prepare, save  # noqa: E402
from models import build_model  # noqa: E402
from pipeline.data import Sequences, Split  # noqa: E402
from pipeline.evaluation import ProtocolConfig, evaluate_queries  # noqa: E402
from pipeline.params import load_params, setup_logging  # noqa: E402
from pipeline.sources.recbole import write_atomic  # noqa: E402
from pipeline.tables import read_table  # noqa: E402
from pipeline.trainer import TrainConfig, fit, resolve_device, seed_everything  # noqa: E402

RECBOLE_VENV = ROOT / ".venv-recbole"
RECBOLE_PINS = ["torch==2.13.0", "recbole==1.2.1"]
RECBOLE_FIXES = ["numpy<2", "pandas<3"]
OURS = {"sasrec": {"hidden": 64, "layers": 2, "heads": 2, "inner": 256, "dropout": 0.5},
        "gru4rec": {"embedding": 64, "hidden": 128, "layers": 1, "dropout": 0.3}}
THEIRS = {"sasrec": ("SASRec", {"n_layers": 2, "n_heads": 2, "hidden_size": 64, "inner_size": 256,
                                "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5}),
          "gru4rec": ("GRU4Rec", {"embedding_size": 64, "hidden_size": 128, "num_layers": 1, "dropout_prob": 0.3})}


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


def recbole_config(data_path: Path, name: str, model: str, checkpoint_dir: Path, seed: int) -> dict:
    return {
        "data_path": str(data_path), "dataset": name, "checkpoint_dir": str(checkpoint_dir),
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": 50, "loss_type": "CE", "train_neg_sample_args": None,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["Hit", "NDCG", "MRR"], "topk": [10], "valid_metric": "NDCG@10",
        "epochs": 500, "stopping_step": 10, "train_batch_size": 2048, "eval_batch_size": 4096,
        "learning_rate": 0.001, "seed": seed, "reproducibility": True, "use_gpu": torch.cuda.is_available(),
        "show_progress": False, **THEIRS[model][1],
    }


def run_ours(model: str, seq: Sequences, seed: int, patience: int, threads: int, stride: int = 0) -> dict:
    protocol = ProtocolConfig(mask_history=False)
    split = Split(seq)
    seed_everything(seed)  # before building: the initial weights are part of the seeded run
    net = build_model(model, OURS[model] | {"max_len": 50}, seq.num_items)
    curve, wall = [], 0.0
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def on_epoch(row: dict) -> None:
        nonlocal wall
        wall += row["train_s"] + row["eval_s"]
        curve.append({"epoch": row["epoch"], "wall_s": wall, "valid/ndcg@10": row["valid/ndcg@10"]})

    cfg = TrainConfig(epochs=500, batch_size=128, lr=1e-3, patience=patience, seed=seed, threads=threads,
                      window_stride=stride)
    summary = fit(net, split.training, cfg, protocol, 50, on_epoch)
    test, _, _ = evaluate_queries(net, split.test_queries(50), protocol, resolve_device("auto"))
    return {"model": model, "curve": curve, "best_valid_ndcg@10": summary["best"], "epochs_run": len(curve),
            "train_wall_s": wall, "s_per_epoch": sum(r["train_s"] for r in summary["history"]) / len(curve),
            "test": {k: v for k, v in test.items() if k.endswith("@10")},
            "peak_rss_mb": max(rss0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024}


def run_recbole(py: Path, model: str, tmp: Path, args) -> dict:
    spec = {"model": THEIRS[model][0], "threads": args.threads, "anomaly": False,
            "config": recbole_config(tmp / "atomic", "mmrec_ml100k", model, tmp / "saved", args.seed)}
    (tmp / "spec.json").write_text(json.dumps(spec))
    env = os.environ | {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    t0 = time.perf_counter()
    subprocess.run([str(py), str(ROOT / "bench" / "recbole_runner.py"), str(tmp / "spec.json"),
                    str(tmp / "theirs.json")], check=True, cwd=tmp, env=env)
    return json.loads((tmp / "theirs.json").read_text()) | {"process_wall_s": time.perf_counter() - t0}


def time_to(curve: list[dict], target: float) -> float | None:
    """Wall seconds at the end of the first epoch whose validation NDCG@10 reaches `target`."""
    return next((r["wall_s"] for r in curve if r["valid/ndcg@10"] >= target), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["sasrec", "gru4rec"], choices=sorted(OURS))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ours-dropout", type=float, help="override our SASRec dropout (default: RecBole's 0.5)")
    ap.add_argument("--ours-variant", choices=["pre_ln", "post_ln"], help="our SASRec layout (post_ln = RecBole's)")
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--ours-stride", type=int, default=0, help="our train.window_stride (0 = max_len)")
    ap.add_argument("--reuse-recbole", help="a previous recbole-compare.json: take RecBole's results from it "
                    "instead of re-running RecBole (its data must match)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()
    previous = {}
    if args.reuse_recbole:
        previous = {r["model"]: r["recbole"] for r in json.loads(Path(args.reuse_recbole).read_text())["rows"]}
    if args.ours_dropout is not None:
        OURS["sasrec"]["dropout"] = args.ours_dropout
    if args.ours_variant:
        OURS["sasrec"]["variant"] = args.ours_variant
    setup_logging()
    torch.set_num_threads(args.threads)
    py = ensure_recbole()
    params = load_params(ROOT / "params.yaml") | {"dataset": "ml-100k"}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        stats = prepare(params, tmp)
        sequences = read_table(tmp / "prepared" / "sequences.parquet", "sequences")
        seq = Sequences.from_table(sequences, stats["items"])
        write_atomic(sequences, tmp / "atomic", "mmrec_ml100k")
        for model in args.models:
            ours = run_ours(model, seq, args.seed, patience=args.patience, threads=args.threads, stride=args.ours_stride)
            if model in previous:
                theirs = previous[model]
                if (theirs["users"], theirs["items"]) != (stats["users"], stats["items"]):
                    raise SystemExit(f"--reuse-recbole: RecBole's {model} ran on different data")
            else:
                theirs = run_recbole(py, model, tmp, args)
            target = theirs["best_valid_ndcg@10"]
            theirs_best_epoch = max(theirs["curve"], key=lambda r: r["valid/ndcg@10"])
            row = {"model": model, "ours": ours, "recbole": theirs,
                   "recbole_time_to_best_s": theirs_best_epoch["wall_s"],
                   "ours_time_to_recbole_best_s": time_to(ours["curve"], target)}
            if row["ours_time_to_recbole_best_s"]:
                row["speedup_to_quality"] = row["recbole_time_to_best_s"] / row["ours_time_to_recbole_best_s"]
            rows.append(row)
            save(out / "recbole-compare.json", rows, threads=args.threads,
                 stats={k: stats[k] for k in ("users", "items", "interactions")})
    print("| model | library | test HR@10 | test NDCG@10 | test MRR@10 | best valid NDCG@10 | epochs | s/epoch | "
          "time to RecBole's best valid | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        for lib in ("ours", "recbole"):
            x = r[lib]
            t = r["ours_time_to_recbole_best_s"] if lib == "ours" else r["recbole_time_to_best_s"]
            print(f"| {r['model']} | {lib} | {x['test']['hit@10' if lib == 'recbole' else 'hr@10']:.4f} | "
                  f"{x['test']['ndcg@10']:.4f} | {x['test']['mrr@10']:.4f} | {x['best_valid_ndcg@10']:.4f} | "
                  f"{x['epochs_run']} | {x['s_per_epoch']:.1f} | {t if t is None else round(t)} s | "
                  f"{x['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
