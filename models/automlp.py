"""AutoMLP: long/short-term MLP with a differentiable search of the short-term length
(../shared/papers/automlp.md, §2).

Embedding layer (§2.3.1): the item-ID embedding and the item's cached text and image vectors
(each a linear map to D) fused by one fully-connected layer into x_t ∈ R^D; the same vectors score
all items (eq. 8). Long-term module (§2.3.2): SRSMLP layers over the whole window, each a
sequence-mixer (eq. 1) and a channel-mixer (eq. 2) with LayerNorm and residuals; the sequence
mixer is causal (lower-triangular, the `mlpmixer` model's `MixerStack`) so every position trains.
Short-term modules (§2.3.3): one SRSMLP per candidate length k ∈ K over each position's k most
recent items (relative positions: W¹ ∈ R^{R_s×k}, W² ∈ R^{k×R_s}, exactly the paper's module on
the last-k sub-sequence, evaluated at every position); their outputs are mixed with softmax(α)
(eq. 3). Output layer (eq. 4): h = W° LayerNorm([x^s; x^l]) + b°.

Search (§2.4.1, Algorithm 1) lives in `pipeline/search.py`: W on training batches, α on validation
batches through the one-step approximation W - ξ∇W L_train (eqs. 6-7); then the model is rebuilt
with the chosen length only (`short_lengths: [k]`) and retrained.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.common import ItemFeatures, fast_dropout, next_item_loss
from models.contract import Loss, ModelInputs, Positive, PositiveFloat, Prob
from models.mlpmixer import MixerStack

MODALITIES = ("text", "image")


@dataclass
class AutoMLPConfig:
    hidden: Positive = 64  # D
    layers: Positive = 2  # SRSMLP layers in the long-term module (the paper's best on Beauty: 8)
    short_layers: Positive = 1  # SRSMLP layers in each short-term module
    channel_expansion: Positive = 4  # R_c = hidden * this
    dropout: Prob = 0.2
    short_lengths: list[Positive] = field(default_factory=lambda: [2, 5, 10, 20, 30])  # K; one entry = retraining
    use_features: bool = True  # §2.3.1: fuse the cached text/image vectors with the ID embedding
    loss: Loss | None = None  # ce | bce = eq. 5 with train.negatives sampled items; None = train.loss
    # search phase (pipeline/search.py, used when short_lengths has several entries)
    search_epochs: Positive = 10
    arch_lr: PositiveFloat = 3e-3  # Adam on α (DARTS: 3e-4 on images; α here has 5 entries)
    xi: float = -1.0  # ξ of eq. 7: < 0 = the train lr (paper: "ξ is the learning rate"), 0 = first order
    text_table: str = "text"  # pooled vectors
    image_table: str = "image"

    def __post_init__(self) -> None:
        if not self.short_lengths or any(k < 1 for k in self.short_lengths):
            raise ValueError(f"automlp.short_lengths={self.short_lengths}: lengths >= 1")
        if len(set(self.short_lengths)) != len(self.short_lengths):
            raise ValueError(f"automlp.short_lengths={self.short_lengths}: duplicates")


class WindowSRSMLP(nn.Module):
    """SRSMLP over each position's last-k window: (B, L, D), valid (B, L, 1) -> (B, L, D).

    Every window (left-padded with invalid slots) goes through `layers` sequence-mixer +
    channel-mixer layers; only the last slot of the last layer is computed and returned.
    """

    def __init__(self, hidden: int, k: int, layers: int, expansion: int, dropout: float):
        super().__init__()
        self.k, self.p = k, dropout
        self.ln1 = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.ln2 = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.w1 = nn.ParameterList(nn.Parameter(torch.empty(k, k)) for _ in range(layers))  # R_s = k
        self.w2 = nn.ParameterList(nn.Parameter(torch.empty(k, k)) for _ in range(layers))
        for w in (*self.w1, *self.w2):
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        self.b1 = nn.ParameterList(nn.Parameter(torch.zeros(k, 1)) for _ in range(layers))
        self.b2 = nn.ParameterList(nn.Parameter(torch.zeros(k, 1)) for _ in range(layers))
        self.ch1 = nn.ModuleList(nn.Linear(hidden, hidden * expansion) for _ in range(layers))
        self.ch2 = nn.ModuleList(nn.Linear(hidden * expansion, hidden) for _ in range(layers))

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        k = self.k
        z = F.pad(x, (0, 0, k - 1, 0)).unfold(1, k, 1).transpose(-1, -2)  # (B, L, k, D)
        vw = F.pad(valid, (0, 0, k - 1, 0)).unfold(1, k, 1).transpose(-1, -2)  # (B, L, k, 1)
        n = len(self.w1)
        for i in range(n):
            h = F.gelu(torch.einsum("rk,blkd->blrd", self.w1[i], self.ln1[i](z) * vw) + self.b1[i])
            if i == n - 1:  # only the window's last slot is needed from here on
                z = z[:, :, -1] + fast_dropout(torch.einsum("r,blrd->bld", self.w2[i][-1], h) + self.b2[i][-1],
                                               self.p, self.training)
            else:
                z = z + fast_dropout(torch.einsum("kr,blrd->blkd", self.w2[i], h) + self.b2[i], self.p, self.training)
            z = z + fast_dropout(self.ch2[i](F.gelu(self.ch1[i](self.ln2[i](z)))), self.p, self.training)
            z = z * (valid if i == n - 1 else vw)
        return z


class AutoMLP(nn.Module):
    Config = AutoMLPConfig
    FEATURES = MODALITIES
    PROCEDURE = "search_then_fit"  # search α (Algorithm 1), then rebuild with the chosen length and fit
    TINY = {"hidden": 16, "layers": 2, "short_lengths": [2, 5]}

    def __init__(self, cfg: AutoMLPConfig, inputs: ModelInputs):
        super().__init__()
        if max(cfg.short_lengths) > inputs.max_len:
            raise ValueError(f"automlp.short_lengths={cfg.short_lengths}: lengths in [1, max_len={inputs.max_len}]")
        self.cfg, self.loss_kind = cfg, inputs.resolve_loss(cfg.loss)
        d = cfg.hidden
        self.item_emb = nn.Embedding(inputs.num_items + 1, d, padding_idx=0)
        nn.init.normal_(self.item_emb.weight, std=d**-0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        if cfg.use_features:
            self.feats = ItemFeatures(inputs.features, inputs.num_items)
            self.feat_proj = nn.ModuleDict({m: nn.Linear(inputs.features[m].vectors.shape[-1], d) for m in MODALITIES})
            self.fuse = nn.Linear(d * (1 + len(MODALITIES)), d)  # §2.3.1: one FC over the C embeddings
        self.long = MixerStack(d, inputs.max_len, cfg.layers, cfg.channel_expansion, cfg.dropout)
        self.short = nn.ModuleList(WindowSRSMLP(d, k, cfg.short_layers, cfg.channel_expansion, cfg.dropout)
                                   for k in cfg.short_lengths)
        self.short_norm = nn.LayerNorm(d)
        self.alpha = nn.Parameter(torch.zeros(len(cfg.short_lengths)))  # eq. 3's architecture weights
        self.out_norm, self.out = nn.LayerNorm(2 * d), nn.Linear(2 * d, d)  # eq. 4
        self.freeze_alpha = False  # the search's W step: α enters as a constant

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        e = self.item_emb(ids)
        if not self.cfg.use_features:
            return e
        parts = [e] + [self.feat_proj[m](self.feats.pooled(m)[ids]) for m in MODALITIES]
        return self.fuse(torch.cat(parts, -1)) * (ids > 0).unsqueeze(-1)

    def arch_weights(self) -> torch.Tensor:
        a = self.alpha.detach() if self.freeze_alpha else self.alpha
        return a.softmax(0)

    def encode(self, seqs: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        pad = seqs == 0
        x = fast_dropout(self.embed(seqs) * math.sqrt(self.cfg.hidden), self.cfg.dropout, self.training)
        long = self.long(x, pad)
        valid = (~pad)[..., None].to(x.dtype)
        xs = x * valid
        shorts = torch.stack([m(xs, valid) for m in self.short], 0)  # (M, B, L, D)
        short = self.short_norm((self.arch_weights()[:, None, None, None] * shorts).sum(0))
        return self.out(self.out_norm(torch.cat([short, long], -1)))

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor, negatives, users=None) -> torch.Tensor:
        """The training loss (eq. 5 / full CE), also what the search's unrolled step differentiates."""
        return next_item_loss(self, inputs, targets, negatives, users, self.loss_kind)

    forward = loss  # `torch.func.functional_call` (the search's unrolled step) calls forward

    def item_vectors(self) -> torch.Tensor:
        return self.embed(torch.arange(self.item_emb.num_embeddings, device=self.item_emb.weight.device))

    # ------------------------------------------------------------------ the search (PROCEDURE)
    def search_space(self) -> dict:
        """Candidates K and the search's settings (pipeline/search.py)."""
        c = self.cfg
        return {"candidates": list(c.short_lengths), "epochs": c.search_epochs, "arch_lr": c.arch_lr, "xi": c.xi}

    def arch_parameters(self) -> list[nn.Parameter]:
        """α: one weight per candidate length (eq. 3)."""
        return [self.alpha]

    def weight_parameters(self) -> list[nn.Parameter]:
        """W: everything but α."""
        return [p for n, p in self.named_parameters() if n != "alpha"]

    @contextlib.contextmanager
    def arch_frozen(self):
        """α as a constant (the search's W step)."""
        self.freeze_alpha = True
        try:
            yield
        finally:
            self.freeze_alpha = False

    def search_result(self) -> tuple[dict, dict]:
        """The config to retrain with (the length with the largest α) and the record: k, softmax(α), α."""
        k = self.cfg.short_lengths[int(self.alpha.argmax())]
        alpha = self.alpha.detach().cpu()
        keys = [str(x) for x in self.cfg.short_lengths]
        return {"short_lengths": [k]}, {"k": k, "p": dict(zip(keys, alpha.softmax(0).tolist())),
                                        "alpha": dict(zip(keys, alpha.tolist()))}
