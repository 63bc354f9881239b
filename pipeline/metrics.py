"""Exact full-ranking metrics under leave-one-out (one target per user).

Rank rule (ties broken against the target): rank = number of candidate items whose score is
>= the target's score, the target included. A model that scores everything equal therefore gets
rank N, never rank 1. Candidates are all items except padding and, when history masking is on,
the items the user saw before the target — the target itself is never masked, even if it was seen.

HR@K = 1[rank <= K] (equal to Recall@K with one target); NDCG@K = 1/log2(rank + 1) if rank <= K;
MRR@K = 1/rank if rank <= K. Each is averaged over users.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.config import KS


def ranks_from_topk(scores: np.ndarray, ids: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Exact ranks from a top-(K+1) list: (U,) float, `inf` when the target is not in the list.

    With K+1 results, any target ranked <= K is found and its rank is exact: all items scoring >= the
    target are in the list unless at least K+1 items score >= it (then rank > K either way).
    """
    hit = ids == targets[:, None]
    found = hit.any(1)
    s_t = scores[np.arange(len(targets)), hit.argmax(1)]
    rank = (scores >= s_t[:, None]).sum(1).astype(np.float64)
    rank[~found] = np.inf
    rank[rank >= ids.shape[1]] = np.inf  # a full list of >= scores: the true rank may be larger
    return rank


def long_tail(counts: np.ndarray, head_share: float) -> np.ndarray:
    """(N+1,) bool, True for the long-tail items: all but the head, the ceil(head_share x N) items with
    the most training events plus every item tied with the last of them (ties go to the head);
    index 0 (padding) is never tail."""
    n = len(counts) - 1
    head = int(np.ceil(head_share * n))
    tail = np.zeros(n + 1, bool)
    if head < n:
        cut = np.sort(counts[1:])[::-1][head - 1] if head > 0 else np.inf
        tail[1:] = counts[1:] < cut
    return tail


def beyond_accuracy(top: np.ndarray, counts: np.ndarray, ks, head_share: float
                    ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """What the top lists (Q, K) of item ids (0 = no item) recommend, beyond accuracy. Per query:
    `pop@K`, the mean training events of its top-K items (average recommendation popularity), and
    `tail@K`, the share of them in the long tail (`long_tail`). Over the query set: those means and
    `coverage@K`, the distinct items in all top-K lists over the catalogue size."""
    tail = long_tail(counts, head_share)
    per, overall = {}, {}
    for k in ks:
        t = top[:, :k]
        real = t > 0
        n = np.maximum(real.sum(1), 1)
        per[f"pop@{k}"] = np.where(real, counts[t], 0).sum(1) / n
        per[f"tail@{k}"] = (tail[t] & real).sum(1) / n
        overall[f"coverage@{k}"] = np.unique(t[real]).size / max(len(counts) - 1, 1)
        for m in ("pop", "tail"):
            overall[f"{m}@{k}"] = float(per[f"{m}@{k}"].mean()) if len(t) else float("nan")
    return per, overall


def metrics_from_ranks(ranks: np.ndarray, ks=KS) -> dict[str, float]:
    out = {}
    for k in ks:
        hit = ranks <= k
        out[f"hr@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0).mean())
        out[f"mrr@{k}"] = float(np.where(hit, 1.0 / ranks, 0.0).mean())
    return out


def brute_force_ranks(queries: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
                      exclude: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Reference: full score matrix, masked, rank = #(score >= target score). Same rule, no FAISS.

    items are indexed by row (targets are row indices); exclude is a CSR of row indices.
    """
    scores = queries.float() @ items.float().T  # (U, N)
    rows = torch.arange(len(targets))
    s_t = scores[rows, targets].clone()
    if exclude is not None:
        indptr, excl = exclude
        owner = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        scores[torch.as_tensor(owner), torch.as_tensor(excl)] = float("-inf")
    scores[rows, targets] = s_t  # the target is never masked
    return (scores >= s_t[:, None]).sum(1).double().numpy()
