"""Model registry. Each model is one file: its config dataclass (`Model.Config`) and modules.

Interface every model implements (plain torch; no files, no DVC):
    Model(cfg, num_items)
    encode(seqs (B, L) int64, left-padded) -> (B, L, D) states; state t predicts item t+1
    item_vectors() -> (N+1, D) output vectors (row 0 = padding, never ranked)
    loss(inputs (B, L), targets (B, L), negatives) -> scalar: the model's own training loss;
        `negatives()` returns sampled negative ids (B, L, S) when the loss needs them
One optional hook, called once by the trainer before the first step:
    prepare(train: Sequences, lr) -> optimizer param groups | None
        `train` is the training view (no validation or test item); popularity counts from it,
        MMSR returns its per-part learning rates. A model with no trainable parameters is fitted
        by `prepare` alone.
Models whose config has a `loss` field get `train.loss` when their params section leaves it unset;
a `num_users` field is filled with the data's user count (user-embedding models: BPR-MF, FPMC),
and `encode` / `loss` then receive `users`, each window's 0-based user index.
Models that read cached item features declare `FEATURES = ("text", "image")`, take
`<modality>_table` and `features` (shapes) in their config and keep the tables in an
`ItemFeatures` buffer module `feats`; the train stage fills it from data/features.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from torch import nn

from models.automlp import AutoMLP
from models.bert4rec import BERT4Rec
from models.bprmf import BPRMF
from models.common import LOSSES
from models.fpmc import FPMC
from models.gru4rec import GRU4Rec
from models.m2sr import M2SR
from models.mlpmixer import MLPMixer
from models.mmsr import MMSR
from models.msm4sr import MSM4SR
from models.nextitnet import NextItNet
from models.pop import Pop
from models.sasrec import SASRec

MODELS: dict[str, type[nn.Module]] = {
    "pop": Pop,
    "sasrec": SASRec,
    "gru4rec": GRU4Rec,
    "nextitnet": NextItNet,
    "mlpmixer": MLPMixer,
    "m2sr": M2SR,
    "msm4sr": MSM4SR,
    "mmsr": MMSR,
    "automlp": AutoMLP,
    "bprmf": BPRMF,
    "fpmc": FPMC,
    "bert4rec": BERT4Rec,
}


def build_model(name: str, config: dict[str, Any] | None, num_items: int) -> nn.Module:
    """Build `name` from a plain config dict (unknown keys are an error naming them)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; registered models: {sorted(MODELS)}")
    cls = MODELS[name]
    config = dict(config or {})
    known = {f.name for f in fields(cls.Config)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"model {name!r}: unknown config key(s) {unknown}; known: {sorted(known)}")
    if "loss" in config and config["loss"] not in LOSSES:
        raise ValueError(f"model {name!r}: loss={config['loss']!r}; use one of {LOSSES}")
    return cls(cls.Config(**config), num_items)


def model_config(model: nn.Module) -> dict[str, Any]:
    return asdict(model.cfg)
