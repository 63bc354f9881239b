"""Vectorised sequence arrays and the one split everything reads through.

Two splits, chosen at preprocessing (`preprocess.split`, written into stats.json so every reader of
a prepared folder splits it the same way):

- `loo` (leave-one-out): a user's complete sequence s (length n) — training sees s[:n-2],
  validation predicts s[n-2] from s[:n-2], the test predicts s[n-1] from s[:n-1].
- `time` (a global temporal split, two cut-off times c1 < c2): training sees every event before
  c1; every event in [c1, c2) is a validation query and every event from c2 on a test query, each
  predicted from everything its user did before it (a query with no earlier event is skipped and
  counted). A user may have several queries; statistics treat users as clusters.

Who may see what is enforced by types, not by a `holdout` argument that each caller must get right:

- `TrainView` is what every learning step receives (the trainer, AutoMLP's search, MSM4SR's
  pre-training, popularity counts, any statistic a model computes from interactions): the training
  events, plus the validation queries for model selection (built from the events before the test
  part alone), so no method of it can return a test target.
- `Split` holds the complete sequences; only the evaluate stage builds one, and it is the only
  place test queries come from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import polars as pl

from pipeline.tables import read_table, same_generation

HELD_OUT = 2  # validation + test items at the end of each sequence


@dataclass(frozen=True)
class Sequences:
    """Users' sequences as one flat int64 array with CSR offsets (user u = flat[off[u]:off[u+1]])."""

    flat: np.ndarray  # (total,) item ids
    offsets: np.ndarray  # (U+1,)
    num_items: int

    @classmethod
    def from_table(cls, sequences: pl.DataFrame, num_items: int) -> "Sequences":
        seqs = sequences.sort("user_id")["item_ids"]
        lengths = seqs.list.len().to_numpy().astype(np.int64)
        flat = seqs.explode().to_numpy().astype(np.int64)
        return cls(flat, np.concatenate([[0], np.cumsum(lengths)]), num_items)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def counts(self) -> np.ndarray:
        """(num_items + 1,) how often each item id occurs in these sequences."""
        return np.bincount(self.flat, minlength=self.num_items + 1)

    def positions(self) -> np.ndarray:
        """(total,) each event's 0-based index inside its user's sequence."""
        return np.arange(self.flat.size) - np.repeat(self.offsets[:-1], self.lengths)

    def without_last(self, k: int) -> "Sequences":
        """Each user's sequence minus its last k items (new arrays: nothing of the cut part remains)."""
        return self.prefix(np.maximum(self.lengths - k, 0))

    def prefix(self, keep: np.ndarray) -> "Sequences":
        """Each user's first keep[u] items (new arrays: nothing of the cut part remains)."""
        mask = self.positions() < np.repeat(keep, self.lengths)
        return Sequences(self.flat[mask].copy(), np.concatenate([[0], np.cumsum(keep)]), self.num_items)

    def item_at(self, position_from_end: int) -> np.ndarray:
        """(U,) s[n - position_from_end] of every user (1 = the last item)."""
        return self.flat[self.offsets[1:] - position_from_end].copy()

    def last_windows(self, max_len: int) -> np.ndarray:
        """(U, max_len) left-padded: each user's last max_len items."""
        return window_before(self.flat, self.offsets[:-1], self.lengths, max_len)

    def history(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR (indptr, item ids) of every user's whole sequence (the items to mask after it)."""
        return self.offsets, self.flat


@dataclass(frozen=True)
class Queries:
    """One next-item query per row: the input window, the target, the items seen before it and
    whose query it is (0-based user index; user_id = index + 1)."""

    inputs: np.ndarray  # (Q, max_len) left-padded
    targets: np.ndarray  # (Q,)
    seen: tuple[np.ndarray, np.ndarray]  # CSR (indptr, item ids) of each query's history
    users: np.ndarray  # (Q,)

    def __len__(self) -> int:
        return len(self.targets)

    def rows(self, part: slice) -> "Queries":
        """Queries part.start:part.stop (a contiguous shard), the history CSR re-based."""
        a, b = part.start, part.stop
        indptr, items = self.seen
        return Queries(self.inputs[a:b], self.targets[a:b], (indptr[a:b + 1] - indptr[a], items[indptr[a]:indptr[b]]),
                       self.users[a:b])


def queries_at(seq: Sequences, at: np.ndarray, max_len: int) -> Queries:
    """Queries for the events at flat indices `at` of `seq` (each with at least one earlier event of
    its user): the input window before it, the target, the CSR of the whole prefix, the user."""
    return next(prefix_queries(seq, at, max_len, max_history=1 << 62), None) or Queries(
        np.zeros((0, max_len), np.int64), np.zeros(0, np.int64), (np.zeros(1, np.int64), np.zeros(0, np.int64)),
        np.zeros(0, np.int64))


@dataclass(frozen=True)
class TrainView:
    """The training side of the split: `train` = each user's training events; the validation queries
    are the events at flat indices `valid_at` of `valid_context` (the events before the test part),
    each predicted from its user's earlier events there. Leave-one-out: `valid_context` = s[:n-1]
    and `valid_at` each user's last event (s[n-2])."""

    train: Sequences
    valid_context: Sequences
    valid_at: np.ndarray  # (Qv,) flat indices into valid_context
    kind: str = "loo"

    @property
    def num_items(self) -> int:
        return self.train.num_items

    @property
    def num_users(self) -> int:
        return len(self.train.lengths)

    @property
    def valid_targets(self) -> np.ndarray:
        return self.valid_context.flat[self.valid_at]

    def fingerprint(self) -> str:
        """SHA-256 of everything the view holds (what a saved state of a run on it must match)."""
        h = hashlib.sha256()
        parts = [self.train.flat, self.train.offsets, self.valid_targets, np.array([self.num_items])]
        if self.kind != "loo":  # leave-one-out's fingerprint is what it always was (saved states stay valid)
            parts += [self.valid_context.flat, self.valid_context.offsets, self.valid_at]
        for a in parts:
            h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
        return h.hexdigest()

    def shuffled(self, seed: int) -> "TrainView":
        """The same view with each user's training events in a seeded random order (the sequentiality
        check: how much of a model's accuracy needs the order); the validation queries keep theirs."""
        rng = np.random.default_rng(seed)
        user = np.repeat(np.arange(self.num_users), self.train.lengths)
        order = np.lexsort((rng.random(len(user)), user))  # within each user, a random permutation
        return dataclasses.replace(self, train=Sequences(self.train.flat[order], self.train.offsets, self.num_items))

    def valid_queries(self, max_len: int) -> Queries:
        """Each validation event predicted from its user's earlier events (the window of the last
        max_len of them), masking all of them."""
        return queries_at(self.valid_context, self.valid_at, max_len)


@dataclass(frozen=True)
class SplitSpec:
    """How a prepared folder is split (stats.json `split`): leave-one-out, or by two cut-off times."""

    kind: str = "loo"  # loo | time
    cuts: tuple[int, int] | None = None  # time: [c1, c2) is validation, >= c2 test (the table's time unit)

    def describe(self) -> str:
        if self.kind == "loo":
            return "leave-one-out: valid = second-last item, test = last item"
        return (f"global temporal split at {self.cuts[0]} and {self.cuts[1]} (the data's time unit): training = the "
                "events before the first cut; valid = every event up to the second, test = every later event, each "
                "predicted from everything its user did before it (a user's first event is no query)")

    @classmethod
    def of(cls, stats: dict) -> "SplitSpec":
        s = stats.get("split") or {"kind": "loo"}
        return cls(s["kind"], tuple(s["cuts"]) if s.get("cuts") is not None else None)


class Split:
    """The split of the complete sequences; the only holder of test targets (evaluate stage)."""

    def __init__(self, full: Sequences, spec: SplitSpec = SplitSpec(), times: np.ndarray | None = None):
        self.full, self.spec = full, spec
        if spec.kind == "loo":
            if len(full.lengths) and full.lengths.min() < HELD_OUT + 1:
                raise ValueError(f"every user needs at least {HELD_OUT + 1} items for a leave-one-out split "
                                 "(preprocess drops shorter users)")
            context = full.without_last(1)
            self.training = TrainView(full.without_last(HELD_OUT), context, context.offsets[1:] - 1)
            self._test_context, self._test_at = full, full.offsets[1:] - 1
            self.skipped: dict[str, int] = {}
            return
        if spec.kind != "time" or spec.cuts is None or times is None or len(times) != len(full.flat):
            raise ValueError(f"split {spec}: a time split needs two cut-off times and every event's timestamp")
        c1, c2 = spec.cuts
        lengths = full.lengths
        user = np.repeat(np.arange(len(lengths)), lengths)
        pos = full.positions()
        n_train = np.bincount(user[times < c1], minlength=len(lengths))  # events are in time order per user
        n_context = np.bincount(user[times < c2], minlength=len(lengths))
        train, context = full.prefix(n_train), full.prefix(n_context)
        c_pos = context.positions()
        in_valid = c_pos >= np.repeat(n_train, context.lengths)  # the context's events after the first cut
        in_test = pos >= np.repeat(n_context, lengths)
        self.training = TrainView(train, context, np.flatnonzero(in_valid & (c_pos >= 1)), "time")
        self._test_context, self._test_at = full, np.flatnonzero(in_test & (pos >= 1))
        self.skipped = {"valid_without_history": int((in_valid & (c_pos < 1)).sum()),
                        "test_without_history": int((in_test & (pos < 1)).sum())}

    @property
    def num_items(self) -> int:
        return self.full.num_items

    def test_queries(self, max_len: int) -> Queries:
        """Each test event predicted from its user's earlier events (leave-one-out: s[n-1] from
        the last max_len items of s[:n-1]), masking all of them."""
        return queries_at(self._test_context, self._test_at, max_len)


def training_view(sequences: pl.DataFrame, num_items: int, spec: SplitSpec = SplitSpec()) -> TrainView:
    """The training view straight from `sequences.parquet`; the complete sequences are dropped at once."""
    return split_of(sequences, num_items, spec).training


def split_of(sequences: pl.DataFrame, num_items: int, spec: SplitSpec) -> Split:
    times = None
    if spec.kind == "time":
        times = sequences.sort("user_id")["timestamps"].explode().to_numpy().astype(np.int64)
    return Split(Sequences.from_table(sequences, num_items), spec, times)


def prepared_tables(prepared: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(items, sequences) of a prepared folder, checked to come from one preprocessing run."""
    same_generation([prepared / "items.parquet", prepared / "sequences.parquet"])
    return read_table(prepared / "items.parquet", "items"), read_table(prepared / "sequences.parquet", "sequences")


def split_spec(prepared: Path) -> SplitSpec:
    """The split the preprocessing wrote into stats.json (leave-one-out when it says none)."""
    path = prepared / "stats.json"
    return SplitSpec.of(json.loads(path.read_text())) if path.is_file() else SplitSpec()


def load_training_view(prepared: Path) -> TrainView:
    """What training may see of a prepared folder: the training events and the validation queries;
    the test events are dropped on reading."""
    items, sequences = prepared_tables(prepared)
    return training_view(sequences, items.height, split_spec(prepared))


def load_split(prepared: Path) -> Split:
    """The complete sequences with their split (test targets included: evaluate only)."""
    items, sequences = prepared_tables(prepared)
    return split_of(sequences, items.height, split_spec(prepared))


def train_windows(seq: Sequences, max_len: int, stride: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut each (training) sequence into windows so every interaction but the first is a target
    exactly once. Returns (inputs, targets, users): inputs and targets (W, max_len) int64,
    left-padded with 0, targets[w, t] the item after inputs[w, t] (0 = no target); users (W,) the
    0-based index of each window's user.

    `stride` (default max_len) is how far consecutive windows are apart. With stride < max_len the
    windows overlap and only each window's newest `stride` positions are targets (all positions in
    a user's oldest window), so every target keeps at least max_len - stride items of context.
    """
    stride = max_len if stride is None else stride
    if not 1 <= stride <= max_len:
        raise ValueError(f"window stride must be in [1, max_len={max_len}], got {stride}")
    n_train = seq.lengths
    n_win = np.ceil(np.maximum(n_train - 1, 0) / stride).astype(np.int64)
    user = np.repeat(np.arange(n_train.size), n_win)
    j = np.arange(user.size) - np.repeat(np.cumsum(n_win) - n_win, n_win)  # 0 = most recent window
    end = n_train[user] - j * stride  # exclusive end of the window's targets
    rel = end[:, None] - (max_len + 1) + np.arange(max_len + 1)[None]  # (W, L+1) positions in the user
    vals = np.where(rel >= 0, seq.flat[seq.offsets[user][:, None] + np.maximum(rel, 0)], 0)
    inputs, targets = vals[:, :-1], vals[:, 1:]
    oldest = j == n_win[user] - 1
    own = (np.arange(max_len)[None] >= max_len - stride) | oldest[:, None]  # targets this window owns
    return inputs, np.where((inputs > 0) & own, targets, 0), user


def window_before(flat: np.ndarray, first: np.ndarray, end: np.ndarray, max_len: int) -> np.ndarray:
    """(Q, max_len) left-padded: the last max_len items before position end[q] of the sequence that
    starts at flat index first[q]."""
    rel = end[:, None] - max_len + np.arange(max_len)[None]
    return np.where(rel >= 0, flat[first[:, None] + np.maximum(rel, 0)], 0)


def prefixes_ending_in(seq: Sequences, flagged: np.ndarray, max_len: int, max_history: int = 1 << 22
                       ) -> Iterator[Queries]:
    """Every position t >= 1 of every user's sequence whose item s[t] is flagged
    (`flagged`: (num_items + 1,) bool), as queries (`prefix_queries`)."""
    pos = seq.positions()
    return prefix_queries(seq, np.flatnonzero((pos >= 1) & flagged[seq.flat]), max_len, max_history)


def prefix_queries(seq: Sequences, at: np.ndarray, max_len: int, max_history: int = 1 << 22) -> Iterator[Queries]:
    """The events at flat indices `at` (in order; each at position >= 1 of its user) as queries: the
    input window before it, the target and the CSR of each whole prefix s[:t]. The prefixes of one
    long user add up quadratically, so the queries come in chunks whose histories hold at most
    `max_history` items together (a single longer prefix is a chunk of its own): memory stays
    bounded by the chunk, not the longest user."""
    t = seq.positions()[at]
    ends = np.cumsum(t)
    start = 0
    while start < len(at):
        stop = max(start + 1, int(np.searchsorted(ends, (ends[start - 1] if start else 0) + max_history, "right")))
        a, tt = at[start:stop], t[start:stop]
        first = a - tt  # flat index of the user's first item
        indptr = np.concatenate([[0], np.cumsum(tt)])
        seen = seq.flat[np.arange(indptr[-1]) - np.repeat(indptr[:-1], tt) + np.repeat(first, tt)]
        users = np.searchsorted(seq.offsets, a, side="right") - 1
        yield Queries(window_before(seq.flat, first, tt, max_len), seq.flat[a], (indptr, seen), users)
        start = stop
