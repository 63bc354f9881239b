"""Tensor helpers every sequence model shares: the training losses and the attention mask.

Conventions: item id 0 is padding; sequences are left-padded (the most recent item is last);
`hidden` is (B, L, D) and `item_vecs` is (N+1, D) with row 0 for padding.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

LOSSES = ("ce", "bce", "bpr", "sampled_softmax")
SAMPLED = ("bce", "bpr", "sampled_softmax")  # the losses that read the training loop's negatives


def sequence_loss(hidden: torch.Tensor, targets: torch.Tensor, item_vecs, kind: str = "ce",
                  negatives: torch.Tensor | None = None, log_q: torch.Tensor | None = None) -> torch.Tensor:
    """Next-item loss over every non-padding target position.

    Args:
        hidden: (B, L, D) sequence states; position t predicts targets[:, t].
        targets: (B, L) item ids, 0 where there is no target.
        item_vecs: (N+1, D) output item vectors, or for the sampled kinds a function ids -> their
            vectors (an embedding lookup, so the table's gradient can be sparse: only those rows).
        kind: "ce" — full softmax cross-entropy over all N items (padding excluded);
            "bce" — binary cross-entropy with sampled negatives (B, L, S) ids;
            "bpr" — Bayesian personalised ranking, -log σ(pos - neg), with the same negatives;
            "sampled_softmax" — softmax over the target and S negatives (S,) shared by the whole
            batch, each logit minus log q(item) when `log_q` (N+1,) gives the log-probability the
            negatives were drawn with (the logQ correction, Yi et al. 2019); a negative equal to
            the target is masked. With every item as a negative and no correction it is "ce".
    """
    mask = targets > 0
    h = hidden[mask]  # (P, D)
    t = targets[mask]  # (P,)
    rows = item_vecs if callable(item_vecs) else item_vecs.__getitem__
    if kind == "ce":
        if callable(item_vecs):
            raise ValueError("the full softmax (ce) needs the whole item matrix, not a row lookup")
        logits = h @ item_vecs.T  # (P, N+1)
        logits[:, 0] = float("-inf")
        return F.cross_entropy(logits, t)
    if kind == "sampled_softmax":
        if negatives is None or negatives.dim() != 1:
            raise ValueError("sampled_softmax needs the batch's shared negative ids (S,) from the training loop")
        pos = (h * rows(t)).sum(-1, keepdim=True)  # (P, 1)
        neg = h @ rows(negatives).T  # (P, S)
        if log_q is not None:
            pos, neg = pos - log_q[t][:, None], neg - log_q[negatives][None]
        neg = neg.masked_fill(negatives[None] == t[:, None], float("-inf"))  # accidental hits
        return F.cross_entropy(torch.cat([pos, neg], 1), torch.zeros(len(t), dtype=torch.long, device=t.device))
    if kind in ("bce", "bpr"):
        if negatives is None:
            raise ValueError(f"{kind} loss needs sampled negatives")
        neg = negatives[mask]  # (P, S)
        pos_logit = (h * rows(t)).sum(-1)  # (P,)
        neg_logit = torch.einsum("pd,psd->ps", h, rows(neg))  # (P, S)
        if kind == "bpr":
            return -F.logsigmoid(pos_logit[:, None] - neg_logit).mean()
        return -(F.logsigmoid(pos_logit).mean() + F.logsigmoid(-neg_logit).mean())
    raise ValueError(f"unknown loss {kind!r}; use one of {LOSSES}")


def next_item_loss(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
                   negatives: Callable[[], torch.Tensor], users: torch.Tensor | None = None) -> torch.Tensor:
    """The loss of a model that scores by `encode(inputs, users) · item_vectors()`, of kind `model.cfg.loss`.

    `negatives()` returns the batch's sampled negative ids (B, L, S); it is called only for `bce` /
    `bpr`, so a full-softmax model never draws from the training loop's random stream. `users` (B,)
    are the windows' 0-based user indices, for models with user embeddings."""
    kind = model.cfg.loss
    sampled = kind in SAMPLED
    # a sampled loss reads only the rows it scores: through `item_rows` (an embedding lookup) when
    # the model has one, so its item table can take sparse gradients (train.sparse_embeddings)
    hidden = model.encode(inputs, users)  # before item_vectors(): the order the random streams are drawn in
    vecs = model.item_rows if sampled and hasattr(model, "item_rows") else model.item_vectors()
    return sequence_loss(hidden, targets, vecs, kind, negatives() if sampled else None,
                         getattr(negatives, "log_q", None))


def causal_padding_mask(pad: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """Boolean attention mask (B, L, L), True = blocked: future keys (unless `causal=False`) and
    padding keys.

    Each position may always attend to itself, so no row is fully blocked (no NaNs) and real
    positions never see padding: left padding can change without changing real outputs.
    """
    length = pad.shape[1]
    future = torch.ones(length, length, dtype=torch.bool, device=pad.device).triu(1)  # (L, L)
    blocked = (future[None] if causal else torch.zeros_like(future)[None]) | pad[:, None, :]  # (B, L, L)
    return blocked & ~torch.eye(length, dtype=torch.bool, device=pad.device)[None]


def fast_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout with a mask from `rand_like`; on CPU this is about 2x faster than
    `F.dropout`'s `bernoulli_`, which profiling showed taking a quarter of a SASRec step."""
    if not training or p == 0.0:
        return x
    return x * (torch.rand_like(x) >= p) * (1.0 / (1.0 - p))


class ItemFeatures(torch.nn.Module):
    """Frozen per-item feature tables kept as buffers, so checkpoints carry them.

    `shapes` maps a name ("text", "image") to the stored shape per item: [D] for pooled vectors or
    [S, D] for stacks; each gets a (N+1, *shape) float buffer `<name>` and a (N+1,) or (N+1, S)
    bool buffer `<name>_mask` (row 0 = padding: zeros, False). The train stage fills them from the
    feature store with `load`; `pooled(name)` averages a stack over its valid slots.
    """

    def __init__(self, shapes: dict[str, list[int]], num_items: int):
        super().__init__()
        if not shapes:
            raise ValueError("this model reads item features, but no feature shapes were given; train it through "
                             "the train stage (it reads data/features) or pass `features: {name: [D] | [S, D]}`")
        self.names = list(shapes)
        for name, shape in shapes.items():
            self.register_buffer(name, torch.zeros(num_items + 1, *shape))
            self.register_buffer(f"{name}_mask", torch.zeros(num_items + 1, *shape[:-1], dtype=torch.bool))

    def load(self, name: str, vectors, mask) -> None:
        buf, m = getattr(self, name), getattr(self, f"{name}_mask")
        vectors, mask = torch.as_tensor(vectors, dtype=buf.dtype), torch.as_tensor(mask, dtype=torch.bool)
        if vectors.shape != buf.shape or mask.shape != m.shape:
            raise ValueError(f"features '{name}': got {tuple(vectors.shape)}, the model was built for "
                             f"{tuple(buf.shape)}; rebuild the model from the current feature tables")
        buf.copy_(vectors)
        m.copy_(mask)

    def pooled(self, name: str) -> torch.Tensor:
        """(N+1, D): the vector itself, or the mean of a stack's valid slots (zeros when none)."""
        x, m = getattr(self, name), getattr(self, f"{name}_mask")
        if x.dim() == 2:
            return x * m[:, None]
        w = m.to(x.dtype)[..., None]
        return (x * w).sum(1) / w.sum(1).clamp_min(1.0)
