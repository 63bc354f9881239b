"""The out-of-core engine (DuckDB, `preprocess.engine: disk`) writes what the in-memory engine writes:
the same tables value for value and the same stats.json, over generated logs and every rule."""

import copy
import json

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pipeline import preprocess_disk
from pipeline.config import PreprocessConfig
from pipeline.params import ConfigError
from pipeline.preprocess import preprocess, run
from pipeline.sources import RawData
from pipeline.tables import read_table


def raw_log(events: list[tuple]) -> RawData:
    """(user, item, rating, timestamp) rows; ids are strings ("" and None included), rows numbered in order."""
    inter = pl.DataFrame(events, schema={"user": pl.String, "item": pl.String, "rating": pl.Float64,
                                         "timestamp": pl.Int64}, orient="row")
    inter = inter.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
    names = sorted({e[1] for e in events if e[1]})
    items = pl.DataFrame({"item": names[::2] + names[:1],  # some items without metadata, one repeated
                          "title": [f"t{i}" for i in range(len(names[::2]) + len(names[:1]))]},
                         schema={"item": pl.String, "title": pl.String})
    items = items.with_columns(pl.lit(["c"]).alias("categories"), pl.lit("d").alias("description"),
                               pl.lit([], dtype=pl.List(pl.String)).alias("image_paths"))
    return RawData(inter, items, {"parsed": len(events)})


def by_disk(raw: RawData, cfg: PreprocessConfig, tmp) -> tuple:
    """The disk engine's outputs as frames (the streams read whole)."""
    with preprocess_disk.spilling(tmp) as work, preprocess_disk.prepared(raw, cfg, work) as (items, inter, seqs, stats):
        return items, pl.from_arrow(inter().read_all()), pl.from_arrow(seqs().read_all()), stats


def assert_same(memory: tuple, disk: tuple) -> None:
    for name, a, b in zip(("items", "interactions", "sequences"), memory[:3], disk[:3]):
        b = b.select(a.columns).cast(dict(a.schema))
        assert a.equals(b), f"{name} differ:\n{a}\n{b}"
    assert json.dumps(memory[3], sort_keys=True, default=str) == json.dumps(disk[3], sort_keys=True, default=str)


ids = st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h", " a"] * 4 + ["", None])  # no id: now and then
users = st.sampled_from(["u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8", "u9"] * 4 + ["", None])
one_event = st.tuples(users, ids, st.sampled_from([1.0, 2.5, 3.0, 4.0, 5.0] * 3 + [None, float("nan")]),
                  st.integers(0, 30))
configs = st.fixed_dictionaries({
    "user_core": st.integers(0, 2), "item_core": st.integers(0, 2),
    "duplicates": st.sampled_from(["exact", "first", "none"]),
    "min_rating": st.sampled_from([None, 3.0]), "user_fraction": st.sampled_from([1.0, 0.6]),
    "split": st.sampled_from(["loo", "time"]),
    "split_cuts": st.sampled_from([[0.5, 0.75], [0.3, 0.9], [10, 22]]),
})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(one_event, min_size=20, max_size=80), configs)
def test_disk_engine_equals_memory_engine(tmp_path, events, kw):
    """Every rule (missing ids, sampling, ratings, duplicates, k-core, numbering, ties, both splits) and
    every error: the disk engine gives the in-memory engine's tables and stats, or its error."""
    cfg = PreprocessConfig(allow_degenerate=True, **kw)
    raw = raw_log(events)
    try:
        memory = preprocess(copy.deepcopy(raw), cfg)
    except ConfigError as e:
        with pytest.raises(ConfigError) as disk_error:
            by_disk(raw, cfg, tmp_path)
        assert str(disk_error.value) == str(e)
        return
    event("tables written")  # most examples (checked with --hypothesis-show-statistics): not only errors
    assert_same(memory, by_disk(raw, cfg, tmp_path))
    assert not list(tmp_path.glob(".preprocess-disk-*"))  # the work folder goes with the block


