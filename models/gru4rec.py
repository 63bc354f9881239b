"""GRU4Rec (Hidasi et al., ICLR 2016; the session-parallel CE variant of RecBole/Tan et al.)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.common import next_item_loss
from models.contract import Loss, ModelInputs, Positive, Prob


@dataclass
class GRU4RecConfig:
    embedding: Positive = 64  # item embedding width (also the output width)
    hidden: Positive = 128  # GRU state width
    layers: Positive = 1  # stacked GRU layers (the MMSR study uses 4)
    dropout: Prob = 0.3  # on the input embeddings
    loss: Loss | None = None  # ce | bce | bpr | sampled_softmax; None = train.loss


class GRU4RecEncoder(nn.Module):
    """Dropout -> multi-layer GRU -> linear back to the embedding width. (B, L, E) -> (B, L, E).

    Left padding runs through the GRU as zero inputs; the recurrence is causal by construction.
    """

    def __init__(self, embedding: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.gru = nn.GRU(embedding, hidden, layers, batch_first=True, bias=False)
        self.out = nn.Linear(hidden, embedding)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        x = self.drop(x.masked_fill(pad[..., None], 0.0))
        h, _ = self.gru(x)  # (B, L, H)
        return self.out(h)


class GRU4Rec(nn.Module):
    Config = GRU4RecConfig
    TINY = {"embedding": 16, "hidden": 24, "layers": 2}

    def __init__(self, cfg: GRU4RecConfig, inputs: ModelInputs):
        super().__init__()
        self.cfg, self.loss_kind = cfg, inputs.resolve_loss(cfg.loss)
        self.item_emb = nn.Embedding(inputs.num_items + 1, cfg.embedding, padding_idx=0)
        nn.init.xavier_normal_(self.item_emb.weight)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.encoder = GRU4RecEncoder(cfg.embedding, cfg.hidden, cfg.layers, cfg.dropout)

    def encode(self, seqs: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(self.item_emb(seqs), seqs == 0)

    def item_vectors(self) -> torch.Tensor:
        return self.item_emb.weight

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor, negatives, users=None) -> torch.Tensor:
        """Next-item loss over every target position (models.common.next_item_loss)."""
        return next_item_loss(self, inputs, targets, negatives, users, self.loss_kind)
