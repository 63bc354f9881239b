"""Raw source files -> items / interactions / sequences Parquet + stats.json (the `preprocess` stage's library).

Rules, in order (each drop is counted in stats.json under `dropped`):

1. Rows with an empty user or item id are dropped (`missing_id`); with `user_fraction` < 1 only a
   seeded random share of the users is kept (`user_sample`: target-size sweeps).
2. Implicit feedback: with `min_rating` set, unrated rows (`unrated`: no rating, NaN or not a
   number — the reader's parse counts say which) and rows rated below it are dropped.
3. Duplicates, by `duplicates`: `exact` drops repeats of the same (user, item, timestamp);
   `first` keeps only a user's first interaction with an item; `none` keeps everything.
4. k-core: users with fewer than `user_core` and items with fewer than `item_core` interactions are
   removed, repeatedly, until nothing changes (a fixed point).
5. Users with fewer than 3 interactions cannot be split leave-one-out and are dropped (the time
   split keeps them: a query needs one earlier event, and the others are counted).
6. Order: each user's events are sorted by timestamp; equal timestamps keep the source file
   order (a stable sort on (timestamp, file row)).
7. Ids: items and users are renumbered 1..N in order of first appearance in time (0 = padding).
8. Split (`split`): leave-one-out — the last item is the test target, the second-last the validation
   target — or `time`: a global temporal split at two cut-offs (`split_cuts`, quantiles of the event
   times or times): events before the first train, those before the second are validation queries,
   the rest test queries; users and items first seen after a cut are kept and counted
   (stats.json `split`). Filters and numbering run before the split, on all events (stated in
   docs/architecture.md).
9. Degenerate data is refused (`preprocess_summary.check_not_degenerate`): fewer than 50 users or 50 items, or filters
   that dropped more than 90 % of the interactions, is an error naming the counts and what to
   change, unless `allow_degenerate: true` (then it is a warning and `stats.json → degenerate`).

Large logs: the rules run on 4-byte id codes (the readers' categorical ids; the strings of the ids
that survive are joined back at the end), duplicates are found by sorting instead of hashing, and
the tables are written a row group at a time — ~115 bytes of memory per interaction, 100M rows in
~11 GB (docs/benchmarks.md, "Preprocessing at scale"). The outputs are the same bytes as a
string-keyed implementation of the same rules.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

from pipeline import preprocess_disk
from pipeline.config import PreprocessConfig
from pipeline.params import ConfigError
from pipeline.preprocess_summary import (
    DROP_REASONS,
    identity,
    items_table,
    large_filter,
    refuse_empty,
    refuse_time_split_without_times,
    summarize,
)
from pipeline.sources import RawData, SourceError, read_raw
from pipeline.tables import (
    file_sha256,
    generation,
    output_folder,
    read_json,
    write_json,
    write_table,
)

log = logging.getLogger("pipeline.preprocess")

SPLITS = pl.Enum(["train", "valid", "test"])


def kcore(df: pl.DataFrame, user_core: int, item_core: int) -> tuple[pl.DataFrame, int]:
    """Iterate user/item degree filters to a fixed point; return the frame and the number of rounds."""
    rounds = 0
    while True:
        rounds += 1
        keep = df.select((pl.len().over("user") >= user_core) & (pl.len().over("item") >= item_core)).to_series()
        if keep.all():
            return df, rounds
        df = df.filter(keep)


def encode_ids(df: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, pl.DataFrame]]:
    """The frame with its categorical `user` / `item` replaced by their 4-byte codes, and per column a
    (code, id string) table of the distinct ids. Every later step works on the codes; the strings of
    the ids that survive are joined back at the end (a 100M-row log never holds an id string per row)."""
    names = {c: df.select(pl.col(c).unique().drop_nulls()).select(pl.col(c).to_physical().alias("code"),
                                                                   pl.col(c).cast(pl.String))
             for c in ("user", "item")}
    return df.with_columns(pl.col("user").to_physical(), pl.col("item").to_physical()), names


def narrow(df: pl.DataFrame) -> pl.DataFrame:
    """Float32 ratings (the table's type; after the min_rating filter, which compares in float64) and a
    4-byte file row when the rows fit one: 24 bytes per interaction for what follows."""
    rows = df.select(pl.col("row").min().alias("lo"), pl.col("row").max().alias("hi")).row(0)
    small = rows[0] is not None and rows[0] >= 0 and rows[1] < 2**32
    return df.with_columns(pl.col("rating").cast(pl.Float32), *([pl.col("row").cast(pl.UInt32)] if small else []))


def first_seen(df: pl.DataFrame, col: str, name: str) -> pl.DataFrame:
    """(col, name): `col`'s values numbered 1..N in order of first appearance in time (timestamp, then
    file row: each row's (timestamp, row) is unique, so the order is total)."""
    first = df.group_by(col).agg(pl.col("timestamp").min().alias("_t"),
                                 pl.col("row").filter(pl.col("timestamp") == pl.col("timestamp").min()).min().alias("_r"))
    return first.sort(["_t", "_r"]).select(col).with_row_index(name, offset=1)


def renumber(col: str, mapping: pl.DataFrame, new: str) -> pl.Expr:
    return pl.col(col).replace_strict(mapping[col], mapping[new], return_dtype=pl.Int32).alias(new)


def tie_counts(df: pl.DataFrame) -> dict:
    """Groups of a user's events with equal timestamps, on a frame ordered by (user_id, timestamp, row):
    such events are neighbours, so no group-by over every row is needed."""
    same = ((pl.col("user_id") == pl.col("user_id").shift(1)) & (pl.col("timestamp") == pl.col("timestamp").shift(1))
            ).fill_null(False)
    groups, events = df.select((same & ~same.shift(1).fill_null(False)).sum().alias("groups"),
                               (same | same.shift(-1).fill_null(False)).sum().alias("events")).row(0)
    return {"equal_timestamp_groups": int(groups), "events_in_ties": int(events)}


def preprocess(raw: RawData, cfg: PreprocessConfig) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, dict]:
    """Apply the module's rules; return (items, interactions, sequences, stats). The log is consumed:
    `raw.interactions` is emptied once its ids are coded (it is the largest thing alive)."""
    df, ids = encode_ids(raw.interactions)
    raw.interactions = raw.interactions.clear()
    dropped = dict.fromkeys(DROP_REASONS, 0)

    def drop(name: str, keep: pl.Expr | pl.DataFrame) -> pl.DataFrame:
        kept = df.filter(keep) if isinstance(keep, pl.Expr) else keep
        dropped[name] = dropped.get(name, 0) + df.height - kept.height
        return kept

    n_raw = df.height
    empty = {c: ids[c].filter(pl.col(c) == "")["code"].implode() for c in ids}  # "" is no id
    df = drop("missing_id", pl.col("user").is_not_null() & pl.col("item").is_not_null()
              & ~pl.col("user").is_in(empty["user"]) & ~pl.col("item").is_in(empty["item"]))
    if cfg.user_fraction < 1:  # a seeded share of the users, whole (a smaller data set, not sparser users)
        users = ids["user"].filter(pl.col("code").is_in(df["user"].unique().implode())).sort("user")
        keep = users["user"].sample(fraction=cfg.user_fraction, seed=cfg.user_sample_seed, shuffle=True)
        df = drop("user_sample", pl.col("user").is_in(users.filter(pl.col("user").is_in(keep.implode()))["code"].implode()))
    if cfg.min_rating is not None:  # unrated (missing, NaN, not a number: the readers count which) apart
        df = drop("unrated", pl.col("rating").is_not_null() & ~pl.col("rating").is_nan())
        df = drop("below_min_rating", pl.col("rating") >= cfg.min_rating)
    df = narrow(df)
    if cfg.duplicates != "none":  # keep the first (timestamp, row) of each key: after this sort, repeats are neighbours
        key = ["user", "item", "timestamp"] if cfg.duplicates == "exact" else ["user", "item"]
        df = df.sort([*key, "timestamp", "row"] if cfg.duplicates == "first" else [*key, "row"])
        df = drop("duplicate", ~pl.all_horizontal(pl.col(c) == pl.col(c).shift(1) for c in key).fill_null(False))
    users0, items0, events0 = df["user"].n_unique(), df["item"].n_unique(), df.height
    kept, rounds = kcore(df, cfg.user_core, cfg.item_core)
    df = drop("kcore", kept)
    large = large_filter(dropped["kcore"], events0, users0 - df["user"].n_unique(), users0,
                         items0 - df["item"].n_unique(), items0, cfg)
    df = drop("too_short_to_split", pl.len().over("user") >= (3 if cfg.split == "loo" else 1))
    refuse_empty(df.height, dropped)

    # Renumber in order of first appearance in time (timestamp, then file row).
    item_map, user_map = first_seen(df, "item", "item_id"), first_seen(df, "user", "user_id")
    df = (
        df.select(renumber("user", user_map, "user_id"), renumber("item", item_map, "item_id"), "timestamp", "rating",
                  "row")
        .sort(["user_id", "timestamp", "row"])
        .with_columns(pl.int_range(pl.len(), dtype=pl.Int32).over("user_id").alias("position"),
                      pl.len().over("user_id").alias("_n"))
    )
    refuse_time_split_without_times(raw, cfg)
    split, df = assign_split(df, cfg)
    interactions = df.select("user_id", "item_id", "timestamp", "rating", "position", "split")
    names = {c: ids[c].rename({"code": c, c: "orig_id"}) for c in ids}  # (code, source id string)
    sequences = (
        df.group_by("user_id", maintain_order=True)
        .agg(pl.col("item_id").alias("item_ids"), pl.col("timestamp").alias("timestamps"))
        .join(user_map.join(names["user"], on="user").drop("user"), on="user_id", maintain_order="left")
        .select("user_id", "orig_id", "item_ids", "timestamps")
    )
    item_map = item_map.join(names["item"], on="item").select("item_id", pl.col("orig_id").alias("item"))
    items, meta = items_table(item_map, raw.items)
    stats = summarize(raw, cfg, items, item_map, meta, sequences["item_ids"].list.len(), interactions.height,
                      {"n_raw": n_raw, "users0": users0, "items0": items0, "dropped": dropped, "rounds": rounds},
                      split, large, tie_counts(df))
    accounted = interactions.height + sum(dropped.values())
    assert accounted == n_raw, f"row accounting is off: {accounted} != {n_raw}"
    return items, interactions, sequences, stats



