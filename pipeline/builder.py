"""The model builder: the one module of the pipeline that reads the model contract (models/contract.py).

Everything the rest of the pipeline needs to know about a model kind comes from here: which
feature tables it reads and whether it pre-trains (`needs`, for the plan stage), how to build it
from the prepared tables in one step (`build_for_run`), how to rebuild it from a checkpoint
(`rebuild`), its optimizer groups (`param_groups`), its pre-trained start (`start_pretrained`),
the procedure that trains it (`traits(...).procedure`, looked up in pipeline/procedures.py) and
which of its parameters depend on the catalogue (`catalogue_sized`, for transfer).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models import MODELS
from models.common import LOSSES
from models.contract import ContractError, FeatureTable, ModelInputs, Traits, check
from pipeline.checkpoint import load_tensors, read_checkpoint
from pipeline.data import TrainView
from pipeline.features.store import load_item_matrix
from pipeline.layout import FEATURE_STAGES, feature_path, feature_stage
from pipeline.params import ConfigError, from_dict
from pipeline.tables import file_sha256

log = logging.getLogger("pipeline.builder")

PRETRAINED_WEIGHTS = "weights.pt"  # the pretrain stage's weights file in its out folder


def model_class(name: str, where: str = "params.yaml: model") -> type[nn.Module]:
    if name not in MODELS:
        raise ConfigError(f"{where}={name!r} is not one of the registered models {sorted(MODELS)} "
                          "(models/__init__.py; docs/adding-a-model.md)")
    return MODELS[name]


def source_file(name: str) -> Path:
    """The file the registered model's class is defined in (its code fingerprint starts there)."""
    return Path(inspect.getsourcefile(model_class(name))).resolve()


def traits(name: str) -> Traits:
    """The registered model's flags; a class that breaks the contract is an error listing why."""
    return check(model_class(name))


def selected(params: dict) -> tuple[str, dict]:
    """The selected model and its params section (a registered model without a section: its defaults)."""
    name = params.get("model")
    model_class(name)
    section = (params.get("models") or {}).get(name)
    if section is not None and not isinstance(section, dict):
        raise ConfigError(f"params.yaml: models.{name} must be a mapping of {name}'s settings, got {section!r}")
    return name, dict(section or {})


def config(name: str, section: dict | None) -> Any:
    """The model's Config from its params section, checked against its field types (pipeline.params)."""
    return from_dict(model_class(name).Config, section, f"models.{name}")


def build(name: str, section: dict | None, inputs: ModelInputs) -> nn.Module:
    """`name` built from its params section and the run's inputs, in one step."""
    traits(name)
    cfg = config(name, section)
    try:
        model = model_class(name)(cfg, inputs)
    except ValueError as e:  # a constructor's check of its settings against the data (sizes, lengths, loss)
        raise ConfigError(f"models.{name}: {e}") from None
    if getattr(model, "cfg", None) is not cfg:
        raise ContractError(f"{name}: keep the Config as `self.cfg` (checkpoints and resume states record it)")
    if any(p.requires_grad for p in model.parameters()) and not callable(getattr(model, "loss", None)):
        raise ContractError(f"{name}: has trainable parameters but no `loss(inputs, targets, negatives, users)` "
                            "(models/contract.py)")
    return model


def model_config(model: nn.Module) -> dict[str, Any]:
    return dataclasses.asdict(model.cfg)


def feature_tables(name: str, section: dict | None, features: Path, prepared: Path,
                   num_items: int) -> dict[str, tuple[str, FeatureTable]]:
    """{modality: (table name, table)} for the model's FEATURES, each checked to come from this
    items.parquet (a table of another preprocessing run is refused)."""
    modalities = traits(name).features
    if not modalities:
        return {}
    cfg = config(name, section)
    source = file_sha256(prepared / "items.parquet")
    out = {}
    for m in modalities:
        table = getattr(cfg, f"{m}_table")
        path = feature_path(features, table, f"models.{name}.{m}_table")
        vectors, mask = load_item_matrix(path, table, num_items, expect={"source_sha256": source})
        out[m] = (table, FeatureTable(torch.as_tensor(vectors), torch.as_tensor(mask)))
    return out


def build_for_run(name: str, section: dict | None, view: TrainView, max_len: int, loss: str, features: Path,
                  prepared: Path) -> tuple[nn.Module, ModelInputs]:
    """The model for a run on `prepared`'s training view: its feature tables loaded, the training
    view's item counts and user count handed in; `loss` is train.loss."""
    tables = feature_tables(name, section, features, prepared, view.num_items)
    if tables:
        log.info("features: %s", {m: f"{t} {tuple(ft.shape)}, {int(ft.mask.reshape(len(ft.mask), -1).any(1).sum())} "
                                     "items" for m, (t, ft) in tables.items()})
    inputs = inputs_for(view, max_len, loss, {m: ft for m, (_, ft) in tables.items()})
    return build(name, section, inputs), inputs


