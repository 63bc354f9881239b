"""MMSR: ID-agnostic multimodal sequential recommendation (../shared/papers/mmsr-empirical-study.md, §3).

Items are represented only by their content: the cached text and image features (§3.1-3.2; the
encoders ran once in the feature stages) -> a linear projection per modality to `hidden`, with an
optional trainable residual adapter standing in for the study's top-block fine-tuning (§4.2, §8.1)
-> a fusion module (§3.3) -> one item vector. A spine backbone (§3.5: SASRec, GRU4Rec or
NextItNet, reused from their model files) runs over the sequence of item vectors, and every item's
fused vector is also its output vector, so there is no table indexed by item id anywhere: an item
added after training is scored from its features alone.

Fusions (`fusion`), on each item's token sets (sentence stack / image stack, projected):
  coarse (on the masked-mean vector t, v of each modality): `sum` t+v; `concat` W[t;v];
    `gate` g⊙t+(1-g)⊙v with g = σ(W[t;v]); `film` (1+γ(v))⊙t + β(v);
  Coarse+ (`<coarse>_dnn`): the same followed by a three-layer DNN;
  `co_attention` (one layer): each modality's tokens through their own Transformer block (the study:
    "fed independently into different transformer blocks"), then each attends to the other's,
    then a merging block;
  `merge_attention` (`fusion_blocks` = n): [CLS; text tokens; image tokens] + modality-type
    embeddings through n bidirectional Transformer blocks, the CLS output.

Loss: the study's BCE with one sampled negative per position (§4.4) by default (`loss: bce`), full
cross-entropy with `loss: ce`. `adapter_lr` / `fusion_lr` give the projections+adapter and the
fusion their own learning rates (§8.2); the backbone uses train.lr.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.common import FULL_SOFTMAX, ItemFeatures, sequence_loss
from models.contract import (
    Loss,
    Modality,
    ModelInputs,
    NonNegative,
    Positive,
    PositiveFloat,
    Prob,
)
from models.gru4rec import GRU4RecEncoder
from models.nextitnet import NextItNetEncoder
from models.sasrec import Block, SASRecEncoder, check_layout

MODALITIES = ("text", "image")
COARSE = ("sum", "concat", "gate", "film")
FUSIONS = COARSE + tuple(f"{c}_dnn" for c in COARSE) + ("co_attention", "merge_attention")
BACKBONES = {"sasrec": 2, "gru4rec": 4, "nextitnet": 2}  # the study's depths (§3.5)


@dataclass
class MMSRConfig:
    hidden: Positive = 64  # item / sequence width (the study: 768)
    fusion: str = "merge_attention"  # one of FUSIONS
    fusion_blocks: Positive = 1  # merge-attention depth n (MergeAttn-n)
    backbone: Literal["sasrec", "gru4rec", "nextitnet"] = "sasrec"  # sasrec | gru4rec | nextitnet
    layers: NonNegative = 0  # backbone depth; 0 = the study's (SASRec 2, GRU4Rec 4, NextItNet 2 blocks)
    heads: Positive = 2
    inner: Positive = 256
    dropout: Prob = 0.2
    sasrec_variant: Literal["post_ln", "pre_ln"] = "pre_ln"  # the SASRec backbone's layout: pre_ln (the study rows' so far) | post_ln (RecBole's)
    sasrec_padding: Literal["blocked", "visible"] = "blocked"  # blocked | visible (models/sasrec.py)
    adapter: bool = True  # trainable residual adapter on the frozen features (top-block fine-tuning stand-in)
    adapter_dim: Positive = 128
    modalities: list[Modality] = field(default_factory=lambda: ["text", "image"])  # [text] = MMSR-T, [image] = MMSR-V
    loss: Loss | None = None  # bce: the study's (params.yaml), one random negative per position | ce | bpr; None = train.loss
    adapter_lr: PositiveFloat | None = None  # projections + adapters (§8.2 "Top"); null = train.lr
    fusion_lr: PositiveFloat | None = None  # fusion module; null = train.lr
    text_table: str = "text_sentences"  # token stack per item: sentence vectors | text_tokens (words) | text (pooled)
    image_table: str = "image"  # pooled vector per image (up to features.image.max_images) | image_grid (7x7 tokens)

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"mmsr.fusion={self.fusion!r}: use one of {list(FUSIONS)}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"mmsr.backbone={self.backbone!r}: use one of {list(BACKBONES)}")
        check_layout(self.sasrec_variant, self.sasrec_padding, "mmsr.sasrec_variant", "mmsr.sasrec_padding")
        if not self.modalities or set(self.modalities) - set(MODALITIES):
            raise ValueError(f"mmsr.modalities={self.modalities!r}: a non-empty subset of {MODALITIES}")
        if self.hidden % self.heads:
            raise ValueError(f"mmsr: hidden ({self.hidden}) must be divisible by heads ({self.heads})")


class Adapter(nn.Module):
    """x + W₂·GELU(W₁·LN(x)): a bottleneck adapter, zero-initialised output (starts as identity)."""

    def __init__(self, d: int, inner: int, dropout: float):
        super().__init__()
        self.norm, self.down, self.up, self.drop = nn.LayerNorm(d), nn.Linear(d, inner), nn.Linear(inner, d), \
            nn.Dropout(dropout)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.up(F.gelu(self.down(self.norm(x)))))


def dnn(d: int, dropout: float) -> nn.Sequential:
    """Coarse+: the three-layer DNN after a coarse fusion."""
    return nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Dropout(dropout), nn.Linear(d, d), nn.GELU(),
                         nn.Dropout(dropout), nn.Linear(d, d))


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    w = mask.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(-2) / w.sum(-2).clamp_min(1.0)


def bidirectional_mask(valid: torch.Tensor) -> torch.Tensor:
    """(n, S) valid slots -> (n, S, S) blocked keys for `sasrec.Block`: invalid keys, never self."""
    s = valid.shape[1]
    return ~valid[:, None, :] & ~torch.eye(s, dtype=torch.bool, device=valid.device)[None]


class CrossLayer(nn.Module):
    """Co-attention half: x attends to the other modality's tokens, then a feed-forward (pre-LN)."""

    def __init__(self, d: int, heads: int, inner: int, dropout: float):
        super().__init__()
        self.ln_q, self.ln_kv, self.ln_f = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.att = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(d, inner), nn.GELU(), nn.Dropout(dropout), nn.Linear(inner, d))

    def forward(self, x: torch.Tensor, other: torch.Tensor, other_valid: torch.Tensor) -> torch.Tensor:
        keep = other_valid.any(1)  # items without the other modality skip the cross step
        kv = self.ln_kv(other)
        y, _ = self.att(self.ln_q(x), kv, kv, key_padding_mask=~(other_valid | ~keep[:, None]), need_weights=False)
        x = x + y * keep[:, None, None]
        return x + self.ff(self.ln_f(x))


