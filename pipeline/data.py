"""Vectorised sequence arrays: training windows, evaluation inputs and history masks.

A user's sequence s (length n) is split leave-one-out: the model trains on s[:n-2], validates by
predicting s[n-2] from s[:n-2], and is tested by predicting s[n-1] from s[:n-1]. `holdout` below is
how many items are cut from the end (2 for training and validation inputs, 1 for test inputs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass
class Sequences:
    """All users' sequences as one flat int64 array with CSR offsets (user u = flat[off[u]:off[u+1]])."""

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

    def train_items(self, holdout: int = 2) -> np.ndarray:
        """Every training interaction's item id (the first n-holdout items of each user)."""
        return self.flat[self._position() < np.repeat(self.lengths - holdout, self.lengths)]

    def train_counts(self, holdout: int = 2) -> np.ndarray:
        """(num_items + 1,) how often each item id occurs among training interactions."""
        return np.bincount(self.train_items(holdout), minlength=self.num_items + 1)

    def _position(self) -> np.ndarray:
        return np.arange(self.flat.size) - np.repeat(self.offsets[:-1], self.lengths)


def train_windows(seq: Sequences, max_len: int, holdout: int = 2, stride: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Cut each user's training prefix into windows so every interaction but the first is a
    target exactly once. Returns (inputs, targets), each (W, max_len) int64, left-padded with 0;
    targets[w, t] is the item after inputs[w, t] (0 = no target).

    `stride` (default max_len) is how far consecutive windows are apart. With stride < max_len the
    windows overlap and only each window's newest `stride` positions are targets (all positions in
    a user's oldest window), so every target keeps at least max_len - stride items of context.
    """
    stride = max_len if stride is None else stride
    if not 1 <= stride <= max_len:
        raise ValueError(f"window stride must be in [1, max_len={max_len}], got {stride}")
    n_train = np.maximum(seq.lengths - holdout, 0)
    n_win = np.ceil(np.maximum(n_train - 1, 0) / stride).astype(np.int64)
    user = np.repeat(np.arange(n_train.size), n_win)
    j = np.arange(user.size) - np.repeat(np.cumsum(n_win) - n_win, n_win)  # 0 = most recent window
    end = n_train[user] - j * stride  # exclusive end of the window's targets
    rel = end[:, None] - (max_len + 1) + np.arange(max_len + 1)[None]  # (W, L+1) positions in the user
    vals = np.where(rel >= 0, seq.flat[seq.offsets[user][:, None] + np.maximum(rel, 0)], 0)
    inputs, targets = vals[:, :-1], vals[:, 1:]
    oldest = j == n_win[user] - 1
    own = (np.arange(max_len)[None] >= max_len - stride) | oldest[:, None]  # targets this window owns
    return inputs, np.where((inputs > 0) & own, targets, 0)


def last_window(seq: Sequences, max_len: int, holdout: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (U, max_len): the last max_len items before position n-holdout; targets (U,): s[n-holdout]."""
    end = seq.lengths - holdout
    if (end < 1).any():
        raise ValueError("every user needs at least holdout+1 items (preprocess drops shorter users)")
    return window_before(seq.flat, seq.offsets[:-1], end, max_len), seq.flat[seq.offsets[:-1] + end]


def window_before(flat: np.ndarray, first: np.ndarray, end: np.ndarray, max_len: int) -> np.ndarray:
    """(Q, max_len) left-padded: the last max_len items before position end[q] of the sequence that
    starts at flat index first[q]."""
    rel = end[:, None] - max_len + np.arange(max_len)[None]
    return np.where(rel >= 0, flat[first[:, None] + np.maximum(rel, 0)], 0)


def prefixes_ending_in(seq: Sequences, flagged: np.ndarray, max_len: int
                       ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Every position t >= 1 of every user's complete sequence whose item s[t] is flagged
    (`flagged`: (num_items + 1,) bool). Returns the input windows (Q, max_len) before each, the
    targets s[t] (Q,) and the CSR (indptr, item ids) of each whole prefix s[:t]."""
    pos = seq._position()
    at = np.flatnonzero((pos >= 1) & flagged[seq.flat])
    t = pos[at]
    first = at - t  # flat index of the user's first item
    indptr = np.concatenate([[0], np.cumsum(t)])
    seen = seq.flat[np.arange(indptr[-1]) - np.repeat(indptr[:-1], t) + np.repeat(first, t)]
    return window_before(seq.flat, first, t, max_len), seq.flat[at], (indptr, seen)


def history(seq: Sequences, holdout: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr, item ids) of every item each user saw before position n-holdout."""
    end = seq.lengths - holdout
    keep = seq._position() < np.repeat(end, seq.lengths)
    return np.concatenate([[0], np.cumsum(end)]), seq.flat[keep]
