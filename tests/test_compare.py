"""`pipeline.compare`: a constructed known difference is found with the right size; no difference is
not called one; groups of seeds are paired by user; runs on other data are refused; the two-level
interval sees a collapsed seed and clustered queries; Holm removes a star; a tiny effect under low
power is inconclusive, not refuted."""

import numpy as np
import polars as pl
import pytest

from pipeline.compare import compare, holm, per_query, seed_averaged, two_level, verdict
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
    assert row["p_value"] < 1e-3 and row["significant"] and 0 < row["mde"] < truth


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


def test_the_batched_seed_averaged_bootstrap_gives_the_unbatched_interval(monkeypatch):
    """The earlier interval is kept for comparison; it bootstraps in batches (bounded memory) and
    must be the interval a single draw gives."""
    import pipeline.compare as pc

    rng = np.random.default_rng(3)
    a, b = rng.random((2500, 1)), rng.random((2500, 1))
    assert pc.BOOTSTRAP_BATCH < 2500  # the 10,000 resamples and 2,500 jackknife samples come in batches
    batched = seed_averaged(a, b)
    monkeypatch.setattr(pc, "BOOTSTRAP_BATCH", None)
    assert seed_averaged(a, b) == batched


def collapsed_seed_case(n=2000, seed=4):
    """B: three similar seeds (HR 0.15); A: two better seeds (0.30) and one collapsed (0.05)."""
    rng = np.random.default_rng(seed)
    vb = np.repeat((rng.random(n) < 0.15)[:, None], 3, 1).astype(float)
    va = np.stack([rng.random(n) < 0.30, rng.random(n) < 0.30, rng.random(n) < 0.05], 1).astype(float)
    return va, vb, np.arange(n)


def test_a_collapsed_seed_is_seen_by_the_two_level_interval_only():
    va, vb, users = collapsed_seed_case()
    low, high = seed_averaged(va, vb)
    assert low > 0  # conditional on the three trained models: "A beats B"
    iv = two_level(va, vb, users)
    assert iv.low < 0 < iv.high and not iv.excludes_zero  # one in three seeds collapses: not a finding
    assert iv.diff == pytest.approx(va.mean() - vb.mean())


def test_several_queries_of_one_user_are_one_cluster():
    """200 users with 10 queries each, the queries of a user alike: resampling queries as if
    independent is sqrt(10) too narrow; resampling users as clusters is not."""
    rng = np.random.default_rng(5)
    per_user = rng.normal(0.0, 0.2, 200)
    d = np.repeat(per_user, 10) + rng.normal(0, 0.01, 2000)
    va, vb = d[:, None], np.zeros((2000, 1))
    clustered = two_level(va, vb, np.repeat(np.arange(200), 10))
    independent = two_level(va, vb, np.arange(2000))
    assert clustered.clusters == 200 and independent.clusters == 2000
    ratio = (clustered.high - clustered.low) / (independent.high - independent.low)
    assert 2.5 < ratio < 4.0, ratio


def test_holm_removes_a_star_the_raw_p_value_would_give():
    raw = [0.01, 0.04, 0.03]
    adjusted = holm(raw)
    assert adjusted == pytest.approx([0.03, 0.06, 0.06])
    assert sum(p < 0.05 for p in raw) == 3 and sum(p < 0.05 for p in adjusted) == 1
    assert holm([0.5]) == [0.5] and holm([]) == []


def test_verdicts_say_reproduced_refuted_or_underpowered():
    rng = np.random.default_rng(6)

    def interval(n, effect):
        vb = rng.normal(0.1, 0.2, (n, 3))
        return two_level(vb + effect + rng.normal(0, 0.05, (n, 3)), vb, np.arange(n))

    clear = interval(3000, 0.05)
    assert verdict(clear, clear.p_value, ">", 0.04) == "reproduced"
    none_at_all = interval(3000, 0.0)  # the paper claims +0.05; the interval is about ±0.005
    assert verdict(none_at_all, none_at_all.p_value, ">", 0.05) == "not reproduced"
    tiny = interval(40, 0.005)  # a tiny effect, 40 users: the interval holds 0 and the paper's +0.01
    said = verdict(tiny, tiny.p_value, ">", 0.01)
    assert said.startswith("inconclusive (underpowered") and "+0.0100" in said and tiny.mde > 0.01
    opposite = interval(3000, -0.05)
    assert verdict(opposite, opposite.p_value, ">", None) == "not reproduced"
    assert verdict(none_at_all, none_at_all.p_value, "=", 0.02) == "reproduced"  # within ±0.02: equivalent
    assert verdict(clear, clear.p_value, "=", 0.02) == "not reproduced"
    assert verdict(clear, 0.2, ">", 0.04).startswith("inconclusive")  # Holm took the star away


def test_beyond_accuracy_columns_are_compared_like_accuracy():
    """tail@K / pop@K are per-query columns of the ranks table: paired per query, users as clusters,
    the same two-level interval as NDCG; a table without the column is refused in one line."""
    rng = np.random.default_rng(0)
    a = [ranks_table(np.ones(200)).with_columns(pl.Series("tail@10", rng.uniform(0.3, 0.5, 200), pl.Float32))
         for _ in range(3)]
    b = [ranks_table(np.ones(200)).with_columns(pl.Series("tail@10", rng.uniform(0.0, 0.2, 200), pl.Float32))
         for _ in range(3)]
    row = compare(a, b, metrics=["tail@10", "hr@10"])
    assert row[0]["diff"] == pytest.approx(0.3, abs=0.02) and row[0]["significant"]
    assert row[1]["diff"] == 0.0  # hr@10 still from the rank
    with pytest.raises(ValueError, match="no per-query 'tail@10'"):
        compare([ranks_table([1.0])], [ranks_table([1.0])], metrics=["tail@10"])