class Fusion(nn.Module):
    """Per-item token sets {modality: ((n, S, d), (n, S) valid)} -> (n, d) item vectors."""

    def __init__(self, cfg: MMSRConfig):
        super().__init__()
        d, kind = cfg.hidden, cfg.fusion
        self.kind, self.base = kind, kind.removesuffix("_dnn")
        self.both = len(cfg.modalities) == 2
        if self.base in COARSE and self.both:
            if self.base in ("concat", "gate"):
                self.w = nn.Linear(2 * d, d)
            if self.base == "film":
                self.gamma, self.beta = nn.Linear(d, d), nn.Linear(d, d)
        self.dnn = dnn(d, cfg.dropout) if kind.endswith("_dnn") else None
        if self.base in ("co_attention", "merge_attention"):
            self.cls = nn.Parameter(torch.randn(d) * 0.02)
            self.modality_emb = nn.Embedding(len(MODALITIES), d)
            n = cfg.fusion_blocks if self.base == "merge_attention" else 1
            self.blocks = nn.ModuleList(Block(d, cfg.heads, cfg.inner, cfg.dropout) for _ in range(n))
        if self.base == "co_attention":  # per-modality blocks before the merge (and cross-attention with two)
            self.own = nn.ModuleDict({m: Block(d, cfg.heads, cfg.inner, cfg.dropout) for m in cfg.modalities})
        if self.base == "co_attention" and self.both:
            self.cross = nn.ModuleDict({m: CrossLayer(d, cfg.heads, cfg.inner, cfg.dropout) for m in MODALITIES})

    def forward(self, tokens: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        if self.base in COARSE:
            pooled = [masked_mean(x, v) for x, v in tokens.values()]
            if not self.both:
                e = pooled[0]
            else:
                t, v = pooled
                if self.base == "sum":
                    e = t + v
                elif self.base == "concat":
                    e = self.w(torch.cat([t, v], -1))
                elif self.base == "gate":
                    g = torch.sigmoid(self.w(torch.cat([t, v], -1)))
                    e = g * t + (1 - g) * v
                else:  # film: the image modulates the text features
                    e = (1 + self.gamma(v)) * t + self.beta(v)
            return self.dnn(e) if self.dnn is not None else e
        if self.base == "co_attention":
            tokens = {m: (self.own[m](x, bidirectional_mask(v)), v) for m, (x, v) in tokens.items()}
        if self.base == "co_attention" and self.both:
            (t, tv), (v, vv) = tokens["text"], tokens["image"]
            tokens = {"text": (self.cross["text"](t, v, vv), tv), "image": (self.cross["image"](v, t, tv), vv)}
        xs = [x + self.modality_emb.weight[MODALITIES.index(m)] for m, (x, _) in tokens.items()]
        valid = [v for _, v in tokens.values()]
        n = xs[0].shape[0]
        x = torch.cat([self.cls.expand(n, 1, -1), *xs], 1)  # merging block over [CLS; text; image]
        ok = torch.cat([valid[0].new_ones(n, 1), *valid], 1)
        blocked = bidirectional_mask(ok)
        for block in self.blocks:
            x = block(x, blocked)
        # The [CLS] state is the item vector, with no final LayerNorm: a LayerNorm'd item vector dotted
        # with SASRec's LayerNorm'd state gives logits of order d at initialisation; on ML-100K that
        # saturated BCE (epoch-1 loss 8.1, chance 1.39) and MMSR stayed at popularity level.
        return x[:, 0]


class MMSR(nn.Module):
    Config = MMSRConfig
    FEATURES = MODALITIES
    TINY = {"hidden": 16, "heads": 2, "inner": 32, "adapter_dim": 8}

    def __init__(self, cfg: MMSRConfig, inputs: ModelInputs):
        super().__init__()
        self.cfg, self.loss_kind = cfg, inputs.resolve_loss(cfg.loss)
        if self.loss_kind == "sampled_softmax":
            raise ValueError("mmsr.loss='sampled_softmax': use ce, bce or bpr (MMSR fuses only the items a step "
                             "needs; shared-negative softmax is not wired in)")
        self.feats = ItemFeatures(inputs.features, inputs.num_items)
        self._standardized: dict[str, tuple] = {}  # modality -> (key, standardized table); see `standardized`
        d = cfg.hidden
        dims = {m: inputs.features[m].vectors.shape[-1] for m in cfg.modalities}
        self.proj = nn.ModuleDict({m: nn.Linear(dims[m], d) for m in cfg.modalities})
        for m in cfg.modalities:
            mu, sd = self.feature_statistics(m)
            self.register_buffer(f"mu_{m}", mu)
            self.register_buffer(f"sd_{m}", sd)
        self.adapter = nn.ModuleDict({m: Adapter(d, cfg.adapter_dim, cfg.dropout) for m in cfg.modalities}) \
            if cfg.adapter else None
        self.fusion = Fusion(cfg)
        self.in_norm = nn.LayerNorm(d)
        depth = cfg.layers or BACKBONES[cfg.backbone]
        if cfg.backbone == "sasrec":
            self.backbone = SASRecEncoder(d, depth, cfg.heads, cfg.inner, cfg.dropout, inputs.max_len,
                                          cfg.sasrec_variant == "post_ln", attend_padding=cfg.sasrec_padding == "visible")
        elif cfg.backbone == "gru4rec":
            self.backbone = GRU4RecEncoder(d, 2 * d, depth, cfg.dropout)
        else:
            self.backbone = NextItNetEncoder(d, 3, [1, 4], depth, cfg.dropout)

    def standardized(self, m: str) -> torch.Tensor:
        """(N+1, ..., D): the modality's table minus its frozen mean, over its std, computed once and
        kept until the table or its statistics change (a state loaded from a checkpoint, `.to()`). The
        values are those `(x[ids] - mu) / sd` gives per step (the same elementwise operations), so
        caching changes no number; with a 49-token image grid it saves ~1 s of a ~8 s step."""
        tensors = (getattr(self.feats, m), getattr(self, f"mu_{m}"), getattr(self, f"sd_{m}"))
        key = tuple((t.data_ptr(), t._version) for t in tensors)
        cached = self._standardized.get(m)
        if cached is None or cached[0] != key:
            with torch.no_grad():  # the sources are kept in the entry, so no new tensor can reuse their address
                cached = self._standardized[m] = (key, (tensors[0] - tensors[1]) / tensors[2], tensors)
        return cached[1]

    def tokens(self, ids: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Item ids (n,) -> {modality: (n, S, d) projected (+adapted) tokens, (n, S) valid}."""
        out = {}
        n = getattr(self.feats, f"{self.cfg.modalities[0]}_mask").shape[0]
        # a BCE step on a small catalogue needs nearly every item: the whole table, without a gather's copy
        whole = len(ids) == n and torch.equal(ids, torch.arange(n, device=ids.device))
        for m in self.cfg.modalities:
            x, valid = self.standardized(m), getattr(self.feats, f"{m}_mask")
            x, valid = (x, valid) if whole else (x[ids], valid[ids])
            if x.dim() == 2:  # a pooled vector is one token
                x, valid = x.unsqueeze(1), valid.unsqueeze(1)
            h = self.proj[m](x)
            out[m] = (self.adapter[m](h) if self.adapter is not None else h, valid)
        return out

    def feature_statistics(self, m: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Modality m's per-dimension mean and std over the catalogue's valid vectors (0 and 1 when fewer
        than two), frozen as buffers: kept in the checkpoint, so items added later are standardised the
        same way. Frozen encoder outputs share a large common direction (MiniLM sentences: mean cosine
        ≈ 0.6) that this removes before the projection (UniSRec-style whitening without its
        parameters); without it MMSR stayed at chance on the demo."""
        x, valid = getattr(self.feats, m), getattr(self.feats, f"{m}_mask")
        v = x[valid]
        if len(v) < 2:
            return torch.zeros(x.shape[-1]), torch.ones(x.shape[-1])
        return v.mean(0), v.std(0).clamp_min(1e-6)

    def item_vectors_for(self, ids: torch.Tensor) -> torch.Tensor:
        """(n,) item ids -> (n, d) fused content vectors; id 0 (padding) -> zeros."""
        e = self.fusion(self.tokens(ids))
        return e * (ids > 0).unsqueeze(-1)

    def item_vectors(self) -> torch.Tensor:
        """(N+1, d): every item's fused vector, in chunks (ranking computes the whole catalogue)."""
        first = self.cfg.modalities[0]
        ids = torch.arange(getattr(self.feats, f"{first}_mask").shape[0], device=self.proj[first].weight.device)
        return torch.cat([self.item_vectors_for(c) for c in ids.split(4096)])

    def encode(self, seqs: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        ids, inverse = torch.unique(seqs, return_inverse=True)  # fuse each distinct item once per batch
        return self.run_backbone(self.item_vectors_for(ids)[inverse], seqs)

    def run_backbone(self, x: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        """(B, L, d) already-fused item vectors -> states."""
        return self.backbone(self.in_norm(x), seqs == 0)

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor, negatives, users=None) -> torch.Tensor:
        """The study's BCE with sampled negatives (or BPR on them, or full CE). Every item a step needs
        (inputs, targets, negatives) is fused once and the backbone runs on the gathered rows."""
        if self.loss_kind in FULL_SOFTMAX:  # full softmax: every item is needed anyway
            vecs = self.item_vectors()
            return sequence_loss(self.run_backbone(vecs[inputs], inputs), targets, vecs, self.loss_kind)
        neg = negatives()
        ids, inv = torch.unique(torch.cat([targets.new_zeros(1), inputs.flatten(), targets.flatten(), neg.flatten()]),
                                return_inverse=True)
        n_x, n_y = inputs.numel(), targets.numel()
        vecs = self.item_vectors_for(ids)
        h = self.run_backbone(vecs[inv[1:1 + n_x].view_as(inputs)], inputs)
        return sequence_loss(h, inv[1 + n_x:1 + n_x + n_y].view_as(targets), vecs, self.loss_kind,
                             inv[1 + n_x + n_y:].view_as(neg))

    def param_groups(self, lr: float) -> list[dict]:
        """The optimizer groups (§8.2): the adapter (projections + adapters) and the fusion at their own
        rates, the rest at lr."""
        adapter = [p for n, p in self.named_parameters() if n.startswith(("proj.", "adapter."))]
        fusion = list(self.fusion.parameters())
        taken = {id(p) for p in adapter + fusion}
        rest = [p for p in self.parameters() if id(p) not in taken]
        return [{"params": adapter, "lr": self.cfg.adapter_lr or lr}, {"params": fusion, "lr": self.cfg.fusion_lr or lr},
                {"params": rest, "lr": lr}]