def test_large_log_equal_through_the_stage(tmp_path, monkeypatch):
    """A log larger than one streamed batch and one row group (both made small here), read from a RecBole
    file: out of core the reader spills the parsed log and checks it lazily, DuckDB streams the tables —
    and the stage writes the in-memory engine's files (values, row groups, stats.json, provenance)."""
    rng = np.random.default_rng(0)
    n = 30_000
    events = list(zip((f"u{u}" for u in rng.integers(0, 900, n)), (f"i{i}" for i in rng.zipf(1.3, n) % 400),
                      rng.integers(1, 6, n).astype(float), rng.integers(10**9, 2 * 10**9, n)))
    events = [(u + "\u200b" if k % 97 == 0 else u, *rest) for k, (u, *rest) in enumerate(events)]  # ids to normalise
    monkeypatch.setattr(preprocess_disk, "BATCH", 1000)
    monkeypatch.setattr("pipeline.tables.ROW_GROUP", 4096)
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += [f"{u}\t{i}\t{r}\t{t}" for u, i, r, t in events]
    (raw_dir / "s.inter").write_text("\n".join(lines) + "\n")
    (raw_dir / "source.json").write_text(json.dumps({"format": "recbole", "name": "s", "dataset": "s"}))
    spilled = []
    monkeypatch.setattr(preprocess_disk, "prepared", spy(preprocess_disk.prepared, spilled))
    outs = {e: tmp_path / e for e in ("memory", "disk")}
    for engine, out in outs.items():
        run(raw_dir, out, PreprocessConfig(engine=engine))
    assert spilled == [True]  # the disk engine got the log as a LazyFrame over the spilled file
    assert json.loads((outs["disk"] / "stats.json").read_text())["parse"]["ids_normalised"] > 0
    for table in ("items", "interactions", "sequences"):
        a, b = (read_table(outs[e] / f"{table}.parquet", table) for e in outs)
        assert a.equals(b), table
    groups = {e: pq.ParquetFile(outs[e] / "interactions.parquet").metadata.num_row_groups for e in outs}
    rows = pq.ParquetFile(outs["disk"] / "interactions.parquet").metadata.num_rows
    assert groups == {"memory": -(-rows // 4096), "disk": -(-rows // 4096)} and rows > 4096
    assert (outs["memory"] / "stats.json").read_text() == (outs["disk"] / "stats.json").read_text()
    assert pq.read_schema(outs["memory"] / "interactions.parquet").metadata == \
        pq.read_schema(outs["disk"] / "interactions.parquet").metadata
    assert not list(tmp_path.glob(".preprocess-disk-*"))  # the work folder is gone

    # `auto`: the engine follows the size of the raw logs
    assert preprocess_disk.choose(raw_dir, PreprocessConfig()) == "memory"
    monkeypatch.setattr(preprocess_disk, "DISK_BYTES", (raw_dir / "s.inter").stat().st_size - 1)
    assert preprocess_disk.choose(raw_dir, PreprocessConfig()) == "disk"


def spy(prepared, seen: list):
    def wrapped(raw, cfg, work):
        seen.append(isinstance(raw.interactions, pl.LazyFrame))
        return prepared(raw, cfg, work)
    return wrapped


def test_a_file_that_is_not_clean_is_read_in_memory_and_said(tmp_path, caplog):
    """A ragged line sends the log to the checked (in-memory) parser, which counts it; the run says so."""
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    lines = ["user_id:token\titem_id:token\ttimestamp:float"] + [f"u{k % 60}\ti{k % 70}\t{k}" for k in range(900)]
    (raw_dir / "s.inter").write_text("\n".join(lines[:10] + ["u1\ti2"] + lines[10:]) + "\n")
    (raw_dir / "source.json").write_text(json.dumps({"format": "recbole", "name": "s", "dataset": "s"}))
    outs = {e: tmp_path / e for e in ("memory", "disk")}
    for engine, out in outs.items():
        run(raw_dir, out, PreprocessConfig(engine=engine, user_core=0, item_core=0))
    assert "not a clean file" in caplog.text
    stats = {e: json.loads((outs[e] / "stats.json").read_text()) for e in outs}
    assert stats["disk"] == stats["memory"] and stats["disk"]["parse"]["inter_malformed_lines"] == 1
