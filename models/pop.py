"""Popularity: every user gets the items ranked by how often they occur as training targets."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.contract import ModelInputs


@dataclass
class PopConfig:
    pass  # nothing to tune


class Pop(nn.Module):
    """Scores = training frequency: the training view's item counts (`inputs.item_counts`), no gradients."""

    Config = PopConfig

    def __init__(self, cfg: PopConfig, inputs: ModelInputs):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("counts", torch.zeros(inputs.num_items + 1))
        if inputs.item_counts is not None:  # every training interaction counts once (None: a checkpoint fills it)
            self.counts.copy_(torch.as_tensor(inputs.item_counts, dtype=self.counts.dtype))
            self.counts[0] = 0

    def encode(self, seqs: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        # (B, L, 1): a constant user vector; score = count
        return torch.ones(*seqs.shape, 1, device=self.counts.device)

    def item_vectors(self) -> torch.Tensor:
        return self.counts[:, None]  # (N+1, 1)
