"""`pipeline.compare`: a constructed known difference is found with the right size; no difference is
not called one; groups of seeds are paired by user; runs on other data are refused."""

import numpy as np
import polars as pl
import pytest

from pipeline.compare import compare, per_query
from pipeline.tables import read_table, write_table


def ranks_table(test_ranks, users=None, query="test"):
    users = np.arange(1, len(test_ranks) + 1) if users is None else users
    return pl.DataFrame({"query": query, "user_id": np.asarray(users, np.int32),
                         "target": np.ones(len(test_ranks), np.int32), "rank": np.asarray(test_ranks, np.float32)})


def test_per_query_metrics_follow_the_rank_rule():
    r = np.array([1.0, 3.0, 11.0, np.inf])
    assert per_query(r, "hr@10").tolist() == [1, 1, 0, 0]
    assert per_query(r, "ndcg@10") == pytest.approx([1.0, 0.5, 0.0, 0.0])
    assert per_query(r, "mrr@10") == pytest.approx([1.0, 1 / 3, 0.0, 0.0])


def test_a_known_difference_is_found_with_its_size():
    rng = np.random.default_rng(0)
    n = 800
    base = rng.integers(1, 30, n).astype(float)
    better = base.copy()
    better[: n // 4] = 1.0  # a quarter of the users move to rank 1
    (row,) = compare([ranks_table(better)], [ranks_table(base)], ["hr@10"])
    truth = (per_query(better, "hr@10") - per_query(base, "hr@10")).mean()
    assert row["diff"] == pytest.approx(truth) and truth > 0.1
    assert row["ci_low"] < truth < row["ci_high"] and row["ci_low"] > 0
    assert row["p_value"] < 1e-6 and row["significant"]


def test_no_difference_is_not_called_one():
    rng = np.random.default_rng(1)
    n = 800
    a = rng.integers(1, 30, n).astype(float)
    b = a.copy()
    swap = rng.permutation(n)[:200]  # same distribution, users shuffled among themselves
    b[swap] = a[rng.permutation(swap)]
    rows = compare([ranks_table(a)], [ranks_table(b)], ["hr@10", "ndcg@10"])
    for row in rows:
        assert row["ci_low"] <= 0 <= row["ci_high"] and not row["significant"], row
    same = compare([ranks_table(a)], [ranks_table(a)], ["ndcg@10"])[0]
    assert same["diff"] == 0 and same["p_value"] == 1.0 and not same["significant"]


def test_groups_of_seeds_average_per_user_and_report_seed_spread(tmp_path):
    rng = np.random.default_rng(2)
    n = 500
    group_a = [rng.integers(1, 8, n).astype(float) for _ in range(3)]
    group_b = [rng.integers(5, 40, n).astype(float) for _ in range(3)]
    for i, r in enumerate(group_a):  # through the table on disk, users in another order
        order = rng.permutation(n)
        write_table(ranks_table(r[order], users=np.arange(1, n + 1)[order]), tmp_path / f"a{i}.parquet", "ranks", {})
    a = [read_table(tmp_path / f"a{i}.parquet", "ranks") for i in range(3)]
    (row,) = compare(a, [ranks_table(r) for r in group_b], ["hr@10"])
    assert row["seeds_a"] == row["seeds_b"] == 3 and row["std_a"] is not None
    assert row["seed_means_a"] == pytest.approx([per_query(r, "hr@10").mean() for r in group_a])
    assert row["diff"] == pytest.approx(np.mean(row["seed_means_a"]) - np.mean(row["seed_means_b"]))
    assert row["significant"]


def test_runs_on_other_queries_are_refused():
    with pytest.raises(ValueError, match="rank different 'test' queries"):
        compare([ranks_table([1.0, 2.0, 3.0])], [ranks_table([1.0, 2.0, 3.0], users=[1, 2, 9])])
    with pytest.raises(ValueError, match="no 'cold_seq' queries"):
        compare([ranks_table([1.0])], [ranks_table([1.0])], query="cold_seq")


def test_the_batched_bootstrap_gives_the_unbatched_interval(monkeypatch):
    """compare() bootstraps in batches (bounded memory); the interval must be the one a single draw gives."""
    import pipeline.compare as pc

    rng = np.random.default_rng(3)
    a, b = rng.integers(1, 40, 2500).astype(float), rng.integers(1, 40, 2500).astype(float)
    assert pc.BOOTSTRAP_BATCH < 2500  # the 10,000 resamples and 2,500 jackknife samples come in batches
    (batched,) = compare([ranks_table(a)], [ranks_table(b)], ["ndcg@10"])
    monkeypatch.setattr(pc, "BOOTSTRAP_BATCH", None)
    (whole,) = compare([ranks_table(a)], [ranks_table(b)], ["ndcg@10"])
    assert (batched["ci_low"], batched["ci_high"]) == (whole["ci_low"], whole["ci_high"])
