"""Popularity: every user gets the items ranked by how often they occur as training targets."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class PopConfig:
    pass  # nothing to tune


class Pop(nn.Module):
    """Scores = training frequency, counted by `prepare` from the training view (no gradients)."""

    Config = PopConfig

    def __init__(self, cfg: PopConfig, num_items: int):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("counts", torch.zeros(num_items + 1))

    def prepare(self, train, lr: float) -> None:
        """`train`: the training view's Sequences; every training interaction counts once."""
        self.counts.copy_(torch.as_tensor(train.counts(), dtype=self.counts.dtype))
        self.counts[0] = 0

    def encode(self, seqs: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        # (B, L, 1): a constant user vector; score = count
        return torch.ones(*seqs.shape, 1, device=self.counts.device)

    def item_vectors(self) -> torch.Tensor:
        return self.counts[:, None]  # (N+1, 1)
