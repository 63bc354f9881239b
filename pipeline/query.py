"""Query the stored tables: SQL over every Parquet table, and an item's content and neighbours.

    python -m pipeline.query sql "SELECT title, words FROM items JOIN keywords USING (item_id) LIMIT 5"
    python -m pipeline.query item 50 --k 5

`sql` runs polars SQL over lazily scanned tables named after their files: items, interactions,
sequences (data/prepared) and text, text_sentences, image, image_grid, keywords, keyword_vectors
(data/features/*/). Vectors are polars Array columns. `item` prints an item's text, its image
keywords and its nearest neighbours under each stored modality: cosine similarity with exact FAISS
search (IndexFlatIP over L2-normalised vectors); stacks (sentences, images, keyword sentences) are
averaged over their valid slots first. Items lacking a modality are left out of that search.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import faiss
import numpy as np
import polars as pl

from pipeline.features.store import load_item_matrix
from pipeline.layout import PROJECT_DATA
from pipeline.tables import TableError, file_sha256, read_provenance, read_table

MODALITIES = {"text": "text", "text_sentences": "text_sentences", "image": "image", "keyword_vectors": "keyword_vectors"}


def find_tables(prepared: Path, features: Path) -> dict[str, Path]:
    tables = {p.stem: p for p in sorted(prepared.glob("*.parquet"))}
    tables |= {p.stem: p for p in sorted(features.glob("*/*.parquet"))}
    if not tables:
        raise SystemExit(f"no tables under {prepared} or {features}: run `dvc repro` first")
    return tables


def sql(query: str, tables: dict[str, Path]) -> pl.DataFrame:
    ctx = pl.SQLContext({name: pl.scan_parquet(path) for name, path in tables.items()})
    return ctx.execute(query).collect()


def item_vectors(path: Path, kind: str, n_items: int, items: Path) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (n_items+1, D) L2-normalised, valid (n_items+1,)) for one modality, checked to be
    extracted from this `items` table (features of another preprocessing run are refused)."""
    vec, mask = load_item_matrix(path, kind, n_items, expect={"source_sha256": file_sha256(items)})
    if vec.ndim == 3:
        w = mask[..., None].astype(np.float32)
        vec = (vec * w).sum(1) / np.maximum(w.sum(1), 1.0)
        mask = mask.any(1)
    norms = np.linalg.norm(vec, axis=1, keepdims=True)
    return np.where(norms > 0, vec / np.maximum(norms, 1e-12), 0.0).astype(np.float32), mask & (norms[:, 0] > 0)


def neighbours(vectors: np.ndarray, valid: np.ndarray, item: int, k: int) -> list[tuple[int, float]]:
    ids = np.flatnonzero(valid)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors[ids])
    scores, pos = index.search(vectors[item:item + 1], min(k + 1, len(ids)))
    return [(int(ids[p]), float(s)) for p, s in zip(pos[0], scores[0]) if p >= 0 and ids[p] != item][:k]


def describe_item(item: int, tables: dict[str, Path], k: int) -> str:
    items = read_table(tables["items"], "items")
    n_items = int(items["item_id"].max())
    if not 1 <= item <= n_items:
        raise SystemExit(f"item {item} is not an item id (1..{n_items})")
    row = items.filter(pl.col("item_id") == item).row(0, named=True)
    title = dict(zip(items["item_id"].to_list(), items["title"].to_list()))
    lines = [f"item {item} ({row['orig_id']}): {row['title']}", f"  categories: {', '.join(row['categories'] or [])}",
             f"  description: {row['description'] or '(none)'}", f"  images: {', '.join(row['image_paths'] or []) or '(none)'}"]
    if "keywords" in tables:
        kw = read_table(tables["keywords"], "keywords", {"source_sha256": file_sha256(tables["items"])})
        kw = kw.filter(pl.col("item_id") == item)
        for r in kw.iter_rows(named=True):
            words = ", ".join(f"{w} ({s:.2f})" for w, s in zip(r["words"], r["scores"]))
            lines.append(f"  keywords, image {r['image_index']}: {words}")
    for name, kind in MODALITIES.items():
        if name not in tables:
            continue
        vectors, valid = item_vectors(tables[name], kind, n_items, tables["items"])
        encoder = read_provenance(tables[name]).get("encoder")
        if not valid[item]:
            lines.append(f"  nearest by {name} ({encoder}): this item has no {name} features")
            continue
        lines.append(f"  nearest by {name} ({encoder}):")
        lines += [f"    {j:>6}  {s:.3f}  {title.get(j)}" for j, s in neighbours(vectors, valid, item, k)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepared", default=str(PROJECT_DATA.prepared))
    ap.add_argument("--features", default=str(PROJECT_DATA.features))
    sub = ap.add_subparsers(dest="command", required=True)
    q = sub.add_parser("sql", help="run a SQL query over the tables")
    q.add_argument("query")
    q.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    it = sub.add_parser("item", help="an item's text, keywords and nearest neighbours per modality")
    it.add_argument("item_id", type=int)
    it.add_argument("--k", type=int, default=5)
    args = ap.parse_args(argv)
    if args.command == "item" and args.k < 1:
        ap.error(f"--k {args.k}: give a positive number of neighbours")
    tables = find_tables(Path(args.prepared), Path(args.features))
    try:
        if args.command == "sql":
            out = sql(args.query, tables)
            if args.csv:
                sys.stdout.write(out.write_csv())
            else:
                with pl.Config(tbl_rows=50, fmt_str_lengths=80, tbl_width_chars=160):
                    print(out)
        else:
            print(describe_item(args.item_id, tables, args.k))
    except (pl.exceptions.PolarsError, TableError) as e:  # bad SQL, an unknown table or column, mixed runs
        if os.environ.get("MMREC_DEBUG"):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SystemExit(f"error: {first} (tables: {', '.join(sorted(tables))}; MMREC_DEBUG=1 for the traceback)") from None


if __name__ == "__main__":
    main()
