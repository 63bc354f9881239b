"""Device choice shared by every stage: `auto` is CUDA when present, else CPU."""

from __future__ import annotations

import torch

from pipeline.params import ConfigError


def resolve_device(name: str = "auto", where: str = "train.device") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{where}={name!r} but CUDA is not available here; use 'auto' or 'cpu'")
    return torch.device(name)
