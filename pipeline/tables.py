"""The one module that owns table schemas, atomic writes and provenance.

Every Parquet table the pipeline writes goes through `write_table` and every read through
`read_table`, so a schema lives in exactly one place. Fixed tables (items, interactions, sequences)
are in `SCHEMAS`; feature-store tables depend on a dimension and are built by `feature_schema`
from the provenance they are written with (`dim`, `slots`, `grid`, `dtype`), and checked against
the same on read. Files are written to a temporary name in
the same folder and renamed into place, so an interrupted stage never leaves a half-written
table under its final name; a stage's whole output folder is built under a temporary name and
moved into place as one unit (`output_folder`), and the tables of one folder carry one
`generation` that readers check (`same_generation`), so no reader ever sees two runs' tables side
by side. Each file carries its provenance in the Parquet key-value metadata
(`mmrec.table`, `mmrec.schema_version`, `mmrec.provenance`), which `read_table` checks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA_VERSION = "1"

SCHEMAS: dict[str, pa.Schema] = {
    # One row per item that survived preprocessing; item_id 0 is reserved for padding.
    "items": pa.schema(
        [
            ("item_id", pa.int32()),
            ("orig_id", pa.string()),  # the source's own id, as a string
            ("title", pa.string()),
            ("categories", pa.list_(pa.string())),
            ("description", pa.string()),
            ("image_paths", pa.list_(pa.string())),  # relative to the raw data folder
            ("has_metadata", pa.bool_()),  # False: the source had interactions but no item row
        ]
    ),
    # One row per kept interaction, in each user's chronological order.
    "interactions": pa.schema(
        [
            ("user_id", pa.int32()),
            ("item_id", pa.int32()),
            ("timestamp", pa.int64()),
            ("rating", pa.float32()),
            ("position", pa.int32()),  # 0-based index in the user's sequence
            ("split", pa.string()),  # train | valid | test (leave-one-out)
        ]
    ),
    # One row per user: the whole chronological sequence (valid target = [-2], test = [-1]).
    "sequences": pa.schema(
        [
            ("user_id", pa.int32()),
            ("orig_id", pa.string()),
            ("item_ids", pa.list_(pa.int32())),
            ("timestamps", pa.list_(pa.int64())),
        ]
    ),
    # One row per evaluated query (evaluate stage): its rank under the protocol in the metrics file.
    # `rank` is exact up to the largest cut-off and `inf` beyond it; `query` = valid | test | test_unmasked (when masking is on) | test_sampled
    # (SAMPLED, when protocol.sampled > 0: rank among the target + n negatives) | cold_seq. With provenance
    # `beyond_ks`, also pop@K and tail@K per query for each K (valid and test; NaN for the other query sets).
    "ranks": pa.schema(
        [
            ("query", pa.string()),
            ("user_id", pa.int32()),
            ("target", pa.int32()),
            ("rank", pa.float32()),
        ]
    ),
}


class TableError(ValueError):
    """A table on disk is not what the reader expects (wrong kind, schema or provenance)."""


# Feature-store tables (pipeline/features). Vectors are fixed_size_list<float32|float16>[D]; stacks
# are fixed_size_list<vector>[slots] with an explicit `count` and per-slot `mask` (False slots are
# zeros and must be ignored); item_id is int32 as everywhere else.
FEATURE_KINDS = ("text", "text_sentences", "text_tokens", "image", "image_grid", "keyword_vectors", "keywords")
VECTOR_DTYPES = {"float32": pa.float32(), "float16": pa.float16()}


def feature_schema(kind: str, dim: int = 0, slots: int = 0, grid: int = 0, dtype: str = "float32") -> pa.Schema:
    """The schema of a feature-store table; `dim`, `slots`, `grid` come from its provenance."""
    if dtype not in VECTOR_DTYPES:
        raise TableError(f"vector dtype {dtype!r}: use one of {sorted(VECTOR_DTYPES)}")
    vec = pa.list_(VECTOR_DTYPES[dtype], dim) if dim else None
    if kind == "text":  # one pooled vector per item from the configured text fields
        return pa.schema([("item_id", pa.int32()), ("present", pa.bool_()), ("vector", vec)])
    if kind in ("text_sentences", "text_tokens", "image", "keyword_vectors"):  # up to `slots` vectors per item
        return pa.schema([("item_id", pa.int32()), ("count", pa.int32()), ("mask", pa.list_(pa.bool_(), slots)),
                          ("vectors", pa.list_(vec, slots))])
    if kind == "image_grid":  # `grid` patch/region tokens for each loaded image
        return pa.schema([("item_id", pa.int32()), ("image_index", pa.int32()), ("tokens", pa.list_(vec, grid))])
    if kind == "keywords":  # the words an image was tokenized into, best first, with their scores
        return pa.schema([("item_id", pa.int32()), ("image_index", pa.int32()), ("words", pa.list_(pa.string())),
                          ("scores", pa.list_(pa.float32()))])
    raise TableError(f"unknown table kind {kind!r}")


def schema_for(kind: str, provenance: dict) -> pa.Schema:
    if kind == "ranks" and provenance.get("beyond_ks"):  # per-query beyond-accuracy values (files since 2026-12-07)
        return pa.schema(list(SCHEMAS[kind]) + [pa.field(f"{m}@{k}", pa.float32()) for m in ("pop", "tail")
                                                for k in provenance["beyond_ks"]])
    if kind in SCHEMAS:
        return SCHEMAS[kind]
    if kind in FEATURE_KINDS:
        return feature_schema(kind, provenance.get("dim", 0), provenance.get("slots", 0), provenance.get("grid", 0),
                              provenance.get("dtype", "float32"))
    raise TableError(f"unknown table kind {kind!r}; known: {sorted(SCHEMAS) + list(FEATURE_KINDS)}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def sweep_leftovers(out: Path) -> list[str]:
    """Remove what interrupted runs left beside `out` (`.<name>.tmp-*`, `.<name>.old-*` folders and
    `.<name>.*.tmp` files) and return their names; the caller logs the count."""
    gone = []
    for leftover in sorted(out.parent.glob(f".{out.name}.*")):
        if leftover.name.startswith((f".{out.name}.tmp-", f".{out.name}.old-")) or leftover.name.endswith(".tmp"):
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
            gone.append(leftover.name)
    return gone


@contextlib.contextmanager
def output_folder(out: str | os.PathLike) -> Iterator[Path]:
    """Build a stage's output folder under a temporary name beside `out` and move it into place in
    one step when the block ends: readers see the previous folder or the new one, never a mix; a
    failure (a full disk, an error, a kill) leaves the previous folder as it was. Leftovers of an
    interrupted earlier run are removed first and counted in the log."""
    out = Path(out).absolute()  # the block may change the working folder (a download resolving relative sources)
    out.parent.mkdir(parents=True, exist_ok=True)
    gone = sweep_leftovers(out)
    if gone:
        logging.getLogger("pipeline.tables").warning("%s: removed %d leftover(s) of an interrupted run: %s", out,
                                                     len(gone), ", ".join(gone))
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    old = out.parent / f".{out.name}.old-{tmp.name.rsplit('-', 1)[-1]}"
    try:
        yield tmp
        if out.exists():
            os.rename(out, old)
        os.rename(tmp, out)
    finally:
        for path in (tmp, old):
            if path.exists():
                shutil.rmtree(path)


def generation(*parts: Any) -> str:
    """A deterministic id of one run's inputs (the same inputs give the same id, so outputs stay
    byte-identical across reruns), stamped into every table of an output folder."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def same_generation(paths: list[Path]) -> str | None:
    """The tables' common generation; an error naming the two that differ (written by different runs)."""
    seen = {p: read_provenance(p).get("generation") for p in paths}
    first = next(iter(seen.items()), (None, None))
    for path, gen in seen.items():
        if gen != first[1]:
            raise TableError(f"{path} (run {gen}) and {first[0]} (run {first[1]}) were written by different runs of "
                             "the stage: the folder mixes two generations; re-run the stage that writes it (dvc repro)")
    return first[1]


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as pretty JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


