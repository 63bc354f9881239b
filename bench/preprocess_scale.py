"""Benchmark: ingest + k-core + split for 1M to 100M synthetic interactions.

    POLARS_MAX_THREADS=1 python -m bench.preprocess_scale --sizes 1000000 10000000 30000000 100000000 \
        [--engine memory|disk]

For each size a Zipf-popular log (20 interactions per user on average, items = interactions / 50)
is written as a RecBole `.inter` file (the format users bring; above 10M rows in 10M-row chunks of
disjoint users, `bench/synthetic.write_inter_chunked`), then a fresh subprocess runs our download
stage (copy) and preprocess stage (typed streaming read, 5-core, order, remap, split, three
Parquet tables) on it, with the in-memory or the out-of-core engine (`preprocess.engine`). Reported: wall time per step, seconds per million rows and the
subprocess's peak RSS (and per input row); `--report` adds the log-log slope of peak RSS and of
time against rows (1 = linear).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench import answer, measure, peak_rss_mb
from pipeline.results import load_rows, save, table

ROOT = Path(__file__).resolve().parents[1]

def one(folder: Path, engine: str) -> dict:
    from pipeline.config import PreprocessConfig
    from pipeline.download import download
    from pipeline.preprocess import run

    t = time.perf_counter()
    download({"dataset": "s", "datasets": {"s": {"format": "recbole", "source": str(folder), "name": "synth"}}},
             folder / "raw")
    t_dl = time.perf_counter() - t
    t = time.perf_counter()
    stats = run(folder / "raw", folder / "prepared", PreprocessConfig(engine=engine))
    return {"download_s": t_dl, "preprocess_s": time.perf_counter() - t, "users": stats["users"],
            "items": stats["items"], "kept": stats["interactions"], "dropped": stats["dropped"],
            "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=int, default=[1_000_000, 10_000_000, 30_000_000])
    ap.add_argument("--engine", default="memory", choices=["memory", "disk"])
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "preprocess-scale.json"))
    ap.add_argument("--report", metavar="JSON", help="only print the table of this result file")
    args = ap.parse_args()
    if args.report:
        return print_table(load_rows(args.report))
    if args.one:
        answer(one(Path(args.one), args.engine))
        return
    from bench.synthetic import write_inter_chunked

    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            t = time.perf_counter()
            write_inter_chunked(n // 20, max(n // 50, 1000), n, tmp, "synth")
            gen_s = time.perf_counter() - t
            rows.append({"interactions": n, "engine": args.engine, "generate_s": gen_s,
                         "file_mb": (tmp / "synth.inter").stat().st_size / 2**20,
                         **measure("bench.preprocess_scale", "--engine", args.engine, "--one", tmp)})
        print(json.dumps(rows[-1]), flush=True)
        save(args.out, rows)
    print_table(rows)


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log y against log x: 1 = linear growth."""
    import numpy as np

    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def print_table(rows: list[dict]) -> None:
    print("\n" + table(["interactions", "engine", "file MB", "download s", "preprocess s", "s per M rows", "kept",
                        "peak RSS MB", "RSS bytes / row"],
                       [[f"{r['interactions']:,}", r.get("engine", "memory"), f"{r['file_mb']:.0f}", f"{r['download_s']:.1f}",
                         f"{r['preprocess_s']:.1f}", f"{r['preprocess_s'] / r['interactions'] * 1e6:.2f}", f"{r['kept']:,}",
                         f"{r['peak_rss_mb']:.0f}", f"{r['peak_rss_mb'] * 2**20 / r['interactions']:.0f}"] for r in rows]))
    if len(rows) > 1:
        n = [r["interactions"] for r in rows]
        print(f"\nlog-log slope vs rows: peak RSS {slope(n, [r['peak_rss_mb'] for r in rows]):.2f}, "
              f"preprocess time {slope(n, [r['preprocess_s'] for r in rows]):.2f}")


if __name__ == "__main__":
    main()
