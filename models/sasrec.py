"""SASRec (Kang & McAuley, ICDM 2018): a causal Transformer over the item sequence.

`SASRecEncoder` is the backbone on already-embedded inputs so content models (MMSR) reuse it;
`SASRec` adds the ID embedding table and shares it for output scoring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from models.common import causal_padding_mask


@dataclass
class SASRecConfig:
    hidden: int = 64  # embedding / model width
    layers: int = 2  # Transformer blocks
    heads: int = 2  # attention heads
    inner: int = 256  # feed-forward width
    dropout: float = 0.3  # embedding, attention and feed-forward dropout
    max_len: int = 50  # input window; set from preprocess.max_len by the trainer


class SASRecEncoder(nn.Module):
    """Positional embedding + pre-LN causal Transformer. (B, L, D) -> (B, L, D)."""

    def __init__(self, hidden: int, layers: int, heads: int, inner: int, dropout: float, max_len: int):
        super().__init__()
        self.heads = heads
        self.pos = nn.Embedding(max_len, hidden)
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(hidden, heads, inner, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        # Positions count back from the most recent item so left padding does not shift them.
        pos = torch.arange(length - 1, -1, -1, device=x.device).clamp_max(self.pos.num_embeddings - 1)
        x = self.drop(x + self.pos(pos)[None])  # (B, L, D)
        x = self.blocks(x, mask=causal_padding_mask(pad, self.heads))
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
