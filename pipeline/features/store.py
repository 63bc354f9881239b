"""Sharded, resumable extraction into the feature store, and reading it back as arrays.

`extract_sharded` cuts the items (sorted by id) into shards of `shard_size` rows. Each shard is
computed, then written atomically to `<work>/<table>-<shard>-<fingerprint>.parquet`, where the
fingerprint hashes the stage's settings, the encoder identity and the shard's own input rows. A
rerun (after a crash, a kill, Ctrl-C) reuses every shard whose fingerprint still matches and
computes only the rest; a shard of other settings or inputs is never reused because its name
differs. When all shards exist they are concatenated in order and written atomically as the final
table, and the shard folder is removed. The log says how many shards were reused and computed.

In a torch.distributed group (`features.nproc` > 1, or the stage launched by torchrun) rank r
computes the shards i with i % world == r, each written atomically under its own name as above;
after a barrier rank 0 reads every shard's counts and writes the final tables, so the tables are
byte-identical to a one-process run at the same threads per process.

For tests of the resume path, `MMREC_KILL_AFTER_SHARDS=n` makes the process SIGKILL itself right
after writing its n-th computed shard: a real kill at a deterministic point.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import distributed
from pipeline.progress import progress
from pipeline.tables import (
    TableError,
    read_arrow,
    read_json,
    read_provenance,
    schema_for,
    write_json,
    write_table,
)

log = logging.getLogger("pipeline.features")


def fingerprint(*parts: object) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def frame_digest(df: pl.DataFrame) -> str:
    """A content hash of a (small) frame: the shard's inputs, stable across library versions."""
    return hashlib.sha256(df.write_ndjson().encode()).hexdigest()