def assign_split(df: pl.DataFrame, cfg: PreprocessConfig) -> tuple[dict, pl.DataFrame]:
    """Each event's `split` (train | valid | test) and the split's description for stats.json, on a
    frame ordered by (user_id, time) with `position` and `_n`. Leave-one-out: a user's last event is
    the test, the one before the validation. Time: events before the first cut train, those up to
    the second validate, the rest test; what that does to users and items is counted."""
    if cfg.split == "loo":
        return {"kind": "loo"}, df.with_columns(
            pl.when(pl.col("position") == pl.col("_n") - 1).then(pl.lit("test"))
            .when(pl.col("position") == pl.col("_n") - 2).then(pl.lit("valid"))
            .otherwise(pl.lit("train")).cast(SPLITS).alias("split"))  # an enum: a byte per row, strings when written
    q = cfg.split_cuts
    quantiles = q[1] < 1
    times = df["timestamp"].to_numpy()
    cuts = [int(np.quantile(times, x, method="lower")) for x in q] if quantiles else [int(x) for x in q]
    df = df.with_columns(pl.when(pl.col("timestamp") < cuts[0]).then(pl.lit("train"))
                         .when(pl.col("timestamp") < cuts[1]).then(pl.lit("valid"))
                         .otherwise(pl.lit("test")).cast(SPLITS).alias("split"))
    part = df["split"].cast(pl.String)
    first = df.group_by("item_id").agg(pl.col("timestamp").min())["timestamp"]
    events = {k: int((part == k).sum()) for k in ("train", "valid", "test")}
    users_train = df.filter(pl.col("split") == "train")["user_id"].n_unique()
    # a query needs an earlier event of its user: the first event of a user is never one
    no_history = {k: int(((part == k) & (df["position"] == 0)).sum()) for k in ("valid", "test")}
    split = {"kind": "time", "cuts": cuts, "quantiles": q if quantiles else None, "events": events,
             "users": df["user_id"].n_unique(), "users_with_training_events": users_train,
             "items_first_seen_in_valid": int(((first >= cuts[0]) & (first < cuts[1])).sum()),
             "items_first_seen_in_test": int((first >= cuts[1]).sum()),
             "queries": {k: events[k] - no_history[k] for k in ("valid", "test")},
             "queries_without_history_skipped": no_history}
    if not events["train"] or not split["queries"]["valid"] or not split["queries"]["test"]:
        raise ConfigError(f"time split at {cuts} (preprocess.split_cuts {q}): {events} events and {split['queries']} "
                          "queries by part — every part needs some; move the cuts")
    log.info("time split at %s: events %s, queries %s (%s without an earlier event skipped), items first seen "
             "after the first cut %d, after the second %d", cuts, events, split["queries"], no_history,
             split["items_first_seen_in_valid"] + split["items_first_seen_in_test"], split["items_first_seen_in_test"])
    return split, df


