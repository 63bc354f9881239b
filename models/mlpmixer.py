"""MLPMixer for sequential recommendation: the ID-only baseline of the M2SR paper ("MLPMixer").

A Mixer block (Tolstikhin et al. 2021) alternates a token-mixing MLP over the sequence axis and a
channel-mixing MLP over features, each pre-LayerNorm with a residual (M2SR eq. 1), GELU. Token
mixing here is **causal**: both token-mixing weight matrices are lower-triangular (hidden size =
max_len), so position t sees only items up to t and every position can be trained to predict its
next item, like SASRec. Padded positions are zeroed at the input, in the token-mixing hidden layer
and at each block's output, so real positions never read padding. Items sit right-aligned, so the
most recent item always uses the last position's weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.common import fast_dropout, next_item_loss
from models.contract import Loss, ModelInputs, Positive, Prob


@dataclass
class MLPMixerConfig:
    hidden: Positive = 64  # item embedding / channel width
    blocks: Positive = 2  # Mixer blocks
    channel_expansion: Positive = 4  # channel-mixing hidden = hidden * this
    dropout: Prob = 0.2
    loss: Loss | None = None  # ce | bce | bpr | sampled_softmax; None = train.loss


class CausalTokenMix(nn.Module):
    """x (B, L, D) -> (B, L, D): per channel, a 2-layer MLP over positions with lower-triangular weights."""

    def __init__(self, length: int):
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(length, length))
        self.w2 = nn.Parameter(torch.empty(length, length))
        self.b1, self.b2 = nn.Parameter(torch.zeros(length, 1)), nn.Parameter(torch.zeros(length, 1))
        for w in (self.w1, self.w2):
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        self.register_buffer("tril", torch.ones(length, length).tril(), persistent=False)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        w1, w2 = (self.w1 * self.tril)[-length:, -length:], (self.w2 * self.tril)[-length:, -length:]
        h = F.gelu(torch.einsum("ij,bjd->bid", w1, x) + self.b1[-length:]) * valid
        return torch.einsum("ij,bjd->bid", w2, h) + self.b2[-length:]


class MixerBlock(nn.Module):
    """x + TokenMix(LN(x)), then x + ChannelMix(LN(x)) (M2SR eq. 1), padding kept at zero."""

    def __init__(self, hidden: int, length: int, expansion: int, dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.token = CausalTokenMix(length)
        self.ch1, self.ch2 = nn.Linear(hidden, hidden * expansion), nn.Linear(hidden * expansion, hidden)
        self.p = dropout

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = x + fast_dropout(self.token(self.ln1(x) * valid, valid), self.p, self.training)
        x = x + fast_dropout(self.ch2(F.gelu(self.ch1(self.ln2(x)))), self.p, self.training)
        return x * valid


class MixerStack(nn.Module):
    """`blocks` Mixer blocks + a final LayerNorm. (B, L, D), pad (B, L) -> (B, L, D)."""

    def __init__(self, hidden: int, length: int, blocks: int, expansion: int, dropout: float):
        super().__init__()
        self.blocks = nn.ModuleList(MixerBlock(hidden, length, expansion, dropout) for _ in range(blocks))
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        valid = (~pad)[..., None].to(x.dtype)
        x = x * valid
        for block in self.blocks:
            x = block(x, valid)
        return self.norm(x)


class MLPMixer(nn.Module):
    Config = MLPMixerConfig
    TINY = {"hidden": 16, "blocks": 2}

    def __init__(self, cfg: MLPMixerConfig, inputs: ModelInputs):
        super().__init__()
        self.cfg, self.loss_kind = cfg, inputs.resolve_loss(cfg.loss)
        self.item_emb = nn.Embedding(inputs.num_items + 1, cfg.hidden, padding_idx=0)
        nn.init.normal_(self.item_emb.weight, std=cfg.hidden**-0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.mixer = MixerStack(cfg.hidden, inputs.max_len, cfg.blocks, cfg.channel_expansion, cfg.dropout)

    def encode(self, seqs: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        x = fast_dropout(self.item_emb(seqs) * math.sqrt(self.cfg.hidden), self.cfg.dropout, self.training)
        return self.mixer(x, seqs == 0)

    def item_vectors(self) -> torch.Tensor:
        return self.item_emb.weight

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor, negatives, users=None) -> torch.Tensor:
        """Next-item loss over every target position (models.common.next_item_loss)."""
        return next_item_loss(self, inputs, targets, negatives, users, self.loss_kind)
