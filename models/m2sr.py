"""M2SR: Multi-Modal Multi-Fusion MLP-Mixer for sequential recommendation (paper: Framework section).

Feature Mixer Layer: three Mixer modules (eq. 1), one each for the image features I, the text
features T and trainable item-ID embeddings S of the sequence. Fusion Mixer Layer: post-fusion,
Ŷ = Linear(Yⁱ ‖ Yᵗ ‖ Yˢ), then another Mixer module (eq. 2). Prediction layer: the fused state at
position t scores every item; trained with cross-entropy over all items (Algorithm 1, line 9).

Choices where the paper is silent or ambiguous (docs/models/m2sr.md):
- Raw features (1280-d image, 384/768-d text) are first projected to `hidden` by a linear layer,
  so the three Mixer modules and their channel MLPs have the same width; the paper mixes the raw
  matrices but never gives D_I, D_T or the Linear's output size.
- The fusion keeps eq. 2's width: Ŷ = Linear(Yⁱ ‖ Yᵗ ‖ Yˢ) maps 3·hidden -> D with
  D = D_I + D_T + D_S = 3·hidden by default (`fusion_width`; a smaller value is an option, not the paper).
- What the prediction layer scores against: each item's *fused input embedding*, i.e. the same
  fusion Linear applied to the item's projected image ‖ projected text ‖ ID embedding. Items are
  therefore scored through their content as well as their ID.
- Token mixing is causal (see models/mlpmixer.py), so all positions are trained, as for SASRec.
- Image input: the mean of the item's valid image vectors (features.image: up to N images);
  text input: the pooled text vector. Items without an image/text get zeros there (their mask).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from models.common import ItemFeatures, fast_dropout, next_item_loss
from models.contract import Loss, ModelInputs, NonNegative, Positive, Prob
from models.mlpmixer import MixerStack


@dataclass
class M2SRConfig:
    hidden: Positive = 64  # width of every Mixer module after projecting the raw features
    blocks: Positive = 2  # Mixer blocks per modality module
    fusion_blocks: Positive = 1  # Mixer blocks in the Fusion Mixer Layer
    fusion_width: NonNegative = 0  # D of eq. 2: 0 = D_I + D_T + D_S = 3 * hidden (the paper's); > 0 narrows it
    channel_expansion: Positive = 4
    dropout: Prob = 0.2
    loss: Loss | None = None  # ce | bce | bpr | sampled_softmax; None = train.loss
    text_table: str = "text"  # feature table for T: text (pooled) | text_sentences (averaged)
    image_table: str = "image"  # feature table for I: image | keyword_vectors (averaged over images)


class M2SR(nn.Module):
    Config = M2SRConfig
    FEATURES = ("text", "image")
    TINY = {"hidden": 16, "blocks": 1}

    def __init__(self, cfg: M2SRConfig, inputs: ModelInputs):
        super().__init__()
        self.cfg, self.loss_kind = cfg, inputs.resolve_loss(cfg.loss)
        self.feats = ItemFeatures(inputs.features, inputs.num_items)
        h = cfg.hidden
        self.proj_text = nn.Linear(inputs.features["text"].vectors.shape[-1], h)
        self.proj_image = nn.Linear(inputs.features["image"].vectors.shape[-1], h)
        self.item_emb = nn.Embedding(inputs.num_items + 1, h, padding_idx=0)
        nn.init.normal_(self.item_emb.weight, std=h**-0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        args = (h, inputs.max_len, cfg.blocks, cfg.channel_expansion, cfg.dropout)
        self.mix_image, self.mix_text, self.mix_id = MixerStack(*args), MixerStack(*args), MixerStack(*args)
        d = cfg.fusion_width or 3 * h  # eq. 2: D = D_I + D_T + D_S
        self.fuse = nn.Linear(3 * h, d)
        self.mix_fusion = MixerStack(d, inputs.max_len, cfg.fusion_blocks, cfg.channel_expansion, cfg.dropout)

    def item_inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Projected image, projected text and ID embedding of every item: 3 x (N+1, hidden)."""
        return (self.proj_image(self.feats.pooled("image")), self.proj_text(self.feats.pooled("text")),
                self.item_emb.weight * math.sqrt(self.cfg.hidden))

    def encode(self, seqs: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        pad = seqs == 0
        image, text, ids = (fast_dropout(t[seqs], self.cfg.dropout, self.training) for t in self.item_inputs())
        y = torch.cat([self.mix_image(image, pad), self.mix_text(text, pad), self.mix_id(ids, pad)], -1)
        return self.mix_fusion(self.fuse(y), pad)

    def item_vectors(self) -> torch.Tensor:
        return self.fuse(torch.cat(self.item_inputs(), -1))

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor, negatives, users=None) -> torch.Tensor:
        """Next-item loss over every target position (models.common.next_item_loss)."""
        return next_item_loss(self, inputs, targets, negatives, users, self.loss_kind)
