"""Reading `params.yaml` into dataclass configs with errors that say what to fix."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A parameter is missing, unknown or out of range; the message says which and what to do."""


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} not found: stages read their parameters from params.yaml in the project root")
    with open(path) as f:
        params = yaml.safe_load(f) or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return params


def from_dict(cls: type[T], values: dict[str, Any] | None, where: str) -> T:
    """Build dataclass `cls` from `values`, rejecting unknown keys by name."""
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"params.yaml `{where}`: unknown key(s) {unknown}; known keys are {sorted(known)}")
    return cls(**values)


def choose(params: dict[str, Any], key: str, table: str) -> tuple[str, dict[str, Any]]:
    """Return (name, section) for a selector such as `dataset` picking from `datasets`."""
    name = params.get(key)
    options = params.get(table) or {}
    if name not in options:
        raise ConfigError(
            f"params.yaml: {key}={name!r} is not one of the entries under `{table}`: {sorted(options)}. "
            f"Pick one of those (e.g. `dvc exp run -S {key}=<name>`) or add a section for it."
        )
    return name, options[name] or {}


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
