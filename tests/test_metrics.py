"""Metrics against hand-computed rankings; the tie rule; history masking; FAISS == brute force."""

import math

import numpy as np
import pytest
import torch

from pipeline.evaluation import unmasked_ranks
from pipeline.metrics import (
    beyond_accuracy,
    brute_force_ranks,
    long_tail,
    metrics_from_ranks,
    ranks_from_topk,
)
from pipeline.retrieval import exact_topk


def test_metrics_hand_computed():
    ranks = np.array([1.0, 3.0, 11.0, np.inf])
    m = metrics_from_ranks(ranks, ks=[1, 10])
    assert m["hr@1"] == pytest.approx(0.25)
    assert m["hr@10"] == pytest.approx(0.5)
    assert m["ndcg@10"] == pytest.approx((1.0 + 1.0 / math.log2(4)) / 4)
    assert m["mrr@10"] == pytest.approx((1.0 + 1.0 / 3) / 4)
    assert m["ndcg@1"] == pytest.approx(0.25)


def test_hand_ranking_from_scores():
    # One user, 5 items (row ids 0..4); scores 0.9, 0.5, 0.7, 0.1, 0.3; target row 2 -> rank 2.
    q = np.array([[1.0]], np.float32)
    items = np.array([[0.9], [0.5], [0.7], [0.1], [0.3]], np.float32)
    s, i = exact_topk(q, items, k=4)
    assert i.tolist() == [[0, 2, 1, 4]]
    assert ranks_from_topk(s, i, np.array([2])).tolist() == [2.0]
    # Masking row 0 (seen) moves the target to rank 1.
    s, i = exact_topk(q, items, k=4, exclude=(np.array([0, 1]), np.array([0])))
    assert ranks_from_topk(s, i, np.array([2])).tolist() == [1.0]


def test_ties_are_broken_against_the_target():
    q = np.ones((1, 1), np.float32)
    items = np.ones((6, 1), np.float32)  # every item scores the same
    s, i = exact_topk(q, items, k=11)
    assert ranks_from_topk(s, i, np.array([0])).tolist() == [6.0]  # not 1
    assert brute_force_ranks(torch.ones(1, 1), torch.ones(6, 1), torch.tensor([0])).tolist() == [6.0]


def test_target_beyond_list_is_a_miss():
    q = np.ones((1, 1), np.float32)
    items = np.arange(20, 0, -1, dtype=np.float32)[:, None]  # row r scores 20 - r
    s, i = exact_topk(q, items, k=6)  # top-(K+1) with K = 5
    r = ranks_from_topk(s, i, np.array([4]))
    assert r.tolist() == [5.0]
    s, i = exact_topk(np.ones((2, 1), np.float32), items, k=6)
    assert ranks_from_topk(s, i, np.array([5, 12])).tolist() == [math.inf, math.inf]


@pytest.mark.parametrize("integer", [True, False])
@pytest.mark.parametrize("mask", [True, False])
def test_faiss_ranks_equal_brute_force(integer, mask):
    rng = np.random.default_rng(0)
    n_users, n_items, d, k = 300, 500, 8, 50
    if integer:  # small integers: exact in float32 and full of ties
        q = rng.integers(-2, 3, (n_users, d)).astype(np.float32)
        items = rng.integers(-2, 3, (n_items, d)).astype(np.float32)
    else:
        q = rng.standard_normal((n_users, d)).astype(np.float32)
        items = rng.standard_normal((n_items, d)).astype(np.float32)
    targets = rng.integers(0, n_items, n_users)
    exclude = None
    if mask:
        counts = rng.integers(0, 40, n_users)
        excl = np.concatenate([rng.choice(np.setdiff1d(np.arange(n_items), [t]), c, replace=False)
                               for t, c in zip(targets, counts)])
        exclude = (np.concatenate([[0], np.cumsum(counts)]), excl)
    s, i = exact_topk(q, items, k + 1, exclude, chunk=64)
    got = ranks_from_topk(s, i, targets)
    want = brute_force_ranks(torch.from_numpy(q), torch.from_numpy(items), torch.from_numpy(targets), exclude)
    want[want > k] = np.inf
    if integer:
        np.testing.assert_array_equal(got, want)
    else:  # FAISS and torch round differently; allow a rare one-off near-tie
        assert (got == want).mean() > 0.99


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unmasked_ranks_from_masked_equal_an_unmasked_ranking(seed):
    """test_unmasked/*: masked ranks + seen items scoring >= the target == ranking with no mask at all
    (small integer scores: exact in float32 and full of ties, the tie rule is tested too)."""
    rng = np.random.default_rng(seed)
    n_users, n_items, d, k = 200, 120, 6, 20
    q = rng.integers(-2, 3, (n_users, d)).astype(np.float32)
    items = rng.integers(-2, 3, (n_items, d)).astype(np.float32)
    targets = rng.integers(1, n_items + 1, n_users)  # 1-based item ids, as the split holds them
    counts = rng.integers(0, 30, n_users)
    seen_items = np.concatenate([rng.choice(np.arange(1, n_items + 1), c, replace=False) for c in counts])
    indptr = np.concatenate([[0], np.cumsum(counts)])  # the target itself may be among the seen: never masked
    owner = np.repeat(np.arange(n_users), counts)
    keep = seen_items != targets[owner]
    exclude = (np.concatenate([[0], np.cumsum(np.bincount(owner[keep], minlength=n_users))]), seen_items[keep] - 1)
    s, i = exact_topk(q, items, k + 1, exclude)
    masked = ranks_from_topk(s, i + 1, targets)
    s, i = exact_topk(q, items, k + 1, None)
    want = ranks_from_topk(s, i + 1, targets)
    got = unmasked_ranks(q, items, targets, (indptr, seen_items), masked)
    assert (masked <= k).sum() > (want <= k).sum()  # the mask matters on this data
    np.testing.assert_array_equal(np.where(got <= k, got, np.inf), want)


