"""BERT4Rec (Sun et al., CIKM 2019): a bidirectional Transformer trained by masked-item prediction.

Training (`loss`, the cloze task): each window's items are masked at random (each real item with
probability `mask_ratio`; with probability `ft_ratio` a whole batch instead masks only each
window's last item, RecBole 1.2's fine-tuning batches); every masked position predicts its item over all items
(`loss: ce`; `bce` uses the loop's sampled negatives). Scoring (`encode`): the window's oldest
item is dropped and a [mask] token appended; the state at the mask predicts the next item, so the
shared evaluator's last-position rule ranks with it. The encoder is the spine's SASRecEncoder in its
post-LN layout (RecBole's TransformerEncoder) with `causal=False`; the output head is RecBole's:
Linear → GELU → LayerNorm, scores h·E_i + b_i, written as one inner product ([h; 1]·[E_i; b_i]).
Init N(0, 0.02) as RecBole's `initializer_range`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.common import draw, sequence_loss
from models.contract import Loss, ModelInputs, Positive, Prob, Unit
from models.sasrec import SASRecEncoder


@dataclass
class BERT4RecConfig:
    hidden: Positive = 64
    layers: Positive = 2
    heads: Positive = 2
    inner: Positive = 256
    dropout: Prob = 0.2  # RecBole: hidden and attention dropout 0.2
    mask_ratio: Prob = 0.2  # probability a real item is masked (RecBole's default)
    ft_ratio: Unit = 0.5  # probability a batch masks only each window's last item (RecBole 1.2's default)
    loss: Loss | None = None  # ce | bce (sampled negatives at the masked positions); None = train.loss

    def __post_init__(self) -> None:
        if not 0 < self.mask_ratio < 1 or not 0 <= self.ft_ratio <= 1:
            raise ValueError(f"bert4rec: mask_ratio={self.mask_ratio} in (0, 1), ft_ratio={self.ft_ratio} in [0, 1]")


class BERT4Rec(nn.Module):
    Config = BERT4RecConfig
    CAUSAL = False  # every position sees the whole window; only the last (the mask) is a prediction
    TINY = {"hidden": 16, "heads": 2, "inner": 32, "layers": 2}

    def __init__(self, cfg: BERT4RecConfig, inputs: ModelInputs):
        super().__init__()
        self.cfg, self.loss_kind, num_items = cfg, inputs.resolve_loss(cfg.loss), inputs.num_items
        self.mask_id = num_items + 1
        self.item_emb = nn.Embedding(num_items + 2, cfg.hidden, padding_idx=0)  # + the [mask] token
        self.encoder = SASRecEncoder(cfg.hidden, cfg.layers, cfg.heads, cfg.inner, cfg.dropout, inputs.max_len,
                                     post_ln=True, causal=False)
        self.head = nn.Sequential(nn.Linear(cfg.hidden, cfg.hidden), nn.GELU(), nn.LayerNorm(cfg.hidden))
        self.bias = nn.Parameter(torch.zeros(num_items + 1))
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def states(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L) ids (mask tokens included) -> (B, L, D+1) states [h; 1]."""
        h = self.head(self.encoder(self.item_emb(x), x == 0))
        return torch.cat([h, h.new_ones(*h.shape[:2], 1)], -1)

    def encode(self, seqs: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        """The window's last L-1 items + [mask]: the last state predicts the next item."""
        x = torch.cat([seqs[:, 1:], torch.full_like(seqs[:, :1], self.mask_id)], 1)
        return self.states(x)

    def item_vectors(self) -> torch.Tensor:
        n = self.bias.shape[0]
        return torch.cat([self.item_emb.weight[:n], self.bias[:, None]], -1)  # (N+1, D+1), the mask excluded

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor, negatives, users=None) -> torch.Tensor:
        """The cloze loss on the window's items (its inputs without the oldest, plus the last target)."""
        seq = torch.cat([inputs[:, 1:], targets[:, -1:]], 1)
        real = seq > 0
        masked = real & (torch.rand(seq.shape, device=seq.device) < self.cfg.mask_ratio)
        last = torch.zeros_like(masked)
        last[:, -1] = real[:, -1]
        if float(torch.rand(())) < self.cfg.ft_ratio:  # a fine-tuning batch: predict each window's last item
            masked = last
        else:
            masked = torch.where(masked.any(1, keepdim=True), masked, last)  # >= 1 masked item per window
        x = torch.where(masked, torch.full_like(seq, self.mask_id), seq)
        kind = self.loss_kind
        return sequence_loss(self.states(x), torch.where(masked, seq, 0), self.item_vectors(), kind,
                             draw(negatives, kind), getattr(negatives, "log_q", None))
