"""FPMC (Rendle et al., WWW 2010): factorised personalised Markov chains.

score(u, l, i) = <V_u^{UI}, V_i^{IU}> + <V_i^{IL}, V_l^{LI}> for user u whose last item is l: a
matrix-factorisation term and a factorised first-order transition term (RecBole's FPMC). Written
as one inner product so the shared FAISS evaluator ranks it: the state at position t is
[V_u^{UI} ; V_{x_t}^{LI}] and item i's vector is [V_i^{IU} ; V_i^{IL}]. Every position of a
training window predicts its next item from the item there, trained with BPR (`loss: bpr`, the
paper's S-BPR) and `train.negatives` uniform negatives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.common import next_item_loss
from models.contract import Loss, ModelInputs, Positive


@dataclass
class FPMCConfig:
    embedding: Positive = 64  # each factor's dimension (RecBole's embedding_size)
    loss: Loss | None = None  # bpr (RecBole's, params.yaml) | bce | ce; None = train.loss


class FPMC(nn.Module):
    Config = FPMCConfig
    TINY = {"embedding": 16}

    def __init__(self, cfg: FPMCConfig, inputs: ModelInputs):
        super().__init__()
        if inputs.num_users < 1:
            raise ValueError("fpmc needs inputs.num_users >= 1 (the builder counts the data's users)")
        self.cfg, self.loss_kind = cfg, inputs.resolve_loss(cfg.loss)
        d, num_items = cfg.embedding, inputs.num_items
        self.ui = nn.Embedding(inputs.num_users, d)  # V^{UI}: user -> item
        self.iu = nn.Embedding(num_items + 1, d, padding_idx=0)  # V^{IU}
        self.li = nn.Embedding(num_items + 1, d, padding_idx=0)  # V^{LI}: last item -> item
        self.il = nn.Embedding(num_items + 1, d, padding_idx=0)  # V^{IL}
        for emb in (self.ui, self.iu, self.li, self.il):
            nn.init.xavier_normal_(emb.weight)  # RecBole's FPMC init
        with torch.no_grad():
            for emb in (self.iu, self.li, self.il):
                emb.weight[0].zero_()

    def encode(self, seqs: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) -> (B, L, 2D): [V_u^{UI} ; V_{x_t}^{LI}] — position t scores the item after x_t."""
        if users is None:
            raise ValueError("fpmc scores by user id: pass `users` (0-based user indices)")
        u = self.ui(users)[:, None].expand(-1, seqs.shape[1], -1)
        return torch.cat([u, self.li(seqs)], -1)

    def item_vectors(self) -> torch.Tensor:
        return torch.cat([self.iu.weight, self.il.weight], -1)  # (N+1, 2D)

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor, negatives, users=None) -> torch.Tensor:
        return next_item_loss(self, inputs, targets, negatives, users, self.loss_kind)
