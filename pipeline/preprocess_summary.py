"""What both preprocessing engines share after the rules: the refusal of degenerate data, the note on a
large k-core, the items table and stats.json (`pipeline.preprocess` in memory, `pipeline.preprocess_disk`
out of core: one summary, so the two engines' stats.json are equal by construction)."""

from __future__ import annotations

import logging
from dataclasses import asdict

import polars as pl

from pipeline.config import PreprocessConfig
from pipeline.params import ConfigError
from pipeline.sources import RawData

log = logging.getLogger("pipeline.preprocess")

# With fewer items than the largest default cut-off (50), HR@50 is 1 for every model, and a handful
# of items makes every metric ~1 (4 users / 3 items gave HR = NDCG = 1.0 on an H&M sample); with
# fewer than 50 users one user moves a metric by more than 2 points. Dropping more than 90 % of the
# interactions means the filters, not the data, decided what is left.
MIN_USERS, MIN_ITEMS, MAX_DROPPED = 50, 50, 0.9


def check_not_degenerate(n_users: int, n_items: int, n_kept: int, n_raw: int, cfg: "PreprocessConfig",
                         dropped: dict) -> list[str]:
    """The reasons the split could not mean anything (empty when fine); an error unless allowed."""
    problems = []
    if n_users < MIN_USERS:
        problems.append(f"{n_users} users (fewer than {MIN_USERS})")
    if n_items < MIN_ITEMS:
        problems.append(f"{n_items} items (fewer than {MIN_ITEMS}: HR@{MIN_ITEMS} would be 1 for any model)")
    if n_raw and (n_raw - n_kept) / n_raw > MAX_DROPPED:
        problems.append(f"{n_raw - n_kept:,} of {n_raw:,} interactions dropped (more than {MAX_DROPPED:.0%}; "
                        f"by reason: { {k: v for k, v in dropped.items() if v} })")
    if problems and not cfg.allow_degenerate:
        raise ConfigError(
            "after preprocessing: " + "; ".join(problems) + ". Metrics on such data are meaningless (a handful of "
            f"items scores 1.0). Lower preprocess.user_core / item_core (now {cfg.user_core} / {cfg.item_core})"
            f"{' or min_rating (now ' + str(cfg.min_rating) + ')' if cfg.min_rating is not None else ''}, or use "
            "more of the source (e.g. an earlier `since` for hm); for a deliberately tiny test set set "
            "preprocess.allow_degenerate: true")
    for p in problems:
        log.warning("degenerate data allowed by preprocess.allow_degenerate: %s", p)
    return problems


LARGE_FILTER_SHARE = 0.05  # a k-core removing more of the events than this is said in the log and in stats.json


def large_filter(events: int, of_events: int, users: int, of_users: int, items: int, of_items: int,
                 cfg: PreprocessConfig) -> dict | None:
    """The k-core's removals when they exceed LARGE_FILTER_SHARE of the events (else None), logged:
    a published benchmark file filtered again no longer describes the set papers report on."""
    if not of_events or events <= LARGE_FILTER_SHARE * of_events:
        return None
    out = {"events": events, "events_share": round(events / of_events, 4), "users": users,
           "users_share": round(users / max(of_users, 1), 4), "items": items, "items_share": round(items / max(of_items, 1), 4)}
    log.warning("the k-core filter (user_core %d, item_core %d) removed %.1f%% of the events (%d of %d), %.1f%% of "
                "the users and %.1f%% of the items; if the file is a published benchmark set, declare it "
                "`prefiltered: true` in params.yaml so it is used as published", cfg.user_core, cfg.item_core,
                100 * out["events_share"], events, of_events, 100 * out["users_share"], 100 * out["items_share"])
    return out


def items_table(item_map: pl.DataFrame, raw_items: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The items table from (item_id, item: the source id) and the reader's metadata rows, and the
    metadata with one row per item (the first of repeats)."""
    meta = raw_items.unique("item", keep="first")
    items = (
        item_map.join(meta.with_columns(pl.lit(True).alias("has_metadata")), on="item", how="left")
        .sort("item_id")
        .select(
            "item_id", pl.col("item").alias("orig_id"), pl.col("title").fill_null(""),
            pl.col("categories").fill_null(pl.lit([], dtype=pl.List(pl.String))), pl.col("description").fill_null(""),
            pl.col("image_paths").fill_null(pl.lit([], dtype=pl.List(pl.String))),
            pl.col("has_metadata").fill_null(False),
        )
    )
    return items, meta


def summarize(raw: RawData, cfg: PreprocessConfig, items: pl.DataFrame, item_map: pl.DataFrame, meta: pl.DataFrame,
              lengths: pl.Series, n_interactions: int, counts: dict, split: dict, large: dict | None,
              ties: dict) -> dict:
    """stats.json from what either engine counted (`counts`: n_raw, users0, items0, dropped, rounds;
    `lengths`: each user's number of events)."""
    n_users, n_items, dropped, n_raw = lengths.len(), items.height, counts["dropped"], counts["n_raw"]
    return {
        "users": n_users,
        "items": n_items,
        "interactions": n_interactions,
        "density": n_interactions / (n_users * n_items),
        "seq_length": {"mean": float(lengths.mean()), "median": float(lengths.median()),
                       "min": int(lengths.min()), "max": int(lengths.max())},
        "raw": {"interactions": n_raw, "users_before_kcore": counts["users0"], "items_before_kcore": counts["items0"],
                "metadata_rows": raw.items.height},
        "dropped": dropped,
        "kcore_rounds": counts["rounds"],
        "split": split,
        "large_filter": large,
        "metadata": {
            "items_without_metadata": int((~items["has_metadata"]).sum()),
            "metadata_rows_without_interactions": int(meta.join(item_map, on="item", how="anti").height),
            "duplicate_metadata_rows": raw.items.height - meta.height,
            "items_without_image": int((items["image_paths"].list.len() == 0).sum()),
            "items_with_empty_title": int((items["title"].str.strip_chars() == "").sum()),
        },
        "ties": ties | {"rule": "equal timestamps keep source file order"},
        "parse": raw.report,
        "config": identity(cfg),
        # a deliberate user sample is not a filter that "dropped" data: the share is of what was sampled
        "degenerate": check_not_degenerate(n_users, n_items, n_interactions, n_raw - dropped["user_sample"], cfg,
                                           {k: v for k, v in dropped.items() if k != "user_sample"}),
    }


def identity(cfg: PreprocessConfig) -> dict:
    """The settings that decide the outputs (stats.json, provenance): the engine does not (both write
    the same tables, tested), so switching it re-runs nothing downstream."""
    return {k: v for k, v in asdict(cfg).items() if k != "engine"}


DROP_REASONS = ["missing_id", "user_sample", "unrated", "below_min_rating", "duplicate", "kcore", "too_short_to_split"]


def refuse_empty(n_left: int, dropped: dict) -> None:
    """Nothing survived the filters: an error naming what each one dropped."""
    if n_left == 0:
        raise ConfigError(f"no interactions left after filtering ({dropped}); lower preprocess.user_core / item_core "
                          "or min_rating")


def refuse_time_split_without_times(raw: RawData, cfg: PreprocessConfig) -> None:
    """Positions are no clock: quantiles of them would cut users, not time."""
    if cfg.split == "time" and "note_no_timestamps" in raw.report:
        raise ConfigError(f"preprocess.split: time needs event times, and this source has none "
                          f"({raw.report['note_no_timestamps']}); use split: loo for it")
