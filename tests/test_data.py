"""Training windows, evaluation inputs and history masks."""

import numpy as np
import polars as pl

from pipeline.data import Sequences, history, last_window, train_windows


def make(seqs):
    df = pl.DataFrame({"user_id": list(range(1, len(seqs) + 1)), "item_ids": seqs},
                      schema={"user_id": pl.Int32, "item_ids": pl.List(pl.Int32)})
    return Sequences.from_table(df, num_items=max(max(s) for s in seqs))


def test_every_training_interaction_is_a_target_exactly_once():
    seqs = [list(range(1, 13)), [5, 6, 7, 8], [9, 3, 4]]
    seq = make(seqs)
    x, y = train_windows(seq, max_len=3)
    # user 0 trains on 1..10 -> targets 2..10; user 1 on 5,6 -> target 6; user 2 on 9 -> none
    targets = sorted(y[y > 0].tolist())
    assert targets == sorted(list(range(2, 11)) + [6])
    # each target's input at the same position is its predecessor
    for row_x, row_y in zip(x, y):
        for t in range(len(row_y)):
            if row_y[t]:
                assert row_x[t] > 0
    assert x.shape[1] == 3 and (x[:, 0] == 0).any()  # left padding


def test_last_window_and_history():
    seq = make([[1, 2, 3, 4, 5], [7, 8, 9]])
    xv, tv = last_window(seq, max_len=4, holdout=2)
    assert xv.tolist() == [[0, 1, 2, 3], [0, 0, 0, 7]] and tv.tolist() == [4, 8]
    xt, tt = last_window(seq, max_len=2, holdout=1)
    assert xt.tolist() == [[3, 4], [7, 8]] and tt.tolist() == [5, 9]
    indptr, items = history(seq, holdout=1)
    assert indptr.tolist() == [0, 4, 6] and items.tolist() == [1, 2, 3, 4, 7, 8]


def test_train_items_excludes_holdout():
    seq = make([[1, 2, 3, 4], [5, 6, 7]])
    assert sorted(seq.train_items().tolist()) == [1, 2, 5]


def test_overlapping_windows_keep_each_target_once_with_more_context():
    seq = make([list(range(1, 23))])  # item v sits at position v - 1; trains on items 1..20
    base_x, base_y = train_windows(seq, max_len=6)
    x, y = train_windows(seq, max_len=6, stride=2)
    assert sorted(y[y > 0].tolist()) == sorted(base_y[base_y > 0].tolist()) == list(range(2, 21))
    # each target v sees min(v - 1, max_len - stride = 4) items of context at least
    for row_x, row_y in zip(x, y):
        for t in np.nonzero(row_y)[0]:
            assert (row_x[: t + 1] > 0).sum() >= min(row_y[t] - 1, 4)
    # with disjoint windows some targets see only 1 item
    assert min((bx[: t + 1] > 0).sum() for bx, by in zip(base_x, base_y) for t in np.nonzero(by)[0]) == 1
    assert len(x) > len(base_x)


def test_cold_users_counts_training_occurrences_only():
    from pipeline.evaluation import cold_users

    # user 0: train [1, 1, 2], valid 3, test 2; user 1: train [3, 3, 3], valid 1, test 1.
    # training counts: item 1 -> 2, item 2 -> 1, item 3 -> 3 (valid and test items are not counted)
    seq = Sequences(np.array([1, 1, 2, 3, 2, 3, 3, 3, 1, 1]), np.array([0, 5, 10]), 3)
    assert cold_users(seq, 2).tolist() == [True, False]
    assert cold_users(seq, 3).tolist() == [True, True]
    assert cold_users(seq, 1).tolist() == [False, False]


def test_cold_subsequences_are_every_prefix_ending_in_a_cold_item():
    from pipeline.evaluation import cold_subsequences

    # same sequences as above; training counts: item 1 -> 2, item 2 -> 1, item 3 -> 3
    seq = Sequences(np.array([1, 1, 2, 3, 2, 3, 3, 3, 1, 1]), np.array([0, 5, 10]), 3)
    inputs, targets, (indptr, seen) = cold_subsequences(seq, 2, max_len=3)
    # threshold 2: only item 2 is cold -> user 0 positions 2 and 4 (position 0 has no prefix)
    assert targets.tolist() == [2, 2]
    assert inputs.tolist() == [[0, 1, 1], [1, 2, 3]]
    assert indptr.tolist() == [0, 2, 6] and seen.tolist() == [1, 1, 1, 1, 2, 3]
    _, targets, (indptr, _) = cold_subsequences(seq, 3, max_len=3)
    # threshold 3: items 1 and 2 are cold -> user 0 positions 1, 2, 4; user 1 positions 3, 4
    assert targets.tolist() == [1, 2, 2, 1, 1] and np.diff(indptr).tolist() == [1, 2, 4, 3, 4]
    assert len(cold_subsequences(seq, 1, 3)[1]) == 0
