"""Popularity: every user gets the items ranked by how often they occur as training targets."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class PopConfig:
    pass  # nothing to tune


class Pop(nn.Module):
    """Scores = training frequency. `fit_counts` replaces gradient training."""

    Config = PopConfig

    def __init__(self, cfg: PopConfig, num_items: int):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("counts", torch.zeros(num_items + 1))

    def fit_counts(self, items: torch.Tensor) -> None:
        """items: 1-D tensor of every training interaction's item id."""
        self.counts.zero_().index_add_(0, items.long(), torch.ones(items.numel(), device=self.counts.device))
        self.counts[0] = 0

    def encode(self, seqs: torch.Tensor) -> torch.Tensor:
        # (B, L, 1): a constant user vector; score = count
        return torch.ones(*seqs.shape, 1, device=self.counts.device)

    def item_vectors(self) -> torch.Tensor:
        return self.counts[:, None]  # (N+1, 1)
