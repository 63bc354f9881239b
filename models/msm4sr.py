"""MSM4SR: Multimodal Sequence Mixup for Sequential Recommendation (../shared/papers/msm4sr.md, §III).

M²SE (§III-B): sequence random dropout (ρ) -> text and image encoders, each an attention layer over
the item's stacked sentence / keyword vectors (eq. 3) and a Mixture-of-Experts adapter (eqs. 4-5,
O experts, each Linear -> Dropout -> LayerNorm) -> complementary sequence mixup (each item's text
and image embeddings swapped with probability p ~ U[0, 0.5] per batch) -> positional encodings and
L Transformer layers (shared by both sequences) -> last-position outputs hᵗ, hᵛ.

Pre-training (§III-C, `pretrain_loss`): modality-specific next-item prediction (eqs. 6-8) and the
cross-modality contrastive loss (eqs. 9-10) with in-batch negatives, temperature τ, weight λ
(eq. 11). Fine-tuning (§III-D, `encode` / `item_vectors`): dropout and mixup off, item-ID
embeddings added to both sequences, scores hᵗ(Fᵗ+E)ᵀ + hᵛ(Fᵛ+E)ᵀ (eq. 12) written as one inner
product of concatenations, so the same FAISS evaluator ranks them; cross-entropy (eq. 13).

Deviations (docs/models/msm4sr.md): losses are batch means rather than sums (λ's balance is the
same); eq. 9's denominator is printed with the cross-view term twice — we read the second sum as
the same-view negatives of the NT-Xent loss it cites; fine-tuning trains every position of a window
(causal), pre-training uses one (prefix, next item) pair per training target.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from models.common import ItemFeatures, next_item_loss
from models.contract import (
    Loss,
    Modality,
    ModelInputs,
    NonNegativeFloat,
    Positive,
    PositiveFloat,
    Prob,
)
from models.sasrec import SASRecEncoder

MODALITIES = ("text", "image")


@dataclass
class MSM4SRConfig:
    hidden: Positive = 64  # d0
    attn_dim: Positive = 64  # dₐ of the attention layer (eq. 3)
    experts: Positive = 8  # O
    layers: Positive = 2  # L Transformer layers
    heads: Positive = 2
    inner: Positive = 256
    dropout: Prob = 0.2  # Transformer and expert dropout
    seq_dropout: Prob = 0.2  # ρ, pre-training only
    mixup: bool = True  # complementary sequence mixup in pre-training (ablation: w/o Mixup)
    tau: PositiveFloat = 0.07  # τ
    lam: NonNegativeFloat = 0.01  # λ
    nip: bool = True  # ablation: w/o NIP
    cmcl: bool = True  # ablation: w/o CMCL
    e2e_weight: NonNegativeFloat = 0.0  # > 0: MSM4SR_E2E, add this x the pre-training loss while fine-tuning
    modalities: list[Modality] = field(default_factory=lambda: ["text", "image"])  # ["text"] = MSM4SR-T, ["image"] = -V
    use_ids: bool = True  # item-ID embeddings at fine-tuning (eq. 12)
    loss: Loss | None = None  # fine-tuning loss: eq. 13's cross-entropy (bce: sampled negatives); None = train.loss
    pretrained: bool = True  # initialise M²SE from the pretrain stage (false: ablation w/o Pre-train)
    pretrained_path: str | None = None  # default: the pretrain stage's weights; another data set's for MSM4SR_Cross
    freeze_transformer: bool = False  # MSM4SR_Cross: at fine-tuning, tune only the modality encoders (and IDs)
    text_table: str = "text_sentences"  # per-sentence Sentence-BERT stack (eq. 1)
    image_table: str = "keyword_vectors"  # keyword sentences (eq. 2); `image` = the MSM4SR_ResNet ablation

    def __post_init__(self) -> None:
        if not self.modalities or set(self.modalities) - set(MODALITIES):
            raise ValueError(f"msm4sr.modalities={self.modalities!r}: a non-empty subset of {MODALITIES}")


class ModalityEncoder(nn.Module):
    """(..., S, d) stack + (..., S) mask -> (..., d0): attention pooling (eq. 3) then MoE (eqs. 4-5)."""

    def __init__(self, d: int, attn_dim: int, d0: int, experts: int, dropout: float):
        super().__init__()
        self.att1, self.att2 = nn.Linear(d, attn_dim), nn.Linear(attn_dim, 1)
        self.experts = nn.Linear(d, d0 * experts, bias=False)  # the O expert matrices W_k side by side
        self.gate = nn.Linear(d, experts, bias=False)
        self.norm = nn.LayerNorm(d0)
        self.drop = nn.Dropout(dropout)
        self.o, self.d0 = experts, d0

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if x.dim() == mask.dim() + 1 and x.dim() >= 3:  # a stack: attention over its valid slots
            logits = self.att2(self.att1(x)).squeeze(-1).masked_fill(~mask, float("-inf"))
            alpha = torch.nan_to_num(logits.softmax(-1))  # items with no valid slot get all-zero weights
            e = (alpha.unsqueeze(-1) * x).sum(-2)
        else:  # a pooled vector (e.g. the `text` table)
            e = x * mask.unsqueeze(-1)
        ek = self.norm(self.drop(self.experts(e)).unflatten(-1, (self.o, self.d0)))  # (..., O, d0)
        g = self.gate(e).softmax(-1)  # (..., O)
        return (g.unsqueeze(-1) * ek).sum(-2)


def info_nce_pair(a: torch.Tensor, b: torch.Tensor, z: torch.Tensor, tau: float) -> torch.Tensor:
    """Eqs. 7-8: -mean_j log[(f(a_j,z_j) + f(b_j,z_j)) / Σ_j' (f(a_j,z_j') + f(b_j,z_j'))], f = exp(cos/τ)."""
    a, b, z = (F.normalize(t, dim=-1) for t in (a, b, z))
    sa, sb = a @ z.T / tau, b @ z.T / tau  # (B, B)
    idx = torch.arange(len(a), device=a.device)
    num = torch.logaddexp(sa[idx, idx], sb[idx, idx])
    den = torch.logsumexp(torch.cat([sa, sb], 1), 1)
    return (den - num).mean()


def cmcl(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """Eqs. 9-10, symmetric: ℓ(a_j, b_j) = log f(a_j,b_j) / (Σ_j' f(a_j,b_j') + Σ_{j'≠j} f(a_j,a_j'))."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    eye = torch.eye(len(a), dtype=torch.bool, device=a.device)

    def ell(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        cross, same = x @ y.T / tau, (x @ x.T / tau).masked_fill(eye, float("-inf"))
        return cross.diagonal() - torch.logsumexp(torch.cat([cross, same], 1), 1)

    return -0.5 * (ell(a, b) + ell(b, a)).mean()


def drop_items(seqs: torch.Tensor, rho: float, gen: torch.Generator | None = None) -> torch.Tensor:
    """Sequence random dropout: remove each real item with probability ρ (never the last one) and
    re-left-pad, keeping the order of what remains. (B, L) -> (B, L)."""
    if rho <= 0:
        return seqs
    r = torch.rand(seqs.shape, generator=gen, device="cpu").to(seqs.device)
    keep = (seqs > 0) & (r >= rho)
    keep[:, -1] = seqs[:, -1] > 0
    order = torch.argsort(keep.to(torch.int8), dim=1, stable=True)  # dropped first, kept after, in order
    return torch.where(torch.gather(keep, 1, order), torch.gather(seqs, 1, order), 0)


def complementary_mixup(zt: torch.Tensor, zv: torch.Tensor, gen: torch.Generator | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Draw p ~ U[0, 0.5] and swap each item's text and image embeddings with probability p.
    (B, L, d) x 2 -> Mᵗ, Mᵛ (each item's pair swapped together, so they complement), p."""
    p = float(torch.rand((), generator=gen)) * 0.5
    swap = (torch.rand(zt.shape[:2], generator=gen) < p).to(zt.device).unsqueeze(-1)
    return torch.where(swap, zv, zt), torch.where(swap, zt, zv), p


class MSM4SR(nn.Module):
    Config = MSM4SRConfig
    FEATURES = MODALITIES
    PRETRAINING = True  # NIP + CMCL (the pretrain stage), then fine-tuning from M²SE's weights
    PRETRAIN_ONLY = ("proj.",)  # eq. 6 maps exist for the pre-training losses only
    FINE_TUNING_ONLY = ("modalities", "use_ids", "pretrained", "pretrained_path", "freeze_transformer", "e2e_weight")
    TINY = {"hidden": 16, "attn_dim": 8, "experts": 2, "layers": 1, "heads": 2, "inner": 32}

    def __init__(self, cfg: MSM4SRConfig, inputs: ModelInputs):
        super().__init__()
        self.cfg, self.loss_kind = cfg, inputs.resolve_loss(cfg.loss)
        self.feats = ItemFeatures(inputs.features, inputs.num_items)
        d0 = cfg.hidden
        self.enc = nn.ModuleDict({m: ModalityEncoder(inputs.features[m].vectors.shape[-1], cfg.attn_dim, d0,
                                                     cfg.experts, cfg.dropout) for m in MODALITIES})
        self.transformer = SASRecEncoder(d0, cfg.layers, cfg.heads, cfg.inner, cfg.dropout, inputs.max_len)
        self.proj = nn.ModuleDict({m: nn.Linear(d0, d0) for m in MODALITIES})  # W_t, W_v of eq. 6
        self.item_emb = nn.Embedding(inputs.num_items + 1, d0, padding_idx=0)  # E, fine-tuning only
        nn.init.normal_(self.item_emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        # MSM4SR_Cross fine-tunes with the pre-trained Transformer frozen; pre-training trains every part
        # of pretrained_state() whatever this flag says (pipeline/pretrain.py)
        self.transformer.requires_grad_(not cfg.freeze_transformer)

    # ------------------------------------------------------------------ shared pieces
    def item_modal(self, m: str) -> torch.Tensor:
        """Fᵐ: every item's encoded modality embedding (N+1, d0); row 0 (padding) is zero."""
        z = self.enc[m](getattr(self.feats, m), getattr(self.feats, f"{m}_mask"))
        return z * (torch.arange(len(z), device=z.device) > 0).unsqueeze(-1)

    def run(self, x: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        return self.transformer(x, seqs == 0)

    # ------------------------------------------------------------------ fine-tuning
    def encode(self, seqs: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) -> (B, L, |modalities|·d0): [hᵗ ‖ hᵛ] at every position (eq. 12 as one dot product)."""
        ids = self.item_emb(seqs) if self.cfg.use_ids else 0.0
        return torch.cat([self.run(self.item_modal(m)[seqs] + ids, seqs) for m in self.cfg.modalities], -1)

    def item_vectors(self) -> torch.Tensor:
        ids = self.item_emb.weight if self.cfg.use_ids else 0.0
        return torch.cat([self.item_modal(m) + ids for m in self.cfg.modalities], -1)

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor, negatives, users=None) -> torch.Tensor:
        """Fine-tuning loss (eq. 13); MSM4SR_E2E (`e2e_weight` > 0) adds that weight x the pre-training
        loss on each window's last (prefix, next item) pair."""
        loss = next_item_loss(self, inputs, targets, negatives, users, self.loss_kind)
        if self.cfg.e2e_weight <= 0:
            return loss
        keep = targets[:, -1] > 0
        return loss + self.cfg.e2e_weight * self.pretrain_loss(inputs[keep], targets[keep, -1])["loss"]

    # ------------------------------------------------------------------ pre-training
    def pretrain_loss(self, seqs: torch.Tensor, targets: torch.Tensor,
                      gen: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """seqs (B, L) prefixes, targets (B,) next items -> {"loss", "nip_t", "nip_v", "cmcl_t", "cmcl_v"}."""
        cfg = self.cfg
        seqs = drop_items(seqs, cfg.seq_dropout if self.training else 0.0, gen)
        ft = self.item_modal("text")
        if not bool(self.feats.image_mask.any()):  # a text-only catalogue: NIP on the text view alone
            if not cfg.nip:
                raise ValueError("msm4sr: no item has image features, so CMCL and mixup have nothing to pair and "
                                 "nip is off: nothing to pre-train; set nip: true or pretrained: false")
            m = self.proj["text"](self.run(ft[seqs], seqs)[:, -1])
            zero = m.new_zeros(())
            nip_t = info_nce_pair(m, m, ft[targets], cfg.tau)  # eqs. 7-8 with one view
            return {"nip_t": nip_t, "nip_v": zero, "cmcl_t": zero, "cmcl_v": zero, "loss": nip_t}
        fv = self.item_modal("image")
        zt, zv = ft[seqs], fv[seqs]
        if cfg.mixup and self.training:
            zt, zv, _ = complementary_mixup(zt, zv, gen)
        ht, hv = self.run(zt, seqs)[:, -1], self.run(zv, seqs)[:, -1]
        m_t_hat, m_t_til = self.proj["text"](ht), self.proj["text"](hv)  # eq. 6
        m_v_hat, m_v_til = self.proj["image"](hv), self.proj["image"](ht)
        zero = ht.new_zeros(())
        out = {"nip_t": info_nce_pair(m_t_hat, m_t_til, ft[targets], cfg.tau) if cfg.nip else zero,
               "nip_v": info_nce_pair(m_v_hat, m_v_til, fv[targets], cfg.tau) if cfg.nip else zero,
               "cmcl_t": cmcl(m_t_hat, m_t_til, cfg.tau) if cfg.cmcl else zero,
               "cmcl_v": cmcl(m_v_hat, m_v_til, cfg.tau) if cfg.cmcl else zero}
        out["loss"] = out["nip_t"] + out["nip_v"] + cfg.lam * (out["cmcl_t"] + out["cmcl_v"])  # eq. 11
        return out

    def pretrain_loss_windows(self, inputs: torch.Tensor, targets: torch.Tensor, gen: torch.Generator | None = None,
                              group: int = 256) -> dict[str, torch.Tensor]:
        """NIP + CMCL for every prefix of (B, L) training windows from one causal pass per view
        (`pretrain.one_pass_windows`): position t's state is the prefix ending at t, its target
        targets[:, t]. The augmentations act on each window, not on each pair: sequence dropout
        removes items from the whole window (a prefix's next item is then the next item that
        remains) and mixup swaps an item's views in every prefix that holds it. The valid
        positions are shuffled into groups of `group` pairs (their in-batch negatives, like one
        per-pair batch); the loss is the pair-weighted mean over the groups."""
        cfg = self.cfg
        seqs, nxt = inputs, targets
        if self.training and cfg.seq_dropout > 0:  # drop from the window's L + 1 items, then re-align the targets
            full = drop_items(torch.cat([inputs, targets[:, -1:]], 1), cfg.seq_dropout, gen)
            seqs, nxt = full[:, :-1], torch.where(full[:, :-1] > 0, full[:, 1:], 0)
        valid = nxt > 0
        ft = self.item_modal("text")
        text_only = not bool(self.feats.image_mask.any())
        if text_only and not cfg.nip:
            raise ValueError("msm4sr: no item has image features and nip is off: nothing to pre-train")
        zt = ft[seqs]
        zv = None if text_only else self.item_modal("image")[seqs]
        if not text_only and cfg.mixup and self.training:
            zt, zv, _ = complementary_mixup(zt, zv, gen)
        ht = self.run(zt, seqs)[valid]
        hv = None if text_only else self.run(zv, seqs)[valid]
        y = nxt[valid]
        perm = torch.randperm(len(y), generator=gen).to(y.device)
        totals: dict[str, torch.Tensor] = {}
        for part in perm.split(group):
            if len(part) < 2:
                continue  # contrastive terms need in-batch negatives
            w = len(part) / len(y)
            if text_only:
                m = self.proj["text"](ht[part])
                zero = m.new_zeros(())
                terms = {"nip_t": info_nce_pair(m, m, ft[y[part]], cfg.tau), "nip_v": zero, "cmcl_t": zero,
                         "cmcl_v": zero}
            else:
                a, b = ht[part], hv[part]
                m_t_hat, m_t_til, m_v_hat, m_v_til = self.proj["text"](a), self.proj["text"](b), \
                    self.proj["image"](b), self.proj["image"](a)
                zero = a.new_zeros(())
                fv = self.item_modal("image")
                terms = {"nip_t": info_nce_pair(m_t_hat, m_t_til, ft[y[part]], cfg.tau) if cfg.nip else zero,
                         "nip_v": info_nce_pair(m_v_hat, m_v_til, fv[y[part]], cfg.tau) if cfg.nip else zero,
                         "cmcl_t": cmcl(m_t_hat, m_t_til, cfg.tau) if cfg.cmcl else zero,
                         "cmcl_v": cmcl(m_v_hat, m_v_til, cfg.tau) if cfg.cmcl else zero}
            for k, v in terms.items():
                totals[k] = totals.get(k, 0.0) + w * v
        totals["loss"] = totals["nip_t"] + totals["nip_v"] + cfg.lam * (totals["cmcl_t"] + totals["cmcl_v"])
        return totals

    def pretrained_state(self) -> dict[str, torch.Tensor]:
        """The pre-trained M²SE weights: modality encoders, Transformer, eq.-6 projections."""
        return {k: v for k, v in self.state_dict().items() if k.split(".")[0] in ("enc", "transformer", "proj")}

    def load_pretrained(self, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
        """Initialise M²SE from pre-trained weights; anything missing or mis-shaped is an error."""
        own = self.pretrained_state()
        missing = sorted(set(own) - set(state))
        bad = sorted(k for k in own if k in state and state[k].shape != own[k].shape)
        if missing or bad:
            detail = f"missing {missing[:5]}" if missing else \
                f"shape mismatch {[(k, tuple(state[k].shape), tuple(own[k].shape)) for k in bad[:3]]}"
            raise ValueError(f"{source}: pre-trained M²SE weights do not fit this model ({detail}); pre-train with "
                             "the same msm4sr hidden/attn_dim/experts/layers/heads/inner and feature tables")
        self.load_state_dict({k: state[k] for k in own}, strict=False)
