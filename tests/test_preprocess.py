"""Preprocessing rules on hand-made frames: filtering, k-core, ordering, ids, split, accounting."""

import polars as pl
import pytest

from pipeline.config import PreprocessConfig
from pipeline.params import ConfigError
from pipeline.preprocess import kcore, preprocess
from pipeline.sources import RawData


def raw(rows, items=None):
    inter = pl.DataFrame(rows, schema=["user", "item", "rating", "timestamp"], orient="row")
    inter = inter.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
    if items is None:
        items = pl.DataFrame({"item": sorted({r[1] for r in rows})})
    items = items.with_columns(
        pl.col("item").cast(pl.String), pl.lit("t").alias("title"), pl.lit(["c"]).alias("categories"),
        pl.lit("d").alias("description"), pl.lit([], dtype=pl.List(pl.String)).alias("image_paths"))
    return RawData(inter, items.select("item", "title", "categories", "description", "image_paths"))


def cfg(**kw):
    return PreprocessConfig(**({"user_core": 0, "item_core": 0, "allow_degenerate": True} | kw))


def test_order_ties_ids_and_split():
    rows = [("u1", "a", 5.0, 30), ("u1", "b", 4.0, 10), ("u1", "c", 3.0, 10), ("u1", "d", 4.0, 20),
            ("u2", "b", 5.0, 5), ("u2", "a", 5.0, 6), ("u2", "d", 1.0, 7)]
    items, inter, seqs, stats = preprocess(raw(rows), cfg())
    # ids by first appearance in time: b(5) a(6) d(7) c(10, after b at 10 by file order)
    assert dict(zip(items["orig_id"], items["item_id"])) == {"b": 1, "a": 2, "d": 3, "c": 4}
    u1 = seqs.filter(pl.col("orig_id") == "u1")["item_ids"][0].to_list()
    assert u1 == [1, 4, 3, 2]  # b, c (tie at t=10 keeps file order), d, a
    assert seqs["user_id"].min() == 1 and items["item_id"].min() == 1  # 0 is padding
    splits = inter.filter(pl.col("user_id") == seqs.filter(pl.col("orig_id") == "u1")["user_id"][0])["split"]
    assert splits.to_list() == ["train", "train", "valid", "test"]
    assert stats["ties"]["equal_timestamp_groups"] == 1


def test_rating_threshold_and_duplicates_are_counted():
    rows = [("u", "a", 5.0, 1), ("u", "a", 5.0, 1), ("u", "b", 2.0, 2), ("u", "c", 4.0, 3), ("u", "a", 4.0, 4),
            ("u", "d", 5.0, 5)]
    _, inter, _, stats = preprocess(raw(rows), cfg(min_rating=4.0))
    assert stats["dropped"]["below_min_rating"] == 1 and stats["dropped"]["duplicate"] == 1
    # NaN or missing ratings are never compared (NaN sorts above every number): dropped as unrated
    nan_rows = rows + [("u", "e", float("nan"), 6), ("u", "f", None, 7)]
    _, _, _, nan_stats = preprocess(raw(nan_rows), cfg(min_rating=4.0))
    assert nan_stats["dropped"]["unrated"] == 2 and nan_stats["dropped"]["below_min_rating"] == 1
    assert inter.height == 4  # a, c, a(again, later), d
    _, inter, _, stats = preprocess(raw(rows), cfg(min_rating=4.0, duplicates="first"))
    assert stats["dropped"]["duplicate"] == 2 and inter.height == 3
    _, inter, _, stats = preprocess(raw(rows), cfg(duplicates="none"))
    assert stats["dropped"]["duplicate"] == 0 and inter.height == 6


def test_kcore_reaches_a_fixed_point():
    # item z has 2 users; removing it leaves user v with 2 items, which then removes item y...
    rows = [(u, i, 1.0, t) for t, (u, i) in enumerate(
        [("u1", "x"), ("u1", "y"), ("u1", "w"), ("u2", "x"), ("u2", "y"), ("u2", "w"), ("u3", "x"), ("u3", "y"),
         ("u3", "w"), ("v", "z"), ("v", "y"), ("v", "q"), ("u1", "z")])]
    df = raw(rows).interactions
    out, rounds = kcore(df, 3, 3)
    assert rounds >= 2
    assert (out.group_by("user").len()["len"] >= 3).all() and (out.group_by("item").len()["len"] >= 3).all()
    assert set(out["user"]) == {"u1", "u2", "u3"} and set(out["item"]) == {"x", "y", "w"}