def test_faiss_topk_matches_torch_topk():
    rng = np.random.default_rng(1)
    q = rng.standard_normal((100, 16)).astype(np.float32)
    items = rng.standard_normal((1000, 16)).astype(np.float32)
    s, i = exact_topk(q, items, 20, chunk=32)
    ts, ti = torch.topk(torch.from_numpy(q) @ torch.from_numpy(items).T, 20)
    np.testing.assert_allclose(s, ts.numpy(), rtol=1e-5, atol=1e-5)
    assert (i == ti.numpy()).mean() > 0.99  # ids may swap only on float near-ties


def test_masked_items_never_returned_and_all_others_kept():
    rng = np.random.default_rng(2)
    q = rng.standard_normal((50, 4)).astype(np.float32)
    items = rng.standard_normal((30, 4)).astype(np.float32)
    counts = np.full(50, 10)
    excl = np.concatenate([rng.choice(30, 10, replace=False) for _ in range(50)])
    indptr = np.concatenate([[0], np.cumsum(counts)])
    s, i = exact_topk(q, items, 30, (indptr, excl))
    for u in range(50):
        returned = set(i[u][i[u] >= 0].tolist())
        assert returned == set(range(30)) - set(excl[indptr[u]:indptr[u + 1]].tolist())
        assert np.all(np.diff(s[u][np.isfinite(s[u])]) <= 0)


def test_result_budget_chunks_give_the_same_answer():
    """A user with a long history widens its chunk's search; with a small `max_results` the users
    are searched in smaller chunks (one at a time at the limit) and the answer is unchanged."""
    rng = np.random.default_rng(3)
    q = rng.standard_normal((40, 4)).astype(np.float32)
    items = rng.standard_normal((300, 4)).astype(np.float32)
    counts = rng.integers(0, 5, 40)
    counts[7] = 250  # one long history
    excl = np.concatenate([rng.choice(300, c, replace=False) for c in counts])
    indptr = np.concatenate([[0], np.cumsum(counts)])
    whole = exact_topk(q, items, 10, (indptr, excl))
    for budget in (1, 100, 2000):
        s, i = exact_topk(q, items, 10, (indptr, excl), max_results=budget)
        np.testing.assert_array_equal(i, whole[1])
        np.testing.assert_array_equal(s, whole[0])


def test_beyond_accuracy_by_hand():
    """Head = the ceil(20 %) most-trained items plus their ties; pop@K = mean training events of a
    list, tail@K = its long-tail share (a missing slot, 0, counts for neither); coverage = distinct / N."""
    counts = np.array([0, 10, 5, 5, 1, 0, 0, 0, 0, 0, 0])  # 10 items: head = top 2 -> items 1, 2 and 3 (tied)
    assert long_tail(counts, 0.2).tolist() == [False, False, False, False] + [True] * 7
    assert not long_tail(counts, 1.0).any()
    top = np.array([[1, 2, 4], [4, 5, 0]])
    per, overall = beyond_accuracy(top, counts, [1, 3], 0.2)
    assert per["pop@1"].tolist() == [10, 1] and per["tail@1"].tolist() == [0, 1]
    assert per["pop@3"] == pytest.approx([16 / 3, 0.5]) and per["tail@3"] == pytest.approx([1 / 3, 1.0])
    assert overall["coverage@1"] == 0.2 and overall["coverage@3"] == 0.4
    assert overall["tail@3"] == pytest.approx((1 / 3 + 1) / 2)
