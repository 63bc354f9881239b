"""Reading `params.yaml` into typed dataclass configs, with errors that say what to fix.

Every section is a dataclass whose field types are its schema: `Positive`, `Prob`, `Literal[...]`
and so on (the types below; models use models.contract's). `from_dict` validates a section with
pydantic (the validation library behind the study files too): unknown keys, wrong types and
out-of-range values are one-line `ConfigError`s naming the key, the value and what is allowed; a
number written as a string (YAML 1.1 reads `1e-3` as one) is converted with a note; a quoted
boolean (`"false"`, which Python would read as true) is refused. pipeline.config checks the whole file.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import typing
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import Field, TypeAdapter, ValidationError

T = TypeVar("T")
log = logging.getLogger("pipeline.params")

Positive = Annotated[int, Field(gt=0)]
NonNegative = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Share = Annotated[float, Field(gt=0, le=1)]  # a share of a whole: (0, 1]
Unit = Annotated[float, Field(ge=0, le=1)]  # a probability


class ConfigError(ValueError):
    """A parameter is missing, unknown or out of range; the message says which and what to do."""


def read_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """The YAML mapping of a params file, unchecked (pipeline.config.load_params checks it)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} not found: stages read their parameters from params.yaml in the project root")
    try:
        with open(path) as f:
            params = yaml.safe_load(f) or {}
    except yaml.MarkedYAMLError as e:
        line = f":{e.problem_mark.line + 1}" if e.problem_mark is not None else ""
        raise ConfigError(f"{path}{line}: not valid YAML ({e.problem or e})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return params


@functools.lru_cache(maxsize=None)
def adapter(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)


@functools.lru_cache(maxsize=None)
def field_adapters(cls: type) -> dict[str, TypeAdapter]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: TypeAdapter(hints[f.name]) for f in dataclasses.fields(cls)}


class Checked:
    """A section dataclass that checks its fields against their types however it is made (from
    params.yaml through `from_dict`, or in code): a bad value cannot make an instance."""

    def __post_init__(self) -> None:
        for name, ta in field_adapters(type(self)).items():
            value = vars(self)[name]
            try:
                checked = ta.validate_python(value)
            except ValidationError as e:
                err = e.errors()[0]
                raise ConfigError(f"{type(self).__name__}.{name}: {value!r} is not allowed: "
                                  f"{err['msg'][0].lower()}{err['msg'][1:]}") from None
            if isinstance(checked, bool) and not isinstance(value, bool):
                raise ConfigError(f"{type(self).__name__}.{name}: {value!r} is not allowed: write true or false")
            setattr(self, name, checked)


def from_dict(cls: type[T], values: dict[str, Any] | None, where: str) -> T:
    """Dataclass `cls` from a params section, validated against its field types (see the module)."""
    if values is not None and not isinstance(values, dict):
        raise ConfigError(f"params.yaml `{where}`: {values!r} — expected a mapping of keys to values")
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"params.yaml `{where}`: unknown key(s) {unknown}; known keys are {sorted(known)}")
    try:
        obj = adapter(cls).validate_python(values)
    except ValidationError as e:
        err = e.errors()[0]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, ConfigError):  # a check across fields (the dataclass's __post_init__)
            raise cause from None
        key = where + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"] if p != "__post_init__")
        raise ConfigError(f"params.yaml `{key}`: {err['input']!r} is not allowed: {err['msg'][0].lower()}"
                          f"{err['msg'][1:]}") from None
    for key, value in values.items():
        got = vars(obj)[key]
        if isinstance(got, bool) and not isinstance(value, bool):  # "false" or 0 would pass as a flag
            raise ConfigError(f"params.yaml `{where}.{key}`: {value!r} is not allowed: write true or false, "
                              "without quotes")
        if isinstance(value, str) and isinstance(got, (int, float)):
            log.warning("params.yaml `%s.%s`: the string %r read as the number %r (YAML 1.1 reads 1e-3 as a "
                        "string: write 1.0e-3)", where, key, value, got)
    return obj


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
