"""Checkpoints that rebuild their model: {model name, config, inputs, num_items, state_dict, meta}.

Saved atomically and byte-reproducibly; loaded with `weights_only=True` (no unpickling of arbitrary
objects). `pipeline.builder.load_model` rebuilds the model a checkpoint describes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.tables import atomic_path


def save_tensors(obj: dict, path: str | Path) -> None:
    """`torch.save` atomically and byte-reproducibly: through an open file, so the archive's inner
    folder is named `archive` and not after the random temporary file name (which made two saves of
    the same weights differ byte for byte)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def save_checkpoint(path: str | Path, name: str, model: nn.Module, config: dict, inputs: dict,
                    meta: dict | None = None) -> None:
    """`config`: the model's settings (builder.model_config); `inputs`: ModelInputs.describe()."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"model": name, "config": config, "inputs": inputs, "num_items": inputs["num_items"],
               "state_dict": state, "meta": meta or {}}
    save_tensors(payload, path)


def load_tensors(path: Path, what: str, fix: str) -> dict:
    """`torch.load(weights_only=True)` with an error that says what to do for a truncated, corrupt or
    pickled file (torch's own text may invite weights_only=False, i.e. running code: not repeated)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises several types for corrupt files
        raise ValueError(f"{path}: not a readable {what} ({type(e).__name__}: truncated, corrupt, or not tensors "
                         f"only); {fix}") from None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's contents, checked to be one this pipeline wrote."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found; run the train stage first (dvc repro)")
    ckpt = load_tensors(path, "checkpoint", "delete it and re-run training (dvc repro)")
    for key in ("model", "config", "num_items", "state_dict"):
        if key not in ckpt:
            raise ValueError(f"{path}: checkpoint lacks {key!r}; it was not written by this pipeline")
    return ckpt


def run_params(params: dict, name: str) -> dict:
    """The parameters a trained model depends on, as recorded in its checkpoint and checked by evaluate."""
    return {"model": name, "models": (params.get("models") or {}).get(name) or {}, "train": params.get("train") or {},
            "max_len": (params.get("preprocess") or {}).get("max_len")}
