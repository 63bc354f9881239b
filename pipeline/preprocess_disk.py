"""Preprocessing out of core: the rules of `pipeline.preprocess`, run by DuckDB over files on disk.

`preprocess.engine: disk` (or `auto` when the raw logs exceed DISK_BYTES) runs the steps whose
memory grows with the log — filters, duplicates, the k-core fixed point, numbering, ordering, the
split and the per-user sequences — as SQL on a DuckDB database in a work folder beside the output,
with a memory budget (MEMORY_MB) beyond which DuckDB spills sorts, joins and aggregates to disk. A
clean log is never held whole either: the reader streams it to Parquet in the work folder and checks
it with streaming passes (`pipeline.sources.common.SPILL`). What stays in memory is per id, not per
event: distinct ids while they are normalised, the item map and the items table. The tables are
streamed from DuckDB into Parquet a row group at a time.

The outputs are those of the in-memory engine, value for value, and so is stats.json (tested on
generated logs over every rule: `tests/test_preprocess_disk.py`). The engine was chosen by
measurement (`bench/preprocess_engines.py`; docs/performance.md): at 50M rows DuckDB ran a k-core
round and the ordering in 21 s within a 400 MB budget, polars' streaming engine with its
out-of-core budget in 61 s, polars in memory in 30 s with 4 GB.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import chain
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from pipeline.config import PreprocessConfig
from pipeline.params import ConfigError
from pipeline.preprocess_summary import (
    DROP_REASONS,
    items_table,
    large_filter,
    refuse_empty,
    refuse_time_split_without_times,
    summarize,
)
from pipeline.sources import RawData
from pipeline.sources.common import SPILL, schema_of
from pipeline.tables import SCHEMAS

log = logging.getLogger("pipeline.preprocess")

DISK_BYTES = 512 * 2**20  # `engine: auto` goes to disk above this much raw log (~20M RecBole lines)
MEMORY_MB = 2048  # DuckDB's budget; beyond it sorts, joins and aggregates spill to the work folder
BATCH = 1 << 20  # rows per batch streamed out of DuckDB


def choose(raw_dir: Path, cfg: PreprocessConfig) -> str:
    """The engine a run uses: the configured one, or for `auto` disk when the raw folder's files (its
    top level: the logs, not image folders) exceed DISK_BYTES."""
    if cfg.engine != "auto":
        return cfg.engine
    size = sum(f.stat().st_size for f in raw_dir.iterdir() if f.is_file())
    return "disk" if size > DISK_BYTES else "memory"


def threads() -> int:
    """Cores this process may use (its affinity), or POLARS_MAX_THREADS when set (one-thread runs)."""
    limit = os.environ.get("POLARS_MAX_THREADS")
    return int(limit) if limit else len(os.sched_getaffinity(0))


@contextmanager
def spilling(beside: Path) -> Iterator[Path]:
    """A work folder beside the output for the spilled log, the DuckDB database and its spill files,
    removed when the block ends; readers spill their parsed log there (`SPILL`)."""
    work = Path(tempfile.mkdtemp(prefix=".preprocess-disk-", dir=beside))
    token = SPILL.set(work)
    try:
        yield work
    finally:
        SPILL.reset(token)
        shutil.rmtree(work, ignore_errors=True)


@contextmanager
def prepared(raw: RawData, cfg: PreprocessConfig, work: Path) -> Iterator[tuple]:
    """(items, interactions, sequences, stats) as `pipeline.preprocess.preprocess` returns them, except
    that the two per-event tables are functions returning a `pa.RecordBatchReader` (ordered as the
    in-memory engine orders them), valid inside the block. `raw.interactions` (a frame, or a LazyFrame
    over a spilled log) is written to `work` with string ids and released."""
    import duckdb

    log_path = work / "log.parquet"
    columns = (pl.col("user").cast(pl.String).alias("u"), pl.col("item").cast(pl.String).alias("i"),
               pl.col("timestamp").alias("t"), "rating", pl.col("row").alias("r"))
    if isinstance(raw.interactions, pl.LazyFrame):
        raw.interactions.select(*columns).sink_parquet(log_path)
    else:
        raw.interactions.select(*columns).write_parquet(log_path)
    raw.interactions = pl.DataFrame(schema=schema_of(raw.interactions))
    for spilled in work.glob("*.parquet"):  # the reader's spill files: read into log.parquet, no longer needed
        if spilled != log_path:
            spilled.unlink()
    con = duckdb.connect(str(work / "db.duckdb"))
    try:
        con.execute(f"SET threads = {threads()}; SET memory_limit = '{MEMORY_MB}MB'; "
                    f"SET temp_directory = '{work / 'spill'}'; SET preserve_insertion_order = false")
        yield run(con, log_path, raw, cfg)
    finally:
        con.close()


def run(con, log_path: Path, raw: RawData, cfg: PreprocessConfig) -> tuple:
    """The rules on the DuckDB database `con`, from the log at `log_path` (u, i, t, rating, r)."""
    dropped = dict.fromkeys(DROP_REASONS, 0)

    def count(table: str = "e") -> int:
        return con.sql(f"SELECT count(*) FROM {table}").fetchall()[0][0]

    def replace(select: str) -> None:
        con.execute(f"CREATE OR REPLACE TABLE e2 AS {select}; DROP TABLE e; ALTER TABLE e2 RENAME TO e")

    def keep(name: str, where: str) -> None:
        """Keep the events where `where` holds (null: not), counting the others under `name`; the table
        is rewritten only when some go."""
        gone = con.sql(f"SELECT count(*) FROM e WHERE NOT coalesce({where}, false)").fetchall()[0][0]
        if gone:
            replace(f"SELECT * FROM e WHERE coalesce({where}, false)")
            dropped[name] += gone

    con.execute(f"CREATE TABLE e AS SELECT * FROM read_parquet('{log_path}')")
    log_path.unlink()
    n_raw = count()
    log.info("out of core: %d interactions in DuckDB (%d thread(s), %d MB)", n_raw, threads(), MEMORY_MB)
    keep("missing_id", "u <> '' AND i <> ''")
    if cfg.user_fraction < 1:  # the in-memory engine's sample, drawn from the same sorted users
        users = pl.from_arrow(con.sql("SELECT DISTINCT u FROM e").to_arrow_table())["u"].sort()
        chosen = users.sample(fraction=cfg.user_fraction, seed=cfg.user_sample_seed, shuffle=True)
        con.register("sample", pa.table({"u": chosen.to_arrow()}))
        keep("user_sample", "u IN (SELECT u FROM sample)")
        con.unregister("sample")
    if cfg.min_rating is not None:
        keep("unrated", "NOT isnan(rating)")
        keep("below_min_rating", f"rating >= {float(cfg.min_rating)!r}")
    if cfg.duplicates != "none":  # the first (timestamp, row) of each key, as the sort-based in-memory rule keeps
        key, order = ("u, i, t", "r") if cfg.duplicates == "exact" else ("u, i", "t, r")
        gone = count() - con.sql(f"SELECT count(*) FROM (SELECT DISTINCT {key} FROM e)").fetchall()[0][0]
        if gone:
            replace(f"SELECT * FROM e QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY {order}) = 1")
            dropped["duplicate"] = gone
    users0, items0, events0 = con.sql("SELECT count(DISTINCT u), count(DISTINCT i), count(*) FROM e").fetchall()[0]
    rounds, before = 0, events0
    while True:  # a round removes users and items below their core until none is
        rounds += 1
        low = {c: f"SELECT {c} FROM e GROUP BY {c} HAVING count(*) < {core}"
               for c, core in (("u", cfg.user_core), ("i", cfg.item_core))}
        if not con.sql(f"SELECT EXISTS ({low['u']}) OR EXISTS ({low['i']})").fetchall()[0][0]:
            break
        replace(f"SELECT * FROM e WHERE u NOT IN ({low['u']}) AND i NOT IN ({low['i']})")
    dropped["kcore"] = before - count()
    users1, items1 = con.sql("SELECT count(DISTINCT u), count(DISTINCT i) FROM e").fetchall()[0]
    large = large_filter(dropped["kcore"], events0, users0 - users1, users0, items0 - items1, items0, cfg)
    shortest = 3 if cfg.split == "loo" else 1
    keep("too_short_to_split", f"u IN (SELECT u FROM e GROUP BY u HAVING count(*) >= {shortest})")
    refuse_empty(count(), dropped)

    # Numbered in order of first appearance in time (timestamp, then file row), as the in-memory engine.
    for c, new in (("i", "item_id"), ("u", "user_id")):
        con.execute(f"CREATE TABLE map_{c} AS SELECT {c}, (row_number() OVER (ORDER BY m))::INTEGER AS {new} "
                    f"FROM (SELECT {c}, min({{'t': t, 'r': r}}) AS m FROM e GROUP BY {c})")
    con.execute("""CREATE TABLE g AS SELECT user_id, item_id, t, rating, r,
                       (row_number() OVER (PARTITION BY user_id ORDER BY t, r) - 1)::INTEGER AS position,
                       count(*) OVER (PARTITION BY user_id) AS n
                   FROM e JOIN map_u USING (u) JOIN map_i USING (i)""")
    con.execute("DROP TABLE e")
    refuse_time_split_without_times(raw, cfg)
    split, part = assign_split(con, cfg)

    item_map = pl.from_arrow(con.sql("SELECT item_id, i AS item FROM map_i").to_arrow_table())
    items, meta = items_table(item_map, raw.items)
    lengths = pl.from_arrow(con.sql("SELECT count(*) AS n FROM g GROUP BY user_id").to_arrow_table())["n"]
    n_interactions = count("g")
    groups, events = con.sql("SELECT count(*) FILTER (WHERE c > 1), coalesce(sum(c) FILTER (WHERE c > 1), 0) "
                                 "FROM (SELECT count(*) AS c FROM g GROUP BY user_id, t)").fetchall()[0]
    stats = summarize(raw, cfg, items, item_map, meta, lengths, n_interactions,
                      {"n_raw": n_raw, "users0": users0, "items0": items0, "dropped": dropped, "rounds": rounds},
                      split, large, {"equal_timestamp_groups": int(groups), "events_in_ties": int(events)})
    accounted = n_interactions + sum(dropped.values())
    assert accounted == n_raw, f"row accounting is off: {accounted} != {n_raw}"

    def stream(sql: str) -> Callable[[], pa.RecordBatchReader]:
        return lambda: con.sql(sql).to_arrow_reader(BATCH)

    interactions = stream(f"SELECT user_id, item_id, t AS timestamp, rating::FLOAT AS rating, position, {part} AS split "
                          "FROM g ORDER BY user_id, t, r")
    return items, interactions, lambda: sequences(con), stats


SEQUENCES = SCHEMAS["sequences"]  # the table's own schema (pipeline.tables)


def sequences(con) -> pa.RecordBatchReader:
    """One row per user (user_id order) with its items and times in event order, cut from the ordered
    event stream: DuckDB's ordered `list()` aggregate does not spill (it ran out of a 200 MB budget at
    10M events), its sort does. A user's events that straddle two batches are carried over; the
    users' source ids come from a second ordered stream in step (every kept user has events)."""
    events = con.sql("SELECT user_id, item_id, t FROM g ORDER BY user_id, t, r").to_arrow_reader(BATCH)
    names = con.cursor().sql("SELECT u FROM map_u ORDER BY user_id").to_arrow_reader(BATCH)

    def take(n: int, held: list) -> pa.Array:
        while sum(len(a) for a in held) < n:
            held.append(names.read_next_batch().column(0))
        joined = pa.concat_arrays(held)
        held[:] = [joined.slice(n)]
        return joined.slice(0, n)

    def batches() -> Iterator[pa.RecordBatch]:
        held, carry = [], None
        for batch in chain(events, [None]):  # streamed: the end (None) flushes the last user
            if batch is not None:
                part = {c: batch.column(c).to_numpy() for c in ("user_id", "item_id", "t")}
                carry = part if carry is None else {c: np.concatenate([carry[c], part[c]]) for c in part}
                if not len(carry["user_id"]):
                    continue
            elif carry is None or not len(carry["user_id"]):
                return
            uid = carry["user_id"]
            starts = np.flatnonzero(uid[1:] != uid[:-1]) + 1
            end = len(uid) if batch is None else (starts[-1] if len(starts) else 0)  # the last user may go on
            if end == 0:
                continue
            offsets = pa.array(np.concatenate([[0], starts[starts < end], [end]]).astype(np.int32))
            yield pa.RecordBatch.from_arrays(
                [pa.array(uid[offsets.to_numpy()[:-1]], pa.int32()), take(len(offsets) - 1, held),
                 pa.ListArray.from_arrays(offsets, pa.array(carry["item_id"][:end], pa.int32())),
                 pa.ListArray.from_arrays(offsets, pa.array(carry["t"][:end], pa.int64()))], schema=SEQUENCES)
            carry = {c: v[end:] for c, v in carry.items()}

    return pa.RecordBatchReader.from_batches(SEQUENCES, batches())


