"""Benchmark: ingest + k-core + split for 1M and 10M synthetic interactions.

    python bench/preprocess_scale.py --sizes 1000000 10000000

For each size a Zipf-popular log (20 interactions per user on average) is written as a RecBole
`.inter` file (the format users bring), then a fresh subprocess runs our download stage (copy)
and preprocess stage (parse, 5-core, order, remap, split, three Parquet tables) on it. Reported:
wall time per step and the subprocess's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import load_rows, save, table  # noqa: E402


def one(folder: Path) -> dict:
    from pipeline.download import download
    from pipeline.preprocess import PreprocessConfig, run

    t = time.perf_counter()
    download({"dataset": "s", "datasets": {"s": {"format": "recbole", "source": str(folder), "name": "synth"}}},
             folder / "raw")
    t_dl = time.perf_counter() - t
    t = time.perf_counter()
    stats = run(folder / "raw", folder / "prepared", PreprocessConfig())
    return {"download_s": t_dl, "preprocess_s": time.perf_counter() - t, "users": stats["users"],
            "items": stats["items"], "kept": stats["interactions"], "dropped": stats["dropped"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=int, default=[1_000_000, 10_000_000])
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "preprocess-scale.json"))
    ap.add_argument("--report", metavar="JSON", help="only print the table of this result file")
    args = ap.parse_args()
    if args.report:
        return print_table(load_rows(args.report))
    if args.one:
        print(json.dumps(one(Path(args.one))))
        return
    from bench.synthetic import interactions, write_inter

    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            t = time.perf_counter()
            write_inter(interactions(n // 20, max(n // 50, 1000), n, seed=0), tmp, "synth")
            gen_s = time.perf_counter() - t
            proc = subprocess.run([sys.executable, __file__, "--one", str(tmp)], capture_output=True, text=True,
                                  check=True)
            rows.append({"interactions": n, "generate_s": gen_s,
                         "file_mb": (tmp / "synth.inter").stat().st_size / 2**20,
                         **json.loads(proc.stdout.strip().splitlines()[-1])})
        print(json.dumps(rows[-1]), flush=True)
        save(args.out, rows)
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    print("\n" + table(["interactions", "file MB", "download s", "preprocess s", "kept", "peak RSS MB"],
                       [[f"{r['interactions']:,}", f"{r['file_mb']:.0f}", f"{r['download_s']:.1f}",
                         f"{r['preprocess_s']:.1f}", f"{r['kept']:,}", f"{r['peak_rss_mb']:.0f}"] for r in rows]))


if __name__ == "__main__":
    main()
