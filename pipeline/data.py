"""Vectorised sequence arrays and the one leave-one-out split everything reads through.

A user's complete sequence s (length n) is split leave-one-out: training sees s[:n-2], validation
predicts s[n-2] from s[:n-2], and the test predicts s[n-1] from s[:n-1].

Who may see what is enforced by types, not by a `holdout` argument that each caller must get right:

- `TrainView` is what every learning step receives (the trainer, AutoMLP's search, MSM4SR's
  pre-training, popularity counts, any statistic a model computes from interactions): each user's
  sequence *without* its last two items, plus the validation queries for model selection. It is
  built from the two arrays alone, so no method of it can return a test target.
- `Split` holds the complete sequences; only the evaluate stage builds one, and it is the only
  place test queries come from.
"""

from __future__ import annotations

import hashlib
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
        keep = np.maximum(self.lengths - k, 0)
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


@dataclass(frozen=True)
class TrainView:
    """The training side of the split: `train` = each user's s[:n-2], `valid_targets` = s[n-2]."""

    train: Sequences
    valid_targets: np.ndarray  # (U,)

    @property
    def num_items(self) -> int:
        return self.train.num_items

    def fingerprint(self) -> str:
        """SHA-256 of everything the view holds (what a saved state of a run on it must match)."""
        h = hashlib.sha256()
        for a in (self.train.flat, self.train.offsets, self.valid_targets, np.array([self.num_items])):
            h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
        return h.hexdigest()

    def valid_queries(self, max_len: int) -> Queries:
        """Predict s[n-2] from the last max_len items of s[:n-2], masking s[:n-2]."""
        return Queries(self.train.last_windows(max_len), self.valid_targets, self.train.history(),
                       np.arange(len(self.valid_targets)))


class Split:
    """Leave-one-out split of the complete sequences; the only holder of test targets (evaluate stage)."""

    def __init__(self, full: Sequences):
        if len(full.lengths) and full.lengths.min() < HELD_OUT + 1:
            raise ValueError(f"every user needs at least {HELD_OUT + 1} items for a leave-one-out split "
                             "(preprocess drops shorter users)")
        self.full = full
        self._upto_test = full.without_last(1)
        self.training = TrainView(full.without_last(HELD_OUT), full.item_at(2))

    @property
    def num_items(self) -> int:
        return self.full.num_items

    def test_queries(self, max_len: int) -> Queries:
        """Predict s[n-1] from the last max_len items of s[:n-1], masking s[:n-1]."""
        return Queries(self._upto_test.last_windows(max_len), self.full.item_at(1), self._upto_test.history(),
                       np.arange(len(self.full.lengths)))


def training_view(sequences: pl.DataFrame, num_items: int) -> TrainView:
    """The training view straight from `sequences.parquet`; the complete sequences are dropped at once."""
    return Split(Sequences.from_table(sequences, num_items)).training


def prepared_tables(prepared: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(items, sequences) of a prepared folder, checked to come from one preprocessing run."""
    same_generation([prepared / "items.parquet", prepared / "sequences.parquet"])
    return read_table(prepared / "items.parquet", "items"), read_table(prepared / "sequences.parquet", "sequences")


def load_training_view(prepared: Path) -> TrainView:
    """What training may see of a prepared folder: each user's sequence without its last two items
    and the validation targets; the test items are dropped on reading."""
    items, sequences = prepared_tables(prepared)
    return training_view(sequences, items.height)


def load_split(prepared: Path) -> Split:
    """The complete sequences with their leave-one-out split (test targets included: evaluate only)."""
    items, sequences = prepared_tables(prepared)
    return Split(Sequences.from_table(sequences, items.height))


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
    (`flagged`: (num_items + 1,) bool), as queries: the input window before it, the target s[t] and
    the CSR of each whole prefix s[:t]. The prefixes of one long user add up quadratically, so the
    queries come in chunks whose histories hold at most `max_history` items together (a single
    longer prefix is a chunk of its own): memory stays bounded by the chunk, not the longest user."""
    pos = seq.positions()
    at = np.flatnonzero((pos >= 1) & flagged[seq.flat])
    t = pos[at]
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
