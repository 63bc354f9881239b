"""Benchmark: evaluation memory vs the longest user history (the cold sub-sequence queries).

    BENCH_THREADS=1 python -m bench.eval_memory --longest 1000 5000 10000 20000 50000

Each point runs in a fresh process: a catalogue of `--items` items, `--users` users with ~20 events
each plus one user with `longest` events, an untrained SASRec (hidden 64) as the scorer, and the
evaluate stage's whole query set — valid, test and every cold sub-sequence (every prefix ending in
an item with < 10 training occurrences: with 200k items nearly every position), exact full
ranking with history masking. The long user's prefixes hold Σ t ≈ longest² / 2 history entries,
so a query set built at once grows with the square of the longest history; streamed in chunks of
bounded histories (`data.prefixes_ending_in`) and bounded FAISS result blocks
(`retrieval.exact_topk(max_results=...)`) it should stay flat. Writes
bench/results/eval-memory.json and prints the table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from bench import answer, measure, peak_rss_mb
from pipeline.results import load_rows, table

ROOT = Path(__file__).resolve().parents[1]

def one(items: int, users: int, longest: int) -> dict:
    import numpy as np
    import torch

    from pipeline import builder
    from pipeline.config import ProtocolConfig
    from pipeline.data import Sequences, Split
    from pipeline.evaluation import (
        catalogue,
        cold_subsequences,
        evaluate_chunks,
        evaluate_queries,
    )

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    rng = np.random.default_rng(0)
    lengths = np.concatenate([rng.integers(10, 30, users), [longest]])
    flat = rng.integers(1, items + 1, int(lengths.sum()))
    split = Split(Sequences(flat, np.concatenate([[0], np.cumsum(lengths)]), items))
    torch.manual_seed(0)
    model = builder.build("sasrec", {"hidden": 64}, builder.inputs_for(split.training, 50, "ce")).eval()
    protocol = ProtocolConfig()
    device = torch.device("cpu")
    t0 = time.perf_counter()
    vec = catalogue(model)
    evaluate_queries(model, split.training.valid_queries(50), protocol, device, vec)
    evaluate_queries(model, split.test_queries(50), protocol, device, vec)
    cold, ranks, _, _ = evaluate_chunks(model, cold_subsequences(split, 10, 50), protocol, device, vec)
    return {"items": items, "users": users + 1, "longest": longest, "events": int(lengths.sum()),
            "cold_queries": len(ranks), "history_entries": int(sum(t * (t + 1) // 2 for t in lengths - 1)),
            "seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb(),
            "cold_seq/hr@50": cold.get("hr@50")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--longest", nargs="+", type=int, default=[1000, 5000, 10000, 20000, 50000])
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--report", metavar="JSON", help="only print the table of this result file")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "eval-memory.json"))
    args = ap.parse_args()
    if args.one is not None:
        answer(one(args.items, args.users, args.one))
        return
    if args.report:
        return print_table(load_rows(args.report))
    rows = []
    for n in args.longest:
        rows.append(measure("bench.eval_memory", "--one", n, "--items", args.items, "--users", args.users))
        print(rows[-1], flush=True)
        Path(args.out).write_text(json.dumps({"command": "python " + " ".join(sys.argv), "rows": rows}, indent=2))
    print()
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    print(table(["longest history", "cold sub-seq queries", "history entries (Σ prefix lengths)", "seconds",
                 "peak RSS MB"], [[f"{r['longest']:,}", f"{r['cold_queries']:,}", f"{r['history_entries']:,}",
                                   f"{r['seconds']:.0f}", f"{r['peak_rss_mb']:.0f}"] for r in rows]))


if __name__ == "__main__":
    main()