def extract_sharded(
    inputs: pl.DataFrame,
    compute: Callable[[pl.DataFrame], dict[str, pa.Table]],
    outputs: dict[str, tuple[Path, str]],
    provenance: dict[str, dict],
    settings: dict,
    work: Path,
    shard_size: int,
    desc: str,
    counts: Counter | None = None,
) -> dict:
    """Run `compute` over shards of `inputs` and write each output table.

    `compute(shard)` returns {output name: arrow table}; `outputs` maps each name to (final path,
    table kind); `provenance[name]` is written into that table's metadata (and sizes its schema).
    `counts` is the Counter `compute` adds its skip/notes counts to: each shard's share is saved
    beside it, so a resumed run's counts still cover every shard.
    Returns {"shards", "reused", "computed", "seconds", "items_per_s"}.
    """
    counts = Counter() if counts is None else counts
    entry = Counter(counts)  # what the caller counted before: kept under the shards' counts
    rank, world = distributed.rank(), distributed.world()
    if shard_size < 1:
        raise ValueError("features.shard_size must be >= 1")
    inputs = inputs.sort("item_id")
    work.mkdir(parents=True, exist_ok=True)
    base = fingerprint(settings, provenance)
    n_shards = max(1, -(-inputs.height // shard_size))
    kill_after = int(os.environ.get("MMREC_KILL_AFTER_SHARDS", "0") or 0)
    reused = computed = 0
    paths: list[dict[str, Path]] = []
    start = time.perf_counter()
    sidecars: list[Path] = []
    with progress(total=inputs.height, desc=desc, unit="item", dynamic_ncols=True, mininterval=1.0,
                  disable=None if rank == 0 else True) as bar:
        for i in range(n_shards):
            shard = inputs.slice(i * shard_size, shard_size)
            fp = fingerprint(base, frame_digest(shard))[:16]
            files = {name: work / f"{name}-{i:05d}-{fp}.parquet" for name in outputs}
            paths.append(files)
            sidecar = work / f"counts-{i:05d}-{fp}.json"
            sidecars.append(sidecar)
            if i % world != rank:  # another rank's shard
                continue
            if sidecar.is_file() and all(readable(f, outputs[n][1], provenance[n]) for n, f in files.items()):
                counts.update(read_json(sidecar))
                reused += 1
                bar.update(shard.height)
                continue
            before = Counter(counts)
            tables = compute(shard)
            for name, f in files.items():
                write_table(tables[name], f, outputs[name][1], provenance[name])
            write_json(sidecar, dict(counts - before))  # last: a shard counts as done only with its counts
            computed += 1
            bar.update(shard.height)
            if kill_after and computed >= kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
    if world > 1:
        distributed.barrier()  # every rank's shards are on disk
        reused, computed = int(distributed.all_sum(reused)), int(distributed.all_sum(computed))
        counts.clear()
        counts.update(entry)
        for sidecar in sidecars:
            counts.update(read_json(sidecar))
    seconds = time.perf_counter() - start
    if rank != 0:
        distributed.barrier()  # rank 0 writes the final tables and removes the shard folder
        return {"shards": n_shards, "reused": reused, "computed": computed, "seconds": round(seconds, 3),
                "items_per_s": None}
    for name, (final, kind) in outputs.items():
        parts = [read_arrow(p[name], kind) for p in paths]
        write_table(pa.concat_tables(parts), final, kind, provenance[name])
    stale = [f for f in work.iterdir() if f.suffix == ".parquet" and f not in {x for p in paths for x in p.values()}]
    shutil.rmtree(work, ignore_errors=True)
    log.info("%s: %d shards, %d reused from an earlier run, %d computed (%d stale shard files removed)%s",
             desc, n_shards, reused, computed, len(stale), f" on {world} processes" if world > 1 else "")
    if world > 1:
        distributed.barrier()
    return {"shards": n_shards, "reused": reused, "computed": computed, "seconds": round(seconds, 3),
            "items_per_s": round(inputs.height / seconds, 2) if seconds > 0 else None}


def readable(path: Path, kind: str, provenance: dict) -> bool:
    if not path.is_file():
        return False
    try:
        return read_provenance(path) == json.loads(json.dumps(provenance, sort_keys=True)) and \
            pq.read_schema(path).remove_metadata().equals(schema_for(kind, provenance))
    except (OSError, pa.ArrowInvalid, TableError):
        return False  # a damaged shard is recomputed


# --------------------------------------------------------------------------- building and reading


def vector_column(x: np.ndarray, dtype: str) -> pa.Array:
    """(N, D) or (N, S, D) float array -> nested fixed-size-list arrow array."""
    np_dtype = np.float16 if dtype == "float16" else np.float32
    arr: pa.Array = pa.array(np.ascontiguousarray(x, dtype=np_dtype).reshape(-1))
    for size in reversed(x.shape[1:]):
        arr = pa.FixedSizeListArray.from_arrays(arr, size)
    return arr


def mask_column(mask: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(mask.reshape(-1).astype(bool)), mask.shape[1])


def stack_table(item_ids: np.ndarray, vectors: np.ndarray, mask: np.ndarray, dtype: str) -> pa.Table:
    """A `text_sentences` / `text_tokens` / `image` / `keyword_vectors` table: masked slots must be zero."""
    vectors = np.where(mask[..., None], vectors, 0.0)
    return pa.table({"item_id": pa.array(item_ids, pa.int32()), "count": pa.array(mask.sum(1), pa.int32()),
                     "mask": mask_column(mask), "vectors": vector_column(vectors, dtype)})


def to_numpy(column: pa.ChunkedArray | pa.Array, shape: tuple[int, ...]) -> np.ndarray:
    """Flatten nested fixed-size lists back into an (N, *shape) float32 array."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(arr)
    flat = arr
    for _ in shape:
        flat = flat.flatten()
    return flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(n, *shape)


def load_item_matrix(path: Path, kind: str, n_items: int, expect: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Features as dense arrays indexed by item id (row 0 = padding):

    - `text`: vectors (n_items+1, D), present (n_items+1,)
    - stacks: vectors (n_items+1, S, D), mask (n_items+1, S)
    - `image_grid` (one row per image): each item's images' tokens one after the other,
      vectors (n_items+1, images x G, D), mask True where an image was encoded
    Items missing from the table get zeros and a False mask.
    """
    table = read_arrow(path, kind, expect)
    prov = json.loads(table.schema.metadata[b"mmrec.provenance"])
    ids = table.column("item_id").to_numpy()
    if ids.size and (ids.max() > n_items or ids.min() < 1):
        raise TableError(f"{path}: item ids outside 1..{n_items}; the features belong to another preprocessing run")
    if kind == "image_grid":
        g, d = prov["grid"], prov["dim"]
        index = table.column("image_index").to_numpy()
        images = int(index.max()) + 1 if index.size else 1  # only as many image slots as some item uses
        vec = np.zeros((n_items + 1, images * g, d), np.float32)
        mask = np.zeros((n_items + 1, images * g), bool)
        slot = index[:, None] * g + np.arange(g)[None]
        vec[ids[:, None], slot] = to_numpy(table.column("tokens"), (g, d))
        mask[ids[:, None], slot] = True
        return vec, mask
    if kind == "text":
        vec = np.zeros((n_items + 1, prov["dim"]), np.float32)
        present = np.zeros(n_items + 1, bool)
        present[ids] = table.column("present").to_numpy(zero_copy_only=False)
        vec[ids] = to_numpy(table.column("vector"), (prov["dim"],))
        return vec, present
    vec = np.zeros((n_items + 1, prov["slots"], prov["dim"]), np.float32)
    mask = np.zeros((n_items + 1, prov["slots"]), bool)
    vec[ids] = to_numpy(table.column("vectors"), (prov["slots"], prov["dim"]))
    mask[ids] = table.column("mask").combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(-1, prov["slots"])
    return vec, mask