def inputs_for(view: TrainView, max_len: int, loss: str, features: dict | None = None) -> ModelInputs:
    """What a run on this training view hands a model: catalogue and user counts, the window, the
    loss (train.loss), the feature tables (by modality) and the view's item counts."""
    if loss not in LOSSES:
        raise ConfigError(f"train.loss={loss!r}: use one of {LOSSES}")
    return ModelInputs(num_items=view.num_items, num_users=view.num_users, max_len=max_len, loss=loss,
                       features=features or {}, item_counts=torch.as_tensor(view.train.counts()))


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The model a checkpoint describes, with its saved state, on `device`; and the checkpoint."""
    ckpt = read_checkpoint(path)
    if "inputs" not in ckpt:
        raise ConfigError(f"{path}: written by an older version of the pipeline (no `inputs`); re-run training "
                          "(dvc repro)")
    model = build(ckpt["model"], ckpt["config"], ModelInputs.placeholder(ckpt["inputs"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device), ckpt


def catalogue_sized(name: str, section: dict, inputs: ModelInputs, model: nn.Module) -> set[str]:
    """State keys whose shape depends on the catalogue (ID embeddings, output biases): found by
    building the same model for one more item and seeing which shapes change."""
    more = ModelInputs.placeholder(inputs.describe() | {"num_items": inputs.num_items + 1})
    probe = build(name, section, more).state_dict()
    return {k for k, v in model.state_dict().items() if probe[k].shape != v.shape}


def param_groups(model: nn.Module, lr: float) -> list[dict] | None:
    """The model's own optimizer groups (hook `param_groups`), or None: every trainable parameter."""
    hook = getattr(model, "param_groups", None)
    return hook(lr) if hook is not None else None


def needs(params: dict) -> dict[str, bool]:
    """{stage: needed} for the feature stages and the pre-training, from the selected model."""
    name, section = selected(params)
    extract = (params.get("features") or {}).get("extract", "auto")
    if extract not in ("auto", "all"):
        raise ConfigError(f"features.extract={extract!r}: use 'auto' or 'all'")
    cfg = config(name, section)
    stages = {feature_stage(getattr(cfg, f"{m}_table"), f"models.{name}.{m}_table") for m in traits(name).features}
    return {**{s: extract == "all" or s in stages for s in FEATURE_STAGES}, "pretrain": pretraining_skipped(params)
            is None}


def pretraining_skipped(params: dict) -> str | None:
    """Why the pretrain stage has nothing to do for the selected model (None: it pre-trains)."""
    name, section = selected(params)
    if not traits(name).pretraining:
        return f"model={name!r} uses no pre-training"
    cfg = config(name, section)
    if not cfg.pretrained:
        return f"models.{name}.pretrained is false"
    if cfg.pretrained_path:
        return f"models.{name}.pretrained_path points at another run's weights"
    wanted = (params.get("pretrain") or {}).get("model", name)
    if wanted != name:
        raise ConfigError(f"the selected model {name!r} starts from pre-trained weights, but pretrain.model is "
                          f"{wanted!r}: set pretrain.model: {name} (or models.{name}.pretrained: false)")
    return None


def pretraining_settings(name: str, section: dict) -> dict:
    """The part of a PRETRAINING model's section its pre-training depends on (FINE_TUNING_ONLY left out)."""
    return {k: v for k, v in section.items() if k not in traits(name).fine_tuning_only}


def pretrainable(name: str) -> None:
    if not check(model_class(name, "pretrain.model")).pretraining:
        pre = [m for m in MODELS if check(MODELS[m]).pretraining]
        raise ConfigError(f"pretrain.model={name!r}: only models with PRETRAINING can be pre-trained ({pre})")


def start_pretrained(model: nn.Module, name: str, pretrain: Path) -> dict | None:
    """A PRETRAINING model with `pretrained: true` starts from the pretrain stage's weights (or its
    `pretrained_path`); returns what was loaded (None when it starts from scratch)."""
    if not traits(name).pretraining or not model.cfg.pretrained:
        return None
    path = Path(model.cfg.pretrained_path) if model.cfg.pretrained_path else pretrain / PRETRAINED_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no pre-trained weights; run the pretrain stage (dvc repro) or set "
                                f"models.{name}.pretrained: false")
    saved = load_tensors(path, "pre-trained weights file", "delete it and re-run the pretrain stage (dvc repro)")
    if "state" not in saved:
        raise FileNotFoundError(f"{path}: the pretrain stage did not pre-train ({saved.get('skipped')}); run it with "
                                f"model={name} selected (dvc repro), or set models.{name}.pretrained: false")
    if saved.get("model") != name:
        raise ConfigError(f"{path} holds pre-trained {saved.get('model')!r} weights, this run trains {name!r}")
    model.load_pretrained(saved["state"], str(path))
    log.info("initialised %s from %s (%s epochs of pre-training)", name, path, saved["meta"].get("epochs"))
    return {"path": str(path), "epochs": saved["meta"].get("epochs")}
