"""Model -> user/item vectors -> exact FAISS top-k -> ranks -> metrics, for one split."""

from __future__ import annotations

from typing import Iterable, Iterator, NamedTuple

import numpy as np
import torch
from torch import nn

from pipeline import distributed
from pipeline.config import ProtocolConfig
from pipeline.data import Queries, Split, TrainView, prefixes_ending_in
from pipeline.metrics import metrics_from_ranks, ranks_from_topk
from pipeline.retrieval import exact_topk


def length_groups(view: TrainView, edges: list[int]) -> dict[str, np.ndarray]:
    """{"<lo>-<hi>": (U,) bool} by the number of training interactions (before valid and test)."""
    n = view.train.lengths
    bounds = [0, *edges, np.inf]
    return {f"{lo}-{'inf' if hi == np.inf else int(hi)}": (n >= lo) & (n < hi) for lo, hi in zip(bounds, bounds[1:])}


def sample_negatives(view: TrainView, queries: Queries, n: int, by: str, seed: int, mask_history: bool = True,
                     max_rounds: int = 50) -> np.ndarray:
    """(Q, n) item ids: per query, n distinct items that are neither the target nor (with masking)
    seen before it, drawn uniformly or by training popularity; rejection-sampled, vectorised."""
    rng = np.random.default_rng(seed)
    num_items = view.num_items
    counts = view.train.counts()[1:].astype(np.float64)
    p = (counts + 1e-12) / (counts + 1e-12).sum() if by == "popularity" else np.full(num_items, 1 / num_items)
    targets = queries.targets
    users = len(targets)
    indptr, seen = queries.seen
    owner = np.repeat(np.arange(users), np.diff(indptr))
    forbidden = np.unique(np.concatenate([np.arange(users) * (num_items + 1) + targets,
                                          (owner * (num_items + 1) + seen) if mask_history else []]).astype(np.int64))
    out = rng.choice(num_items, size=(users, n), p=p) + 1
    for _ in range(max_rounds):
        bad = np.isin(np.arange(users)[:, None] * (num_items + 1) + out, forbidden)
        order = np.argsort(out, axis=1, kind="stable")
        srt = np.take_along_axis(out, order, 1)
        dup = np.zeros_like(bad)
        np.put_along_axis(dup, order[:, 1:], srt[:, 1:] == srt[:, :-1], 1)
        bad |= dup
        if not bad.any():
            return out
        out[bad] = rng.choice(num_items, size=int(bad.sum()), p=p) + 1
    raise ValueError(f"could not draw {n} distinct unseen negatives for every user in {max_rounds} rounds; "
                     f"lower protocol.sampled (catalogue: {num_items} items)")