def assign_split(con, cfg: PreprocessConfig) -> tuple[dict, str]:
    """`pipeline.preprocess.assign_split` in SQL: the description for stats.json and the expression of an
    event's part (train | valid | test) over the table g."""
    if cfg.split == "loo":
        return {"kind": "loo"}, "CASE WHEN position = n - 1 THEN 'test' WHEN position = n - 2 THEN 'valid' ELSE 'train' END"
    q = cfg.split_cuts
    quantiles = q[1] < 1
    n = con.sql("SELECT count(*) FROM g").fetchall()[0][0]
    if quantiles:  # numpy's quantile(method="lower"): the value at floor((n - 1) q) of the sorted times
        at = [int(np.floor((n - 1) * np.float64(x))) for x in q]
        cuts = [int(con.sql(f"SELECT t FROM g ORDER BY t LIMIT 1 OFFSET {k}").fetchall()[0][0]) for k in at]
    else:
        cuts = [int(x) for x in q]
    part = f"CASE WHEN t < {cuts[0]} THEN 'train' WHEN t < {cuts[1]} THEN 'valid' ELSE 'test' END"
    parted = f"(SELECT *, {part} AS split FROM g)"
    parts = ("train", "valid", "test")
    events = dict(zip(parts, con.sql("SELECT " + ", ".join(f"count(*) FILTER (WHERE split = '{k}')" for k in parts)
                                         + f" FROM {parted}").fetchall()[0]))
    no_history = dict(zip(("valid", "test"), con.sql(
        "SELECT count(*) FILTER (WHERE split = 'valid' AND position = 0), "
        f"count(*) FILTER (WHERE split = 'test' AND position = 0) FROM {parted}").fetchall()[0]))
    users, users_train = con.sql("SELECT count(DISTINCT user_id), count(DISTINCT user_id) FILTER "
                                 f"(WHERE split = 'train') FROM {parted}").fetchall()[0]
    in_valid, in_test = con.sql(
        f"SELECT count(*) FILTER (WHERE f >= {cuts[0]} AND f < {cuts[1]}), count(*) FILTER (WHERE f >= {cuts[1]}) "
        "FROM (SELECT min(t) AS f FROM g GROUP BY item_id)").fetchall()[0]
    split = {"kind": "time", "cuts": cuts, "quantiles": q if quantiles else None,
             "events": {k: int(v) for k, v in events.items()}, "users": int(users),
             "users_with_training_events": int(users_train), "items_first_seen_in_valid": int(in_valid),
             "items_first_seen_in_test": int(in_test),
             "queries": {k: int(events[k] - no_history[k]) for k in ("valid", "test")},
             "queries_without_history_skipped": {k: int(v) for k, v in no_history.items()}}
    if not events["train"] or not split["queries"]["valid"] or not split["queries"]["test"]:
        raise ConfigError(f"time split at {cuts} (preprocess.split_cuts {q}): {split['events']} events and "
                          f"{split['queries']} queries by part — every part needs some; move the cuts")
    log.info("time split at %s: events %s, queries %s (%s without an earlier event skipped), items first seen "
             "after the first cut %d, after the second %d", cuts, split["events"], split["queries"], no_history,
             in_valid + in_test, in_test)
    return split, part