ROW_GROUP = 1 << 20  # rows per Parquet row group: pyarrow's default, so a file is the same bytes either way


def write_table(df: pl.DataFrame | pa.Table | Callable[[], pa.RecordBatchReader], path: str | os.PathLike, kind: str,
                provenance: dict) -> None:
    """Cast `df` to the `kind` schema (columns must match exactly) and write it atomically, one row
    group at a time (a 100M-row table is never converted to Arrow whole). `df` may also be a function
    returning a stream of record batches (out-of-core preprocessing): it is regrouped into the same
    ROW_GROUP-row groups, so the file holds what the frame would have written."""
    schema = schema_for(kind, provenance)
    stream = df() if callable(df) else None
    columns = stream.schema.names if stream is not None else (
        df.columns if isinstance(df, pl.DataFrame) else df.column_names)
    missing, extra = set(schema.names) - set(columns), set(columns) - set(schema.names)
    if missing or extra:
        raise TableError(f"{kind} table: missing columns {sorted(missing)}, unexpected {sorted(extra)}")
    meta = {
        "mmrec.table": kind,
        "mmrec.schema_version": SCHEMA_VERSION,
        "mmrec.provenance": json.dumps(provenance, sort_keys=True),
    }
    schema = schema.with_metadata(meta)
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for part in (row_groups(stream) if stream is not None
                     else (df.slice(start, ROW_GROUP) for start in range(0, max(len(df), 1), ROW_GROUP))):
            part = part.to_arrow() if isinstance(part, pl.DataFrame) else part
            writer.write_table(part.select(schema.names).cast(schema))


