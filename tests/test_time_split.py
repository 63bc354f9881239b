"""The global temporal split (`preprocess.split: time`): who sees which events, what the queries
are, what is counted, and a model trained on it beats popularity through the same stages."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import PreprocessConfig
from pipeline.data import Sequences, Split, SplitSpec
from pipeline.download import download
from pipeline.evaluate import evaluate
from pipeline.params import ConfigError
from pipeline.preprocess import run
from pipeline.train import train
from tests.conftest import tiny_params


def by_hand():
    """Two users: u0 events at t = 1, 5, 7, 9; u1 at t = 6, 8. Cuts c1 = 6, c2 = 8."""
    seq = Sequences(np.array([1, 2, 3, 4, 5, 6]), np.array([0, 4, 6]), 6)
    return Split(seq, SplitSpec("time", (6, 8)), np.array([1, 5, 7, 9, 6, 8]))


def test_time_split_by_hand():
    s = by_hand()
    view = s.training
    assert view.train.flat.tolist() == [1, 2] and view.train.lengths.tolist() == [2, 0]  # before c1 only
    valid = view.valid_queries(3)
    # u0's t=7 (item 3) from [1, 2]; u1's t=6 (item 5) has no earlier event: skipped and counted
    assert valid.targets.tolist() == [3] and valid.inputs.tolist() == [[0, 1, 2]] and valid.users.tolist() == [0]
    test = s.test_queries(3)
    # u0's t=9 (item 4) from everything before it, validation event included; u1's t=8 (item 6) from [5]
    assert test.targets.tolist() == [4, 6] and test.inputs.tolist() == [[1, 2, 3], [0, 0, 5]]
    assert test.users.tolist() == [0, 1]
    indptr, seen = test.seen
    assert seen[indptr[0]:indptr[1]].tolist() == [1, 2, 3] and seen[indptr[1]:indptr[2]].tolist() == [5]
    assert s.skipped == {"valid_without_history": 1, "test_without_history": 0}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 30), min_size=1, max_size=8), min_size=1, max_size=8), st.integers(1, 29),
       st.integers(1, 10))
def test_every_event_is_in_exactly_one_part_and_training_never_sees_later_ones(users, c1, gap):
    times = [sorted(u) for u in users]
    c2 = c1 + gap
    flat_t = np.array([t for u in times for t in u])
    flat = np.arange(1, len(flat_t) + 1)  # item = event id: each event recognisable
    offsets = np.concatenate([[0], np.cumsum([len(u) for u in times])])
    s = Split(Sequences(flat, offsets, len(flat)), SplitSpec("time", (c1, c2)), flat_t)
    view = s.training
    assert set(view.train.flat.tolist()) == set(flat[flat_t < c1].tolist())
    valid, test = view.valid_queries(4), s.test_queries(4)
    first = np.isin(np.arange(len(flat)), offsets[:-1])  # a user's first event has no history: never a query
    assert set(valid.targets.tolist()) == set(flat[(flat_t >= c1) & (flat_t < c2) & ~first].tolist())
    assert set(test.targets.tolist()) == set(flat[(flat_t >= c2) & ~first].tolist())
    assert s.skipped["valid_without_history"] + s.skipped["test_without_history"] == int((first & (flat_t >= c1)).sum())
    for q in (valid, test):  # the input is everything the user did before the target, nothing after
        indptr, seen = q.seen
        for i, t in enumerate(q.targets):
            assert seen[indptr[i]:indptr[i + 1]].tolist() == list(range(offsets[q.users[i]] + 1, t))


@pytest.mark.parametrize("cuts", [[0.9, 0.8], [0.5], [2.0, 0.5]])
def test_bad_cuts_are_one_line(cuts):
    with pytest.raises(ConfigError, match="split_cuts"):
        PreprocessConfig(split="time", split_cuts=cuts)


def test_time_split_through_the_stages(tmp_path):
    """Preprocess counts the parts and the items first seen after a cut; train and evaluate read the
    split from the prepared folder; several queries per user; SASRec beats popularity."""
    p = tiny_params()
    p["preprocess"] |= {"split": "time", "split_cuts": [0.7, 0.85]}
    download(p, tmp_path / "raw")
    stats = run(tmp_path / "raw", tmp_path / "prepared", PreprocessConfig(**p["preprocess"]))
    split = stats["split"]
    assert split["kind"] == "time" and split["quantiles"] == [0.7, 0.85]
    assert sum(split["events"].values()) == stats["interactions"]
    assert split["queries"]["test"] + split["queries_without_history_skipped"]["test"] == split["events"]["test"]
    assert json.loads((tmp_path / "prepared" / "stats.json").read_text())["split"]["cuts"] == split["cuts"]
    results = {}
    for name in ("pop", "sasrec"):
        q = p | {"model": name}
        train(q, tmp_path / "prepared", tmp_path / name)
        results[name] = evaluate(q, tmp_path / "prepared", tmp_path / name / "model.pt", tmp_path / name / "m.json")
    sas = results["sasrec"]
    assert sas["test/queries"] == split["queries"]["test"] > sas["users"] * 0.1
    assert sas["valid/queries"] == split["queries"]["valid"]
    assert sas["test/ndcg@10"] > 1.2 * results["pop"]["test/ndcg@10"], results


def test_shuffled_order_keeps_each_users_events_and_the_queries():
    """train.order: shuffled permutes each user's training events (seeded) and nothing else."""
    s = Split(Sequences(np.arange(1, 31), np.array([0, 10, 14, 30]), 30))
    view = s.training
    mixed = view.shuffled(0)
    for u in range(3):
        a, b = (v.train.flat[v.train.offsets[u]:v.train.offsets[u + 1]] for v in (view, mixed))
        assert sorted(a.tolist()) == sorted(b.tolist())
    assert not np.array_equal(view.train.flat, mixed.train.flat)
    assert np.array_equal(mixed.train.flat, view.shuffled(0).train.flat)  # seeded
    a, b = view.valid_queries(5), mixed.valid_queries(5)
    for x, y in [(a.inputs, b.inputs), (a.targets, b.targets), (a.seen[1], b.seen[1]), (a.users, b.users)]:
        assert np.array_equal(x, y)


def test_the_demo_is_sequential_and_the_check_says_so(tmp_path):
    """The demo's users follow item-to-item transitions: SASRec trained on shuffled training
    sequences loses accuracy on the same (time-ordered) test queries."""
    p = tiny_params()
    download(p, tmp_path / "raw")
    run(tmp_path / "raw", tmp_path / "prepared", PreprocessConfig(**p["preprocess"]))
    got = {}
    for order in ("time", "shuffled"):
        q = p | {"train": p["train"] | {"order": order}}
        train(q, tmp_path / "prepared", tmp_path / order)
        got[order] = evaluate(q, tmp_path / "prepared", tmp_path / order / "model.pt", tmp_path / order / "m.json")
    assert got["time"]["test/ndcg@10"] > 1.1 * got["shuffled"]["test/ndcg@10"], got
