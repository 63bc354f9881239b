"""Sampled-negative metrics (labelled, on request) and per-length-group metrics."""

import numpy as np
import polars as pl
import pytest

from pipeline.config import ProtocolConfig
from pipeline.data import Sequences, Split
from pipeline.evaluation import length_groups, sample_negatives, sampled_ranks
from pipeline.params import ConfigError


def sequences(n_items=30, users=40, seed=0):
    rng = np.random.default_rng(seed)
    rows = [{"user_id": u, "item_ids": (rng.zipf(1.5, size=int(rng.integers(5, 60))) % n_items + 1).tolist()}
            for u in range(users)]
    return Sequences.from_table(pl.DataFrame(rows), n_items)


def test_negatives_are_distinct_unseen_and_not_the_target():
    split = Split(sequences())
    test = split.test_queries(50)
    targets = test.targets
    neg = sample_negatives(split.training, test, 10, "uniform", seed=1)
    indptr, seen = test.seen
    for u in range(len(targets)):
        row = neg[u]
        assert len(set(row)) == 10 and targets[u] not in row
        assert not set(row) & set(seen[indptr[u]:indptr[u + 1]])
    assert np.array_equal(neg, sample_negatives(split.training, test, 10, "uniform", seed=1))  # seeded
    with pytest.raises(ValueError, match="could not draw"):
        sample_negatives(split.training, test, 29, "uniform", seed=1, max_rounds=3)


def test_popularity_sampling_follows_training_counts():
    split = Split(sequences(users=200))
    neg = sample_negatives(split.training, split.test_queries(50), 5, "popularity", seed=0, mask_history=False)
    counts = split.training.train.counts()[1:]
    drawn = np.bincount(neg.ravel(), minlength=31)[1:]
    rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731 - Spearman: distinct draws per row cap the top items
    assert np.corrcoef(rank(counts), rank(drawn))[0, 1] > 0.8


def test_sampled_rank_is_one_plus_negatives_scoring_at_least_the_target():
    q = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    items = np.array([[1, 0], [0.5, 0], [2, 0], [0, 1]], dtype=np.float32)  # ids 1..4
    ranks = sampled_ranks(q, items, np.array([1, 4]), np.array([[2, 3], [1, 2]]))
    assert ranks.tolist() == [2.0, 1.0]  # item 3 beats item 1 for user 0; nothing beats item 4 for user 1


def test_length_groups_partition_users():
    seq = sequences()
    groups = length_groups(Split(seq).training, [10, 30])
    assert list(groups) == ["0-10", "10-30", "30-inf"]
    total = np.sum([g.astype(int) for g in groups.values()], axis=0)
    assert (total == 1).all()
    n = seq.lengths - 2
    assert groups["10-30"].sum() == ((n >= 10) & (n < 30)).sum()


def test_bad_protocol_options_are_clear():
    with pytest.raises(ConfigError, match="sampled_by"):
        ProtocolConfig(sampled=100, sampled_by="random")
    with pytest.raises(ConfigError, match="length_groups"):
        ProtocolConfig(length_groups=[50, 20])
    assert "SAMPLED" in ProtocolConfig(sampled=100).describe()["protocol/sampled"]
    assert "protocol/sampled" not in ProtocolConfig().describe()
