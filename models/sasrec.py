"""SASRec (Kang & McAuley, ICDM 2018): a causal Transformer over the item sequence.

`SASRecEncoder` is the backbone on already-embedded inputs so content models (MMSR) reuse it;
`SASRec` adds the ID embedding table and shares it for output scoring.

`variant: post_ln` (default) is the original/RecBole layout: LayerNorm after each residual, a
LayerNorm on the embedded input, no scaling, every Linear and Embedding initialised N(0, 0.02)
(RecBole's `initializer_range`). `variant: pre_ln` is a pre-LN Transformer with a final LayerNorm,
embeddings scaled by sqrt(hidden) and initialised N(0, 1/hidden). `padding: visible` (default)
lets real positions attend to the zeroed left padding, as the original and RecBole do; `blocked`
masks it. The defaults were chosen from 3 seeds per option on ML-100K (docs/models/sasrec.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.common import causal_padding_mask, fast_dropout, next_item_loss
from models.contract import Loss, ModelInputs, Positive, Prob

VARIANTS, PADDINGS = ("pre_ln", "post_ln"), ("blocked", "visible")


def check_layout(variant: str, padding: str, variant_key: str, padding_key: str) -> None:
    """The Transformer layout options (shared by every model that runs this encoder)."""
    if variant not in VARIANTS:
        raise ValueError(f"{variant_key}={variant!r}: use one of {VARIANTS}")
    if padding not in PADDINGS:
        raise ValueError(f"{padding_key}={padding!r}: use one of {PADDINGS}")


@dataclass
class SASRecConfig:
    hidden: Positive = 64  # embedding / model width
    layers: Positive = 2  # Transformer blocks
    heads: Positive = 2  # attention heads
    inner: Positive = 256  # feed-forward width
    dropout: Prob = 0.3  # embedding, attention and feed-forward dropout
    loss: Loss | None = None  # ce | bce | bpr | sampled_softmax; None = train.loss
    variant: Literal["post_ln", "pre_ln"] = "post_ln"  # post_ln (RecBole's layout and init) | pre_ln
    padding: Literal["blocked", "visible"] = "visible"  # blocked: real positions never attend to left padding | visible: padding rows are
    #   zeroed and take part in the attention softmax as keys (pmixer's PyTorch SASRec)

    def __post_init__(self) -> None:
        check_layout(self.variant, self.padding, "sasrec.variant", "sasrec.padding")


class Block(nn.Module):
    """Transformer block, GELU, dropout on the attention weights and after each sub-layer.
    pre-LN: x + Attn(LN(x)), then x + FFN(LN(x)); post-LN: LN(x + Attn(x)), then LN(x + FFN(x))."""

    def __init__(self, hidden: int, heads: int, inner: int, dropout: float, post_ln: bool = False):
        super().__init__()
        self.heads, self.p, self.post = heads, dropout, post_ln
        self.ln1, self.ln2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.ff1, self.ff2 = nn.Linear(hidden, inner), nn.Linear(inner, hidden)

    def forward(self, x: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        inp = x if self.post else self.ln1(x)
        q, k, v = self.qkv(inp).view(b, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-1, -2)) * (d // self.heads) ** -0.5  # (B, H, L, L)
        att = fast_dropout(att.masked_fill(blocked[:, None], float("-inf")).softmax(-1), self.p, self.training)
        y = (att @ v).transpose(1, 2).reshape(b, length, d)  # (B, L, D)
        x = x + fast_dropout(self.proj(y), self.p, self.training)
        if self.post:
            x = self.ln1(x)
        h = fast_dropout(F.gelu(self.ff1(x if self.post else self.ln2(x))), self.p, self.training)
        x = x + fast_dropout(self.ff2(h), self.p, self.training)
        return self.ln2(x) if self.post else x


class SASRecEncoder(nn.Module):
    """Positional embedding + causal Transformer (pre- or post-LN). (B, L, D) -> (B, L, D).

    `attend_padding`: padding rows are zeroed and stay visible as attention keys (they only shift the
    softmax), instead of being masked out. `causal=False` lets every position see every real one
    (BERT4Rec)."""

    def __init__(self, hidden: int, layers: int, heads: int, inner: int, dropout: float, max_len: int,
                 post_ln: bool = False, attend_padding: bool = False, causal: bool = True):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"sasrec: hidden ({hidden}) must be divisible by heads ({heads})")
        self.p, self.post, self.attend_padding, self.causal = dropout, post_ln, attend_padding, causal
        self.pos = nn.Embedding(max_len, hidden)
        self.blocks = nn.ModuleList(Block(hidden, heads, inner, dropout, post_ln) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden)  # pre-LN: after the last block; post-LN: on the embedded input

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        # Positions count back from the most recent item so left padding does not shift them.
        pos = torch.arange(length - 1, -1, -1, device=x.device).clamp_max(self.pos.num_embeddings - 1)
        x = x + self.pos(pos)[None]
        x = fast_dropout(self.norm(x) if self.post else x, self.p, self.training)  # (B, L, D)
        keep = (~pad)[..., None].to(x.dtype) if self.attend_padding else None
        blocked = causal_padding_mask(torch.zeros_like(pad) if self.attend_padding else pad, self.causal)  # (B, L, L)
        for block in self.blocks:
            x = block(x if keep is None else x * keep, blocked)  # visible padding: zero rows, as in pmixer's
        return x if self.post else self.norm(x)


class SASRec(nn.Module):
    Config = SASRecConfig
    TINY = {"hidden": 16, "heads": 2, "inner": 32, "layers": 2}

    def __init__(self, cfg: SASRecConfig, inputs: ModelInputs):
        super().__init__()
        self.cfg, self.loss_kind = cfg, inputs.resolve_loss(cfg.loss)
        self.item_emb = nn.Embedding(inputs.num_items + 1, cfg.hidden, padding_idx=0)
        post = cfg.variant == "post_ln"
        self.encoder = SASRecEncoder(cfg.hidden, cfg.layers, cfg.heads, cfg.inner, cfg.dropout, inputs.max_len, post,
                                     attend_padding=cfg.padding == "visible")
        if post:
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(m.weight, std=0.02)
                if isinstance(m, nn.Linear):
                    nn.init.zeros_(m.bias)
        else:
            nn.init.normal_(self.item_emb.weight, std=cfg.hidden**-0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.scale = 1.0 if post else math.sqrt(cfg.hidden)

    def encode(self, seqs: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        """seqs (B, L) left-padded item ids -> (B, L, D) states; state t predicts item t+1."""
        x = self.item_emb(seqs) * self.scale
        return self.encoder(x, seqs == 0)

    def item_vectors(self) -> torch.Tensor:
        return self.item_emb.weight  # (N+1, D), tied with the input embedding

    def item_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """item_vectors()[ids] as an embedding lookup (sparse-gradient capable)."""
        return self.item_emb(ids)

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor, negatives, users=None) -> torch.Tensor:
        """Next-item loss over every target position (models.common.next_item_loss)."""
        return next_item_loss(self, inputs, targets, negatives, users, self.loss_kind, self.item_rows)
