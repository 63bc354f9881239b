"""Benchmark: the spine's baselines on one dataset, exact full ranking, one table.

    python bench/baselines.py --dataset ml-100k --models pop sasrec gru4rec nextitnet

Runs download -> preprocess -> train -> evaluate for each model through the same library
functions as the DVC stages, with params.yaml's settings (override with --set section.key=json),
in a scratch folder. Writes bench/results/baselines-<dataset>.json and prints a Markdown table
for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import prepare, save, table  # noqa: E402
from pipeline.evaluate import evaluate  # noqa: E402
from pipeline.params import load_params, setup_logging  # noqa: E402
from pipeline.train import train  # noqa: E402


def override(params: dict, assignments: list[str]) -> dict:
    for a in assignments:
        key, value = a.split("=", 1)
        *path, last = key.split(".")
        node = params
        for p in path:
            node = node.setdefault(p, {})
        node[last] = json.loads(value)
    return params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--models", nargs="+", default=["pop", "sasrec", "gru4rec", "nextitnet"])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--set", nargs="*", default=[], help="overrides such as train.epochs=5")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args()
    setup_logging()
    params = override(load_params(args.params), args.set) | {"dataset": args.dataset}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        stats = prepare(params, tmp)
        rows = []
        for model in args.models:
            t0 = time.perf_counter()
            info = train(params | {"model": model}, tmp / "prepared", tmp / model)
            res = evaluate(params, tmp / "prepared", tmp / model / "model.pt", tmp / model / "metrics.json")
            rows.append({"model": model, "wall_s": time.perf_counter() - t0, **info, **res})
    save(Path(args.out) / f"baselines-{args.dataset}.json", rows, dataset=args.dataset,
         stats={k: stats[k] for k in ("users", "items", "interactions", "density")},
         peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(f"\n{args.dataset}: {stats['users']} users, {stats['items']} items, {stats['interactions']} interactions\n")
    print(table(["model", "test HR@10", "test NDCG@10", "test MRR@10", "valid NDCG@10", "best epoch / run", "s/epoch",
                 "wall s"],
                [[r["model"], f"{r['test/hr@10']:.4f}", f"{r['test/ndcg@10']:.4f}", f"{r['test/mrr@10']:.4f}",
                  f"{r['valid/ndcg@10']:.4f}", f"{r['best_epoch']} / {r['epochs_run']}",
                  f"{r['train_s_per_epoch']:.1f}", f"{r['wall_s']:.0f}"] for r in rows]))


if __name__ == "__main__":
    main()
