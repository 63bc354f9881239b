"""One mean ± std table from `dvc exp show --all-commits --csv`: experiments named
`<prefix>-<label>-s<seed>`.

    python -m bench.exp_table bench/results/amazon-scientific/dvc-exps.csv --prefix sci

The `workspace` row is skipped (it repeats an applied experiment, or shows stale metrics while
one runs), and a name that appears under several baseline commits counts once: its newest run.
"""

from __future__ import annotations

import argparse
import re

import polars as pl

from pipeline.results import mean_std, table

METRICS = ["test/hr@10", "test/ndcg@10", "test/mrr@10", "valid/ndcg@10", "test_cold/ndcg@10", "cold_seq/ndcg@10"]


def column(df: pl.DataFrame, key: str) -> str:
    """`dvc exp show` prefixes a file's first column with its path (`data/metrics.json:model`)."""
    hits = [c for c in df.columns if c == key or c.endswith(f":{key}")]
    if not hits:
        raise SystemExit(f"no column {key!r} in the CSV; columns: {df.columns[:12]}…")
    return hits[0]


def summarise(df: pl.DataFrame, prefix: str) -> list[list[str]]:
    runs = df.filter(pl.col("Experiment").str.starts_with(f"{prefix}-"))
    if "rev" in runs.columns:
        runs = runs.filter(pl.col("rev") != "workspace")
    if "Created" in runs.columns:  # ISO timestamps: the string order is the time order
        runs = runs.sort("Created", nulls_last=True).unique("Experiment", keep="last", maintain_order=True)
    labels = runs["Experiment"].map_elements(lambda n: re.sub(r"-s\d+$", "", n[len(prefix) + 1:]), return_dtype=pl.String)
    runs = runs.with_columns(labels.alias("label"))
    out = []
    for label in dict.fromkeys(runs["label"].to_list()):
        mine = runs.filter(pl.col("label") == label)
        cells = []
        for key in METRICS:
            cells.append(mean_std(mine[column(df, key)].cast(pl.Float64, strict=False).drop_nulls().to_numpy()))
        out.append([label, str(mine.height), *cells])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("csv")
    ap.add_argument("--prefix", required=True)
    args = ap.parse_args()
    df = pl.read_csv(args.csv, infer_schema_length=0)
    print(table(["experiment", "runs", *METRICS], summarise(df, args.prefix)))


if __name__ == "__main__":
    main()