def test_every_row_is_accounted_for_and_metadata_gaps_counted():
    rows = [("u", "a", 1.0, 1), ("u", "b", 1.0, 2), ("u", "zzz", 1.0, 3), ("", "a", 1.0, 4), ("short", "a", 1.0, 5)]
    items = pl.DataFrame({"item": ["a", "b", "only_meta"]})
    items_t, inter, _, stats = preprocess(raw(rows, items), cfg())
    assert stats["dropped"] == {"missing_id": 1, "user_sample": 0, "unrated": 0, "below_min_rating": 0, "duplicate": 0,
                                "kcore": 0, "too_short_to_split": 1}
    assert stats["metadata"]["items_without_metadata"] == 1  # zzz
    assert stats["metadata"]["metadata_rows_without_interactions"] == 1  # only_meta
    assert items_t.filter(pl.col("orig_id") == "zzz")["has_metadata"].to_list() == [False]
    assert inter.height + sum(stats["dropped"].values()) == 5


def test_bad_config_values_are_clear():
    with pytest.raises(ConfigError, match="max_len"):
        PreprocessConfig(max_len=0)
    with pytest.raises(ConfigError, match="duplicates"):
        PreprocessConfig(duplicates="sometimes")
    with pytest.raises(ConfigError, match="no interactions left"):
        preprocess(raw([("u", "a", 1.0, 1), ("u", "b", 1.0, 2), ("u", "c", 1.0, 3)]), cfg(user_core=10))


def grid(users: int, items: int, per_user: int = 6):
    """Each user rates `per_user` consecutive items (mod `items`, so a 1-item catalogue repeats it at
    distinct times): every user and item survives 5-core."""
    return [(f"u{u}", f"i{(u + k) % items}", 4.0, u * 100 + k) for u in range(users) for k in range(per_user)]


@pytest.mark.parametrize("users, items, what", [(4, 60, "4 users"), (80, 3, "3 items"), (80, 1, "1 items")])
def test_too_few_users_or_items_is_an_error_naming_the_counts(users, items, what):
    with pytest.raises(ConfigError, match=rf"{what} \(fewer than 50.*user_core / item_core.*allow_degenerate: true"):
        preprocess(raw(grid(users, items)), PreprocessConfig(user_core=0, item_core=0))
    # the explicit override keeps the data and records why it is degenerate
    *_, stats = preprocess(raw(grid(users, items)), PreprocessConfig(user_core=0, item_core=0, allow_degenerate=True))
    assert stats["users"] == users and any(what in d for d in stats["degenerate"])


def test_a_filter_that_drops_most_interactions_is_an_error():
    # 60 heavy users on 60 items survive 5-core; 4,000 one-off events (each a new user and item) do not
    rows = grid(60, 60) + [(f"x{j}", f"y{j}", 4.0, j) for j in range(4000)]
    with pytest.raises(ConfigError, match=r"4,000 of 4,360 interactions dropped \(more than 90%.*kcore"):
        preprocess(raw(rows), PreprocessConfig(user_core=5, item_core=5))
    *_, stats = preprocess(raw(grid(60, 60)), PreprocessConfig())  # the same heavy users alone are fine
    assert stats["degenerate"] == [] and stats["users"] == 60


def test_user_fraction_keeps_a_seeded_share_of_whole_users():
    rows = grid(200, 60)
    cfg = {"user_core": 0, "item_core": 0, "user_fraction": 0.3}
    _, inter, seqs, stats = preprocess(raw(rows), PreprocessConfig(**cfg, user_sample_seed=1))
    assert stats["users"] == 60 and stats["dropped"]["user_sample"] == 140 * 6 and stats["degenerate"] == []
    assert (seqs["item_ids"].list.len() == 6).all()  # the kept users keep every event
    again = preprocess(raw(rows), PreprocessConfig(**cfg, user_sample_seed=1))[2]
    other = preprocess(raw(rows), PreprocessConfig(**cfg, user_sample_seed=2))[2]
    assert again["orig_id"].to_list() == seqs["orig_id"].to_list() != other["orig_id"].to_list()
    with pytest.raises(ConfigError, match="user_fraction"):
        PreprocessConfig(user_fraction=0)