def sampled_ranks(queries: np.ndarray, items: np.ndarray, targets: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """Rank of the target among itself + its negatives: 1 + #(negatives scoring >= the target)."""
    t = np.einsum("ud,ud->u", queries, items[targets - 1])
    neg = np.einsum("ud,usd->us", queries, items[negatives - 1])
    return 1.0 + (neg >= t[:, None]).sum(1)


def cold_items(view: TrainView, threshold: int) -> np.ndarray:
    """(num_items + 1,) bool: the item occurs fewer than `threshold` times among training interactions."""
    return view.train.counts() < threshold


@torch.no_grad()
def user_vectors(model: nn.Module, inputs: np.ndarray, device: torch.device, users: np.ndarray | None = None,
                 batch: int = 1024) -> np.ndarray:
    """Last-position state of each input window (`users`: each window's 0-based user index): (U, D) float32."""
    model.eval()
    out = []
    for s in range(0, len(inputs), batch):
        x = torch.as_tensor(inputs[s:s + batch], device=device)
        u = None if users is None else torch.as_tensor(users[s:s + batch], device=device)
        out.append(model.encode(x, u)[:, -1].float().cpu())
    return torch.cat(out).numpy()


@torch.no_grad()
def catalogue(model: nn.Module) -> np.ndarray:
    """Every item's vector, (N, D) float32; row r = item id r+1."""
    model.eval()
    return model.item_vectors()[1:].float().cpu().numpy()


class Ranked(NamedTuple):
    """One query set's exact full ranking: metrics, each query's rank, its vector and its top list."""

    metrics: dict[str, float]
    ranks: np.ndarray  # (Q,) float, inf beyond the top-(K+1)
    vectors: np.ndarray  # (Q, D) float32
    top: np.ndarray  # (Q, max K) int32 item ids, best first: what the model recommends (masked as the protocol says)


@torch.no_grad()
def evaluate_queries(model: nn.Module, queries: Queries, protocol: ProtocolConfig, device: torch.device,
                     items: np.ndarray | None = None) -> Ranked:
    """Metrics, per-query ranks, query vectors and top lists for `queries` (exact full ranking, the
    protocol's masking rule). `items`: the model's `catalogue` when the caller already has it.

    In a torch.distributed group every rank scores its contiguous shard of the queries and the
    ranks and vectors are gathered in order, so every rank returns what one process would."""
    items = catalogue(model) if items is None else items
    mine = queries.rows(distributed.shard(len(queries))) if distributed.world() > 1 else queries
    vectors = user_vectors(model, mine.inputs, device, mine.users)
    ranks, top = full_ranks(vectors, items, mine.targets, mine.seen if protocol.mask_history else None, protocol,
                            device)
    if mine is not queries:
        vectors, ranks, top = distributed.gather(vectors), distributed.gather(ranks), distributed.gather(top)
    return Ranked(metrics_from_ranks(ranks, protocol.ks), ranks, vectors, top)


def full_ranks(queries: np.ndarray, items: np.ndarray, targets: np.ndarray, seen: tuple[np.ndarray, np.ndarray] | None,
               protocol: ProtocolConfig, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Exact full-ranking rank of each target and each query's top-(max K) item ids (best first);
    `seen` = CSR (indptr, item ids) masked per query (never the target)."""
    exclude = None
    if seen is not None:
        owner, items_seen = seen_but_target(targets, seen)
        exclude = (np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=len(targets)))]), items_seen - 1)
    scores, ids = exact_topk(queries, items, max(protocol.ks) + 1, exclude, use_gpu=device.type == "cuda")
    return ranks_from_topk(scores, ids + 1, targets), (ids[:, :max(protocol.ks)] + 1).astype(np.int32)


def seen_but_target(targets: np.ndarray, seen: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(query index, item id) of every seen item of every query but its own target (never masked)."""
    indptr, items_seen = seen
    owner = np.repeat(np.arange(len(targets)), np.diff(indptr))
    keep = items_seen != targets[owner]
    return owner[keep], items_seen[keep]


def unmasked_ranks(vectors: np.ndarray, items: np.ndarray, targets: np.ndarray, seen: tuple[np.ndarray, np.ndarray],
                   masked: np.ndarray) -> np.ndarray:
    """The ranks without history masking, from the masked ones: each masked rank plus the user's
    already-seen items (never the target) that score at least the target (ties against the target,
    as everywhere). Exact: a target beyond the masked top-K is beyond the unmasked top-K too. The
    seen items' and the target's scores come from one computation, so their comparison is consistent."""
    owner, items_seen = seen_but_target(targets, seen)
    target_score = np.einsum("qd,qd->q", vectors, items[targets - 1])
    seen_score = np.einsum("sd,sd->s", vectors[owner], items[items_seen - 1])
    above = np.bincount(owner[seen_score >= target_score[owner]], minlength=len(targets))
    return masked + above.astype(masked.dtype)


def cold_subsequences(split: Split, threshold: int, max_len: int, max_history: int = 1 << 22) -> Iterator[Queries]:
    """The MMSR study's cold scenario (§3 / §7.1, `cold_seq/*`): every prefix s[:t] (t >= 1) of every
    user's complete sequence whose next item s[t] occurs < `threshold` times among training
    interactions, in chunks of bounded memory (`data.prefixes_ending_in`)."""
    return prefixes_ending_in(split.full, cold_items(split.training, threshold), max_len, max_history)


def evaluate_chunks(model: nn.Module, chunks: Iterable[Queries], protocol: ProtocolConfig, device: torch.device,
                    items: np.ndarray | None = None) -> tuple[dict[str, float], np.ndarray, np.ndarray, np.ndarray]:
    """`evaluate_queries` over a stream of query chunks: metrics over all of them, and every query's
    rank, target and user (empty metrics when there are no queries)."""
    items = catalogue(model) if items is None else items
    ranks, targets, users = [], [], []
    for q in chunks:
        r = evaluate_queries(model, q, protocol, device, items).ranks
        ranks.append(r)
        targets.append(q.targets)
        users.append(q.users)
    if not ranks:
        return {}, np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64)
    ranks_all = np.concatenate(ranks)
    return metrics_from_ranks(ranks_all, protocol.ks), ranks_all, np.concatenate(targets), np.concatenate(users)
