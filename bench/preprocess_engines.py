"""Benchmark: which engine can run preprocessing's heavy steps out of core (issue 34, item 4).

    POLARS_MAX_THREADS=1 python -m bench.preprocess_engines --rows 20000000 [--budget-mb 400] \
        [--duckdb-python /path/to/python-with-duckdb]

The two steps whose memory grows with the log: one k-core round (per-user and per-item counts,
then the rows whose user and item both have >= 5 events) and the ordering (sort by user, time,
file row), each read from and written to Parquet, on a Zipf-popular synthetic log (20 events per
user on average, items = rows / 50). Each engine runs in a fresh process (its peak RSS is its own:
VmHWM) on one thread:

- `polars-eager`: read the whole table, compute, write (today's preprocessing);
- `polars-streaming`: the same query lazily, `sink_parquet` (polars' streaming engine);
- `polars-streaming-ooc`: the same with polars' out-of-core budget (POLARS_OOC_MEMORY_BUDGET_MB,
  spilling under the work folder);
- `duckdb`: the same SQL with `memory_limit` and a `temp_directory` (DuckDB spills sorts and
  aggregates); run by --duckdb-python when duckdb is not installed here (it is not a dependency).

Every engine's outputs are checked equal (row count and an order-sensitive checksum of the sorted
table). Writes bench/results/preprocess-engines.json and prints the table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench import MeasureError, answer, measure

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ["polars-eager", "polars-streaming", "polars-streaming-ooc", "duckdb"]
CORE = 5


def write_log(path: Path, rows: int, chunk: int = 10_000_000) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    users, items = max(rows // 20, 1), max(rows // 50, 1)
    with pq.ParquetWriter(path, pa.schema([("user", pa.int32()), ("item", pa.int32()), ("timestamp", pa.int64()),
                                           ("row", pa.uint32())])) as w:
        for lo in range(0, rows, chunk):
            n = min(chunk, rows - lo)
            w.write_table(pa.table({"user": rng.integers(0, users, n, dtype=np.int32),
                                    "item": ((rng.zipf(1.2, n) - 1) % items).astype(np.int32),
                                    "timestamp": rng.integers(0, 10**9, n), "row": np.arange(lo, lo + n, dtype=np.uint32)}))


def run_polars(engine: str, log: Path, out: Path) -> None:
    import polars as pl

    if engine == "polars-eager":
        df = pl.read_parquet(log)
        df = df.filter((pl.len().over("user") >= CORE) & (pl.len().over("item") >= CORE))
        df.write_parquet(out / "kcore.parquet")
        pl.read_parquet(out / "kcore.parquet").sort(["user", "timestamp", "row"]).write_parquet(out / "sorted.parquet")
        return
    lf = pl.scan_parquet(log)
    counts = {c: lf.group_by(c).agg(pl.len().alias(f"n_{c}")) for c in ("user", "item")}
    (lf.join(counts["user"], on="user").join(counts["item"], on="item")
     .filter((pl.col("n_user") >= CORE) & (pl.col("n_item") >= CORE)).drop("n_user", "n_item")
     .sink_parquet(out / "kcore.parquet"))
    pl.scan_parquet(out / "kcore.parquet").sort(["user", "timestamp", "row"]).sink_parquet(out / "sorted.parquet")


def run_duckdb(log: Path, out: Path, budget_mb: int) -> None:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = 1; SET memory_limit = '{budget_mb}MB'; SET temp_directory = '{out / 'spill'}'; "
                "SET preserve_insertion_order = false")
    con.execute(f"""COPY (SELECT l.* FROM read_parquet('{log}') l
                     JOIN (SELECT user, count(*) AS n FROM read_parquet('{log}') GROUP BY user) u USING (user)
                     JOIN (SELECT item, count(*) AS n FROM read_parquet('{log}') GROUP BY item) i USING (item)
                     WHERE u.n >= {CORE} AND i.n >= {CORE}) TO '{out / 'kcore.parquet'}' (FORMAT parquet)""")
    con.execute(f"""COPY (SELECT * FROM read_parquet('{out / 'kcore.parquet'}') ORDER BY user, timestamp, row)
                    TO '{out / 'sorted.parquet'}' (FORMAT parquet)""")


def checksum(path: Path) -> dict:
    """Row count and an order-sensitive digest of the sorted table (equal outputs, equal digests)."""
    import numpy as np
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["user", "timestamp", "row"])
    w = np.arange(1, t.num_rows + 1, dtype=np.uint64) % 1_000_003
    return {"rows_out": t.num_rows, "digest": int((t["row"].to_numpy().astype(np.uint64) * w).sum() % (2**61 - 1))}


def child(engine: str, log: Path, out: Path, budget_mb: int) -> dict:
    from bench import peak_rss_mb

    t0 = time.perf_counter()
    if engine == "duckdb":
        run_duckdb(log, out, budget_mb)
    else:
        run_polars(engine, log, out)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[20_000_000])
    ap.add_argument("--engines", nargs="+", default=ENGINES, choices=ENGINES)
    ap.add_argument("--budget-mb", type=int, default=400, help="the out-of-core engines' memory budget")
    ap.add_argument("--duckdb-python", default=sys.executable, help="an interpreter with duckdb installed")
    ap.add_argument("--work", default="/tmp/preprocess-engines")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "preprocess-engines.json"))
    ap.add_argument("--report", metavar="JSON", help="only print the table of this result file")
    ap.add_argument("--child", nargs=3, metavar=("ENGINE", "LOG", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        engine, log, out = args.child
        answer(child(engine, Path(log), Path(out), args.budget_mb))
        return
    from pipeline.results import load_rows, save

    if args.report:
        return print_table(load_rows(args.report))
    rows = []
    for n in args.rows:
        log = Path(args.work) / f"log-{n}.parquet"
        log.parent.mkdir(parents=True, exist_ok=True)
        if not log.is_file():
            write_log(log, n)
        for engine in args.engines:
            out = Path(args.work) / f"out-{n}-{engine}"
            subprocess.run(["rm", "-rf", str(out)], check=True)
            (out / "spill").mkdir(parents=True)
            env = {"PYTHONPATH": str(ROOT)}
            if engine == "polars-streaming-ooc":
                env |= {"POLARS_OOC_MEMORY_BUDGET_MB": str(args.budget_mb), "POLARS_OOC_SPILL_DIR": str(out / "spill")}
            row = {"rows": n, "engine": engine, "budget_mb": args.budget_mb if engine.endswith(("ooc", "duckdb")) else None}
            try:
                row |= measure("bench.preprocess_engines", "--budget-mb", args.budget_mb, "--child", engine, log, out,
                               env=env, python=args.duckdb_python if engine == "duckdb" else None)
                row |= checksum(out / "sorted.parquet")
            except MeasureError as e:  # an engine that cannot (out of memory, …) is a row that says so
                row["failed"] = str(e).strip().splitlines()[-1][:200]
            subprocess.run(["rm", "-rf", str(out)], check=True)
            rows.append(row)
            print(json.dumps(row), flush=True)
            save(args.out, rows, core=CORE)
    digests = {(r["rows"], r.get("rows_out"), r.get("digest")) for r in rows if "digest" in r}
    if len({d[0] for d in digests}) != len(digests):
        raise SystemExit(f"engines disagree on the output: {sorted(digests)}")
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    from pipeline.results import table

    print(table(["rows", "engine", "memory budget MB", "seconds", "peak RSS MB", "rows kept"],
                [[f"{r['rows']:,}", r["engine"], r.get("budget_mb") or "—",
                  f"{r['seconds']:.1f}" if "seconds" in r else f"failed: {r['failed']}",
                  f"{r['peak_rss_mb']:.0f}" if "peak_rss_mb" in r else "—",
                  f"{r['rows_out']:,}" if "rows_out" in r else "—"] for r in rows]))


if __name__ == "__main__":
    main()
