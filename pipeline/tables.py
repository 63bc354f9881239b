"""The one module that owns table schemas, atomic writes and provenance.

Every Parquet table the pipeline writes goes through `write_table` and every read through
`read_table`, so a schema lives in exactly one place. Files are written to a temporary name in
the same folder and renamed into place, so an interrupted stage never leaves a half-written
table under its final name. Each file carries its provenance in the Parquet key-value metadata
(`mmrec.table`, `mmrec.schema_version`, `mmrec.provenance`), which `read_table` checks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

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
}


class TableError(ValueError):
    """A table on disk is not what the reader expects (wrong kind, schema or provenance)."""


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


def write_table(df: pl.DataFrame | pa.Table, path: str | os.PathLike, kind: str, provenance: dict) -> None:
    """Cast `df` to the `kind` schema (columns must match exactly) and write it atomically."""
    schema = SCHEMAS[kind]
    table = df.to_arrow() if isinstance(df, pl.DataFrame) else df
    missing = set(schema.names) - set(table.column_names)
    extra = set(table.column_names) - set(schema.names)
    if missing or extra:
        raise TableError(f"{kind} table: missing columns {sorted(missing)}, unexpected {sorted(extra)}")
    table = table.select(schema.names).cast(schema)
    meta = {
        "mmrec.table": kind,
        "mmrec.schema_version": SCHEMA_VERSION,
        "mmrec.provenance": json.dumps(provenance, sort_keys=True),
    }
    table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def read_provenance(path: str | os.PathLike) -> dict:
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(b"mmrec.provenance")
    return json.loads(raw) if raw else {}


def read_table(path: str | os.PathLike, kind: str) -> pl.DataFrame:
    """Read a table written by `write_table`, checking its kind, schema version and columns."""
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
    expected = SCHEMAS[kind]
    if not table.schema.remove_metadata().equals(expected):
        raise TableError(f"{path}: schema differs from the '{kind}' schema:\n{table.schema}\nexpected:\n{expected}")
    return pl.from_arrow(table)
