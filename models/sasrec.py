"""SASRec (Kang & McAuley, ICDM 2018): a causal Transformer over the item sequence.

`SASRecEncoder` is the backbone on already-embedded inputs so content models (MMSR) reuse it;
`SASRec` adds the ID embedding table and shares it for output scoring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.common import causal_padding_mask, fast_dropout


@dataclass
class SASRecConfig:
    hidden: int = 64  # embedding / model width
    layers: int = 2  # Transformer blocks
    heads: int = 2  # attention heads
    inner: int = 256  # feed-forward width
    dropout: float = 0.3  # embedding, attention and feed-forward dropout
    max_len: int = 50  # input window; set from preprocess.max_len by the trainer


class Block(nn.Module):
    """Pre-LN Transformer block: x + Attn(LN(x)), then x + FFN(LN(x)), GELU, dropout on the
    attention weights and after each sub-layer."""

    def __init__(self, hidden: int, heads: int, inner: int, dropout: float):
        super().__init__()
        self.heads, self.p = heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.ff1, self.ff2 = nn.Linear(hidden, inner), nn.Linear(inner, hidden)

    def forward(self, x: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-1, -2)) * (d // self.heads) ** -0.5  # (B, H, L, L)
        att = fast_dropout(att.masked_fill(blocked[:, None], float("-inf")).softmax(-1), self.p, self.training)
        y = (att @ v).transpose(1, 2).reshape(b, length, d)  # (B, L, D)
        x = x + fast_dropout(self.proj(y), self.p, self.training)
        h = fast_dropout(F.gelu(self.ff1(self.ln2(x))), self.p, self.training)
        return x + fast_dropout(self.ff2(h), self.p, self.training)


class SASRecEncoder(nn.Module):
    """Positional embedding + pre-LN causal Transformer. (B, L, D) -> (B, L, D)."""

    def __init__(self, hidden: int, layers: int, heads: int, inner: int, dropout: float, max_len: int):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"sasrec: hidden ({hidden}) must be divisible by heads ({heads})")
        self.p = dropout
        self.pos = nn.Embedding(max_len, hidden)
        self.blocks = nn.ModuleList(Block(hidden, heads, inner, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        # Positions count back from the most recent item so left padding does not shift them.
        pos = torch.arange(length - 1, -1, -1, device=x.device).clamp_max(self.pos.num_embeddings - 1)
        x = fast_dropout(x + self.pos(pos)[None], self.p, self.training)  # (B, L, D)
        blocked = causal_padding_mask(pad)  # (B, L, L)
        for block in self.blocks:
            x = block(x, blocked)
        return self.norm(x)


class SASRec(nn.Module):
    Config = SASRecConfig

    def __init__(self, cfg: SASRecConfig, num_items: int):
        super().__init__()
        self.cfg = cfg
        self.item_emb = nn.Embedding(num_items + 1, cfg.hidden, padding_idx=0)
        nn.init.normal_(self.item_emb.weight, std=cfg.hidden**-0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.encoder = SASRecEncoder(cfg.hidden, cfg.layers, cfg.heads, cfg.inner, cfg.dropout, cfg.max_len)

    def encode(self, seqs: torch.Tensor) -> torch.Tensor:
        """seqs (B, L) left-padded item ids -> (B, L, D) states; state t predicts item t+1."""
        x = self.item_emb(seqs) * math.sqrt(self.cfg.hidden)
        return self.encoder(x, seqs == 0)

    def item_vectors(self) -> torch.Tensor:
        return self.item_emb.weight  # (N+1, D), tied with the input embedding
