"""Check a whole params.yaml at once: every core section (pipeline.config), every data-set entry
against its source's settings and every model section against its Config — each through
pipeline.params.from_dict, one line per problem. The plan stage runs it, so `dvc repro` stops at a
bad key before anything trains.

    python -m pipeline.schema [params.yaml]
"""

from __future__ import annotations

import argparse
from typing import Any

from pipeline import builder, config
from pipeline.params import ConfigError, read_params
from pipeline.sources import dataset_config


def check_all(params: dict[str, Any]) -> dict[str, Any]:
    """params (checked and with numbers-as-strings converted), or the first problem as a ConfigError."""
    config.check(params)
    for name, entry in (params.get("datasets") or {}).items():
        dataset_config(name, entry)
    for name, section in (params.get("models") or {}).items():
        builder.model_class(name, f"params.yaml `models.{name}`: the model")
        builder.config(name, section)
    return params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("params", nargs="?", default="params.yaml")
    path = ap.parse_args().params
    try:
        params = check_all(read_params(path))
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{path}: ok ({len(params.get('datasets') or {})} data sets, {len(params.get('models') or {})} models)")


if __name__ == "__main__":
    main()
