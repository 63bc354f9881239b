"""Tiny models for the registry tests, derived from the model contract: each model's `TINY` config
(models/contract.py) and random feature tables for the modalities it declares."""

from __future__ import annotations

import torch

from models.contract import FeatureTable, ModelInputs
from pipeline import builder

N_ITEMS, B, L = 40, 4, 10
SHAPES = {"text": [3, 8], "image": [2, 12]}  # per item: a 3-sentence stack of 8-d, two 12-d images


def random_tables(shapes: dict[str, list[int]], num_items: int, seed: int = 1) -> dict[str, FeatureTable]:
    """Random feature tables; about one slot in five empty (mask False), row 0 (padding) empty."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for m, shape in shapes.items():
        mask = torch.rand(num_items + 1, *shape[:-1], generator=g) > 0.2
        mask[0] = False
        out[m] = FeatureTable(torch.randn(num_items + 1, *shape, generator=g) * mask[..., None], mask)
    return out


def inputs(name: str, num_items: int = N_ITEMS, shapes: dict | None = None, **over) -> ModelInputs:
    """The inputs the builder would hand `name` on a tiny catalogue (its declared feature tables random)."""
    modalities = builder.traits(name).features
    tables = random_tables({m: (shapes or SHAPES)[m] for m in modalities}, num_items)
    return ModelInputs(**({"num_items": num_items, "num_users": B, "max_len": L, "features": tables} | over))


def build(name: str, num_items: int = N_ITEMS, shapes: dict | None = None, inputs_over: dict | None = None,
          **config):
    """`name` with its TINY config (plus `config` overrides), through the builder."""
    return builder.build(name, dict(builder.traits(name).tiny) | config,
                         inputs(name, num_items, shapes, **(inputs_over or {})))


def for_view(name: str, config: dict, view, max_len: int = 10, loss: str = "ce"):
    """`name` for a training view with no feature tables, as the builder hands it a run's inputs."""
    return builder.build(name, config, builder.inputs_for(view, max_len, loss))
