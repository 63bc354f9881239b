"""BPR-MF (Rendle et al., UAI 2009): matrix factorisation trained with Bayesian personalised ranking.

The general (non-sequential) baseline of the M2SR and AutoMLP tables. A user is a free embedding
row, an item another: score(u, i) = <P_u, Q_i>. Every training interaction (user, item) is a
positive, paired with `train.negatives` uniform negatives, loss -log σ(s_pos - s_neg) (`loss:
bpr`, RecBole's BPR). The sequence is ignored: `encode` returns the user's row at every position,
so the shared window trainer feeds each training interaction once per epoch (a user's very first
interaction is never a window target, one per user; docs/models/bprmf.md) and the shared evaluator
ranks every item for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.common import next_item_loss
from models.contract import Loss, ModelInputs, Positive


@dataclass
class BPRMFConfig:
    embedding: Positive = 64  # factor dimension (RecBole's embedding_size)
    loss: Loss | None = None  # bpr (RecBole's, params.yaml) | bce | ce; None = train.loss


class BPRMF(nn.Module):
    Config = BPRMFConfig
    READS_SEQUENCE = False  # scores by user alone
    TINY = {"embedding": 16}

    def __init__(self, cfg: BPRMFConfig, inputs: ModelInputs):
        super().__init__()
        if inputs.num_users < 1:
            raise ValueError("bprmf needs inputs.num_users >= 1 (the builder counts the data's users)")
        self.cfg, self.loss_kind = cfg, inputs.resolve_loss(cfg.loss)
        self.user_emb = nn.Embedding(inputs.num_users, cfg.embedding)
        self.item_emb = nn.Embedding(inputs.num_items + 1, cfg.embedding, padding_idx=0)
        nn.init.xavier_normal_(self.user_emb.weight)  # RecBole's init for BPR
        nn.init.xavier_normal_(self.item_emb.weight)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def encode(self, seqs: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) -> (B, L, D): the user's factor at every position (the items do not enter)."""
        if users is None:
            raise ValueError("bprmf scores by user id: pass `users` (0-based user indices)")
        return self.user_emb(users)[:, None].expand(-1, seqs.shape[1], -1)

    def item_vectors(self) -> torch.Tensor:
        return self.item_emb.weight

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor, negatives, users=None) -> torch.Tensor:
        return next_item_loss(self, inputs, targets, negatives, users, self.loss_kind)
