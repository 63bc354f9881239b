"""Tensor helpers every sequence model shares: the training losses and the attention mask.

Conventions: item id 0 is padding; sequences are left-padded (the most recent item is last);
`hidden` is (B, L, D) and `item_vecs` is (N+1, D) with row 0 for padding.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn.functional as F

LOSSES = ("ce", "bce", "bpr", "sampled_softmax", "ce_chunked")
FULL_SOFTMAX = ("ce", "ce_chunked")  # the exact softmax over every item (ce_chunked without the logit matrix)
CHUNK_FLOATS = 1 << 24  # ce_chunked: logits held at once (positions x items in a block), 64 MB in float32


class ChunkedCrossEntropy(torch.autograd.Function):
    """Exact mean softmax cross-entropy of h @ W.T over items 1..N (row 0 = padding, never a class)
    without the (P, N+1) logit matrix: the items go in blocks, the log-sum-exp is carried across
    blocks (running max and rescaled sum), and the backward recomputes each block's softmax from the
    saved log-sum-exp — O(P x block) memory instead of O(P x N), equal to `F.cross_entropy`
    (tested: values and gradients)."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, w: torch.Tensor, t: torch.Tensor, block: int) -> torch.Tensor:
        hf, wf = h.float(), w.float()
        m = torch.full((len(h),), float("-inf"), device=h.device)
        s = torch.zeros(len(h), device=h.device)
        for a in range(1, len(w), block):
            z = hf @ wf[a:a + block].T  # (P, block)
            m_new = torch.maximum(m, z.max(1).values)
            s = s * torch.exp(m - m_new) + torch.exp(z - m_new[:, None]).sum(1)
            m = m_new
        lse = m + torch.log(s)
        ctx.save_for_backward(h, w, t, lse)
        ctx.block = block
        return (lse - (hf * wf[t]).sum(1)).mean()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        h, w, t, lse = ctx.saved_tensors
        hf, wf = h.float(), w.float()
        scale = grad / len(h)
        gh, gw = torch.zeros_like(hf), torch.zeros_like(wf)
        for a in range(1, len(w), ctx.block):
            p = torch.exp(hf @ wf[a:a + ctx.block].T - lse[:, None]) * scale  # (P, block): softmax x dL/dloss
            gh += p @ wf[a:a + ctx.block]
            gw[a:a + ctx.block] = p.T @ hf
        gh -= wf[t] * scale  # the target's logit enters with -1
        gw.index_add_(0, t, -hf * scale)
        return gh.to(h.dtype), gw.to(w.dtype), None, None


def chunked_cross_entropy(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor, block: int | None = None) -> torch.Tensor:
    """`ChunkedCrossEntropy` with a block of items sized so a block's logits hold CHUNK_FLOATS."""
    return ChunkedCrossEntropy.apply(h, w, t, block or max(1024, CHUNK_FLOATS // max(len(h), 1)))
SAMPLED = ("bce", "bpr", "sampled_softmax")  # the losses that read the training loop's negatives


def sequence_loss(hidden: torch.Tensor, targets: torch.Tensor, item_vecs, kind: str = "ce",
                  negatives: torch.Tensor | None = None, log_q: torch.Tensor | None = None) -> torch.Tensor:
    """Next-item loss over every non-padding target position.

    Args:
        hidden: (B, L, D) sequence states; position t predicts targets[:, t].
        targets: (B, L) item ids, 0 where there is no target.
        item_vecs: (N+1, D) output item vectors, or for the sampled kinds a function ids -> their
            vectors (an embedding lookup, so the table's gradient can be sparse: only those rows).
        kind: "ce" — full softmax cross-entropy over all N items (padding excluded); "ce_chunked" —
            the same loss in item blocks, never holding the (P, N+1) logits (`ChunkedCrossEntropy`);
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
    if kind in FULL_SOFTMAX and callable(item_vecs):
        raise ValueError(f"the full softmax ({kind}) needs the whole item matrix, not a row lookup")
    if kind == "ce_chunked":
        return chunked_cross_entropy(h, item_vecs, t)
    if kind == "ce":
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


def next_item_loss(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor, negatives,
                   users: torch.Tensor | None = None, kind: str = "ce",
                   rows: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """The loss of a model that scores by `encode(inputs, users) · item_vectors()`, of `kind` (LOSSES).

    `negatives()` returns the batch's sampled negative ids (B, L, S), `negatives.shared()` ids (S,)
    shared by the batch (sampled softmax); each is called only by the kind that needs it, so a
    full-softmax model never draws from the training loop's random stream. `users` (B,) are the
    windows' 0-based user indices, for models with user embeddings. `rows` (ids -> vectors, an
    embedding lookup) lets a sampled loss read only the rows it scores, so the item table can take
    sparse gradients (train.sparse_embeddings); without it the whole item_vectors() is used."""
    sampled = kind in SAMPLED
    hidden = model.encode(inputs, users)  # before item_vectors(): the order the random streams are drawn in
    vecs = rows if sampled and rows is not None else model.item_vectors()
    return sequence_loss(hidden, targets, vecs, kind, draw(negatives, kind), getattr(negatives, "log_q", None))


def draw(negatives, kind: str) -> torch.Tensor | None:
    """The negatives `kind` reads: per target for bce / bpr, shared by the batch for sampled_softmax,
    none for ce (then nothing is drawn)."""
    if kind not in SAMPLED:
        return None
    return negatives.shared() if kind == "sampled_softmax" else negatives()


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

    `tables` maps a modality ("text", "image") to its `contract.FeatureTable` (vectors (N+1, D) or
    (N+1, S, D) and mask (N+1,) or (N+1, S); row 0 = padding); each becomes a float buffer
    `<name>` and a bool buffer `<name>_mask`. `pooled(name)` averages a stack over its valid slots.
    """

    def __init__(self, tables: Mapping[str, tuple[torch.Tensor, torch.Tensor]], num_items: int):
        super().__init__()
        if not tables:
            raise ValueError("this model reads item features, but no feature tables were given; build it through "
                             "pipeline.builder (it loads data/features) or pass inputs.features")
        self.names = list(tables)
        for name, (vectors, mask) in tables.items():
            vectors, mask = torch.as_tensor(vectors, dtype=torch.float32), torch.as_tensor(mask, dtype=torch.bool)
            if vectors.shape[0] != num_items + 1 or mask.shape != vectors.shape[:-1]:
                raise ValueError(f"features '{name}': vectors {tuple(vectors.shape)} / mask {tuple(mask.shape)} do not "
                                 f"fit a catalogue of {num_items} items (rows 0..{num_items})")
            self.register_buffer(name, vectors.clone())
            self.register_buffer(f"{name}_mask", mask.clone())

    def pooled(self, name: str) -> torch.Tensor:
        """(N+1, D): the vector itself, or the mean of a stack's valid slots (zeros when none)."""
        x, m = getattr(self, name), getattr(self, f"{name}_mask")
        if x.dim() == 2:
            return x * m[:, None]
        w = m.to(x.dtype)[..., None]
        return (x * w).sum(1) / w.sum(1).clamp_min(1.0)