def run(raw_dir: Path, out: Path, cfg: PreprocessConfig) -> dict:
    meta_path = raw_dir / "source.json"
    if not meta_path.is_file():
        raise SourceError(f"{meta_path}: missing; run the download stage first (dvc repro)")
    meta = read_json(meta_path)
    engine = preprocess_disk.choose(raw_dir, cfg)
    with ExitStack() as stack:
        if engine == "disk":  # the log is spilled and processed in a work folder beside the output
            out.parent.mkdir(parents=True, exist_ok=True)
            work = stack.enter_context(preprocess_disk.spilling(out.parent))
            log.info("preprocessing out of core (DuckDB, %d MB budget; work folder %s)", preprocess_disk.MEMORY_MB, work)
        raw = read_raw(raw_dir, meta)
        if meta.get("prefiltered") and (cfg.user_core or cfg.item_core):  # a published benchmark set: used as published
            log.info("%s is declared pre-filtered (its source's `prefiltered: true`): the k-core filter is skipped",
                     meta.get("dataset"))
            cfg = replace(cfg, user_core=0, item_core=0)
        if engine == "disk":  # the per-event tables stream out of DuckDB while they are written
            items, interactions, sequences, stats = stack.enter_context(preprocess_disk.prepared(raw, cfg, work))
        else:
            items, interactions, sequences, stats = preprocess(raw, cfg)
        stats["prefiltered"] = bool(meta.get("prefiltered"))
        stats["dataset"] = meta.get("dataset")
        stats["download"] = {"skipped": meta.get("skipped", {})}  # files the download refused (symlinks out, …)
        prov = {"stage": "preprocess", "dataset": meta.get("dataset"), "format": meta.get("format"),
                "source": meta.get("origin"),
                "source_json_sha256": file_sha256(meta_path), "config": identity(cfg), "raw_dir": str(raw_dir)}
        prov["generation"] = stats["generation"] = generation(prov, stats)
        with output_folder(out) as tmp:  # the four files appear together or not at all
            write_table(items, tmp / "items.parquet", "items", prov)
            write_table(interactions, tmp / "interactions.parquet", "interactions", prov)
            write_table(sequences, tmp / "sequences.parquet", "sequences", prov)
            write_json(tmp / "stats.json", stats)
    log.info("%s: %d users, %d items, %d interactions (density %.4f); dropped %s", meta.get("dataset"),
             stats["users"], stats["items"], stats["interactions"], stats["density"], stats["dropped"])
    return stats
