"""Benchmark: exact full-ranking top-50 for all users, ours vs a bare torch matmul+topk roofline.

    python -m bench.eval_scale                      # default size grid
    python -m bench.eval_scale --sizes 100000x100000

Threads: $BENCH_THREADS for torch (default 2; set OMP_NUM_THREADS for FAISS/BLAS to match).
Each size runs in a fresh subprocess (so peak RSS is per size). For each: our evaluator's
`exact_topk` (FAISS IndexFlatIP, users streamed in chunks), the roofline (`torch` chunked
`matmul` + `topk` on the same arrays; same chunk size, capped so a score block stays near 1 GB), and a brute-force NumPy check of our
results on a sample of users. Sizes are "USERSxITEMS"; embedding dimension 64.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from bench import answer, measure, peak_rss_mb
from pipeline.results import load_rows, save, table

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["10000x10000", "100000x10000", "10000x100000", "100000x100000", "10000x1000000", "1000000x10000"]


def roofline(users, items, k: int, chunk: int):
    import torch

    u, it = torch.from_numpy(users), torch.from_numpy(items)
    for s in range(0, len(u), chunk):
        torch.topk(u[s:s + chunk] @ it.T, k, dim=1)


def check(users, items, ids, scores, k: int, sample: int = 200, seed: int = 0) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = rng.choice(len(users), min(sample, len(users)), replace=False)
    full = users[rows].astype(np.float64) @ items.T.astype(np.float64)
    kth = -np.partition(-full, k - 1, axis=1)[:, k - 1]
    ref_scores = -np.sort(-full, axis=1)[:, :k]
    ours = users[rows].astype(np.float64)[:, None, :] @ items[ids[rows]].astype(np.float64).transpose(0, 2, 1)
    ours = ours[:, 0, :]
    # exact: our k results' true scores equal the reference's k best (up to float32 rounding)
    err = float(np.abs(np.sort(ours, 1)[:, ::-1] - ref_scores).max())
    return {"sample_users": len(rows), "max_abs_score_error": err,
            "all_above_kth": bool((ours >= kth[:, None] - 1e-3).all())}


def one(size: str, k: int, chunk: int) -> dict:
    import numpy as np  # noqa: F401
    import torch

    from bench.synthetic import vectors
    from pipeline.retrieval import exact_topk

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    n_users, n_items = map(int, size.split("x"))
    users, items = vectors(n_users, n_items, 64, seed=1)
    base_rss = peak_rss_mb()
    t = time.perf_counter()
    scores, ids = exact_topk(users, items, k, chunk=chunk, use_gpu=False)
    ours_s = time.perf_counter() - t
    ours_rss = peak_rss_mb()
    roof_chunk = max(256, min(chunk, 2**28 // n_items))  # keep the score block near 1 GB
    t = time.perf_counter()
    roofline(users, items, k, roof_chunk)
    roof_s = time.perf_counter() - t
    return {"size": size, "users": n_users, "items": n_items, "k": k, "chunk": chunk, "roofline_chunk": roof_chunk, "ours_s": ours_s,
            "roofline_s": roof_s, "ratio": ours_s / roof_s, "inputs_mb": (users.nbytes + items.nbytes) / 2**20,
            "rss_after_inputs_mb": base_rss, "peak_rss_ours_mb": ours_rss,
            "peak_rss_total_mb": peak_rss_mb(),
            "check": check(users, items, ids, scores, k)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=DEFAULT)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "eval-scale.json"))
    ap.add_argument("--report", metavar="JSON", help="only print the table of this result file")
    args = ap.parse_args()
    if args.report:
        return print_table(load_rows(args.report))
    if args.one:
        answer(one(args.one, args.k, args.chunk))
        return
    rows = []
    for size in args.sizes:
        rows.append(measure("bench.eval_scale", "--one", size, "--k", args.k, "--chunk", args.chunk))
        r = rows[-1]
        print(f"{size}: ours {r['ours_s']:.2f}s roofline {r['roofline_s']:.2f}s ratio {r['ratio']:.2f} "
              f"peak RSS {r['peak_rss_ours_mb']:.0f} MB check {r['check']}", flush=True)
        save(args.out, rows)
    print()
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    print(table(
        ["users × items", "ours s", "roofline s", "ours / roofline", "peak RSS MB (inputs MB)", "exact on sample"],
        [[f"{r['users']:,} × {r['items']:,}", f"{r['ours_s']:.2f}", f"{r['roofline_s']:.2f}", f"{r['ratio']:.2f}",
          f"{r['peak_rss_ours_mb']:.0f} ({r['inputs_mb']:.0f})",
          "yes" if r["check"]["all_above_kth"] and r["check"]["max_abs_score_error"] < 1e-3 else "NO"] for r in rows]))


if __name__ == "__main__":
    main()