def row_groups(stream: pa.RecordBatchReader) -> Iterator[pa.Table]:
    """A batch stream regrouped into tables of ROW_GROUP rows (the last shorter; one empty table for an
    empty stream, as a frame writes)."""
    pending, rows, wrote = [], 0, False
    for batch in stream:
        pending.append(batch)
        rows += batch.num_rows
        while rows >= ROW_GROUP:
            table = pa.Table.from_batches(pending, stream.schema)
            yield table.slice(0, ROW_GROUP).combine_chunks()
            rest = table.slice(ROW_GROUP)
            pending, rows, wrote = rest.to_batches(), rest.num_rows, True
    if rows or not wrote:
        yield pa.Table.from_batches(pending, stream.schema).combine_chunks()


def read_provenance(path: str | os.PathLike) -> dict:
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(b"mmrec.provenance")
    return json.loads(raw) if raw else {}


def read_table(path: str | os.PathLike, kind: str, expect: dict | None = None) -> pl.DataFrame:
    """Read a table written by `write_table`, checking its kind, schema version and columns.

    `expect`: provenance entries that must match (e.g. the encoder id or the source checksum a
    consumer was configured with); a mismatch is a TableError naming the key.
    """
    return pl.from_arrow(read_arrow(path, kind, expect))


def read_arrow(path: str | os.PathLike, kind: str, expect: dict | None = None) -> pa.Table:
    """`read_table` without the conversion to polars (vectors stay fixed-size lists)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: table not found; run the stage that writes it (dvc repro)")
    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    got_kind = meta.get(b"mmrec.table", b"").decode()
    version = meta.get(b"mmrec.schema_version", b"").decode()
    if got_kind != kind:
        raise TableError(f"{path}: expected a '{kind}' table, file says '{got_kind or 'nothing'}'")
    if version != SCHEMA_VERSION:
        raise TableError(f"{path}: schema version {version!r}, this code reads {SCHEMA_VERSION!r}; re-run the stage")
    provenance = json.loads(meta.get(b"mmrec.provenance", b"{}"))
    for key, want in (expect or {}).items():
        if provenance.get(key) != want:
            raise TableError(f"{path}: provenance {key}={provenance.get(key)!r}, expected {want!r}; "
                             "the table was made from other inputs or settings: re-run its stage (dvc repro)")
    expected = schema_for(kind, provenance)
    if not table.schema.remove_metadata().equals(expected):
        raise TableError(f"{path}: schema differs from the '{kind}' schema:\n{table.schema}\nexpected:\n{expected}")
    return table
