"""NextItNet (Yuan et al., WSDM 2019): stacked dilated causal 1-D convolutions with residuals."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.common import next_item_loss
from models.contract import Loss, ModelInputs, Positive, Prob


@dataclass
class NextItNetConfig:
    embedding: Positive = 64  # channel width
    kernel: Positive = 3  # convolution width
    dilations: list[Positive] = field(default_factory=lambda: [1, 4])  # one residual block per entry ...
    blocks: Positive = 2  # ... repeated this many times (the MMSR study uses 2 blocks)
    dropout: Prob = 0.2
    loss: Loss | None = None  # ce | bce | bpr | sampled_softmax; None = train.loss


class ResidualBlock(nn.Module):
    """Paper's block (b): two dilated causal convs (d, 2d), each LayerNorm + ReLU, plus the input."""

    def __init__(self, channels: int, kernel: int, dilation: int):
        super().__init__()
        self.kernel, self.dilation = kernel, dilation
        self.conv1 = nn.Conv1d(channels, channels, kernel, dilation=dilation)
        self.conv2 = nn.Conv1d(channels, channels, kernel, dilation=2 * dilation)
        self.ln1, self.ln2 = nn.LayerNorm(channels), nn.LayerNorm(channels)

    def causal_conv(self, conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
        pad = (self.kernel - 1) * conv.dilation[0]
        return conv(F.pad(x.transpose(1, 2), (pad, 0))).transpose(1, 2)  # (B, L, C), left-padded: causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.ln1(self.causal_conv(self.conv1, x)))
        h = F.relu(self.ln2(self.causal_conv(self.conv2, h)))
        return x + h


class NextItNetEncoder(nn.Module):
    """(B, L, C) -> (B, L, C); output t depends only on inputs <= t."""

    def __init__(self, embedding: int, kernel: int, dilations: list[int], blocks: int, dropout: float):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*[ResidualBlock(embedding, kernel, d) for _ in range(blocks) for d in dilations])

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.drop(x.masked_fill(pad[..., None], 0.0)))


class NextItNet(nn.Module):
    Config = NextItNetConfig
    TINY = {"embedding": 16, "dilations": [1, 2], "blocks": 2}

    def __init__(self, cfg: NextItNetConfig, inputs: ModelInputs):
        super().__init__()
        self.cfg, self.loss_kind = cfg, inputs.resolve_loss(cfg.loss)
        self.item_emb = nn.Embedding(inputs.num_items + 1, cfg.embedding, padding_idx=0)
        nn.init.normal_(self.item_emb.weight, std=cfg.embedding**-0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.encoder = NextItNetEncoder(cfg.embedding, cfg.kernel, cfg.dilations, cfg.blocks, cfg.dropout)

    def encode(self, seqs: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(self.item_emb(seqs), seqs == 0)

    def item_vectors(self) -> torch.Tensor:
        return self.item_emb.weight

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor, negatives, users=None) -> torch.Tensor:
        """Next-item loss over every target position (models.common.next_item_loss)."""
        return next_item_loss(self, inputs, targets, negatives, users, self.loss_kind)
