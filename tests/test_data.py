"""The leave-one-out split, training windows, evaluation queries and history masks."""

import numpy as np
import polars as pl
import pytest

from pipeline.data import Sequences, Split, train_windows


def make(seqs):
    df = pl.DataFrame({"user_id": list(range(1, len(seqs) + 1)), "item_ids": seqs},
                      schema={"user_id": pl.Int32, "item_ids": pl.List(pl.Int32)})
    return Sequences.from_table(df, num_items=max(max(s) for s in seqs))


def test_every_training_interaction_is_a_target_exactly_once():
    seqs = [list(range(1, 13)), [5, 6, 7, 8], [9, 3, 4]]
    seq = Split(make(seqs)).training.train
    x, y, users = train_windows(seq, max_len=3)
    # user 0 trains on 1..10 -> targets 2..10; user 1 on 5,6 -> target 6; user 2 on 9 -> none
    targets = sorted(y[y > 0].tolist())
    assert targets == sorted(list(range(2, 11)) + [6])
    # each target's input at the same position is its predecessor
    for row_x, row_y in zip(x, y):
        for t in range(len(row_y)):
            if row_y[t]:
                assert row_x[t] > 0
    assert x.shape[1] == 3 and (x[:, 0] == 0).any()  # left padding
    # each window knows its user: user 0's windows hold only items 1..10, user 1's only 5 and 6
    assert set(x[users == 0].ravel()) - {0} <= set(range(1, 11)) and set(x[users == 1].ravel()) - {0} == {5}


def test_split_queries_and_histories():
    split = Split(make([[1, 2, 3, 4, 5], [7, 8, 9]]))
    valid = split.training.valid_queries(max_len=4)
    assert valid.inputs.tolist() == [[0, 1, 2, 3], [0, 0, 0, 7]] and valid.targets.tolist() == [4, 8]
    assert valid.seen[0].tolist() == [0, 3, 4] and valid.seen[1].tolist() == [1, 2, 3, 7]
    test = split.test_queries(max_len=2)
    assert test.inputs.tolist() == [[3, 4], [7, 8]] and test.targets.tolist() == [5, 9]
    assert test.seen[0].tolist() == [0, 4, 6] and test.seen[1].tolist() == [1, 2, 3, 4, 7, 8]


def test_the_training_view_holds_no_validation_or_test_item():
    full = make([[1, 2, 3, 4], [5, 6, 7]])
    view = Split(full).training
    assert view.train.flat.tolist() == [1, 2, 5] and view.train.lengths.tolist() == [2, 1]
    assert sorted(np.flatnonzero(view.train.counts()).tolist()) == [1, 2, 5]
    assert not np.shares_memory(view.train.flat, full.flat)  # a copy: nothing of the cut part is reachable
    assert not hasattr(view, "test_queries") and not hasattr(view, "full")


def test_split_needs_three_items_per_user():
    with pytest.raises(ValueError, match="at least 3 items"):
        Split(make([[1, 2, 3], [4, 5]]))


def test_overlapping_windows_keep_each_target_once_with_more_context():
    seq = Split(make([list(range(1, 23))])).training.train  # item v sits at position v - 1; trains on items 1..20
    base_x, base_y, _ = train_windows(seq, max_len=6)
    x, y, _ = train_windows(seq, max_len=6, stride=2)
    assert sorted(y[y > 0].tolist()) == sorted(base_y[base_y > 0].tolist()) == list(range(2, 21))
    # each target v sees min(v - 1, max_len - stride = 4) items of context at least
    for row_x, row_y in zip(x, y):
        for t in np.nonzero(row_y)[0]:
            assert (row_x[: t + 1] > 0).sum() >= min(row_y[t] - 1, 4)
    # with disjoint windows some targets see only 1 item
    assert min((bx[: t + 1] > 0).sum() for bx, by in zip(base_x, base_y) for t in np.nonzero(by)[0]) == 1
    assert len(x) > len(base_x)


def test_cold_items_count_training_occurrences_only():
    from pipeline.evaluation import cold_items

    # user 0: train [1, 1, 2], valid 3, test 2; user 1: train [3, 3, 3], valid 1, test 1.
    # training counts: item 1 -> 2, item 2 -> 1, item 3 -> 3 (valid and test items are not counted)
    split = Split(Sequences(np.array([1, 1, 2, 3, 2, 3, 3, 3, 1, 1]), np.array([0, 5, 10]), 3))
    test_targets = split.test_queries(1).targets
    assert cold_items(split.training, 2)[test_targets].tolist() == [True, False]
    assert cold_items(split.training, 3)[test_targets].tolist() == [True, True]
    assert cold_items(split.training, 1)[test_targets].tolist() == [False, False]


def test_cold_subsequences_are_every_prefix_ending_in_a_cold_item():
    from pipeline.evaluation import cold_subsequences

    # same sequences as above; training counts: item 1 -> 2, item 2 -> 1, item 3 -> 3
    split = Split(Sequences(np.array([1, 1, 2, 3, 2, 3, 3, 3, 1, 1]), np.array([0, 5, 10]), 3))
    (q,) = cold_subsequences(split, 2, max_len=3)
    # threshold 2: only item 2 is cold -> user 0 positions 2 and 4 (position 0 has no prefix)
    assert q.targets.tolist() == [2, 2]
    assert q.inputs.tolist() == [[0, 1, 1], [1, 2, 3]]
    assert q.seen[0].tolist() == [0, 2, 6] and q.seen[1].tolist() == [1, 1, 1, 1, 2, 3]
    (q,) = cold_subsequences(split, 3, max_len=3)
    # threshold 3: items 1 and 2 are cold -> user 0 positions 1, 2, 4; user 1 positions 3, 4
    assert q.targets.tolist() == [1, 2, 2, 1, 1] and np.diff(q.seen[0]).tolist() == [1, 2, 4, 3, 4]
    assert q.users.tolist() == [0, 0, 0, 1, 1]
    assert list(cold_subsequences(split, 1, 3)) == []
    # chunked: the same queries, each chunk's histories within the budget (one over-long prefix alone)
    chunks = list(cold_subsequences(split, 3, max_len=3, max_history=4))
    assert [c.targets.tolist() for c in chunks] == [[1, 2], [2], [1], [1]]
    assert [int(c.seen[0][-1]) for c in chunks] == [3, 4, 3, 4]
