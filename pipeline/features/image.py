"""The `image_features` stage's library: item images -> one pooled vector per image, stacked per item.

Reads `features.image`. For each item, its first `max_images` images (paths from items.parquet,
relative to the raw folder) are loaded by `pipeline.features.images.load_image` and encoded; the
result is `image.parquet` with `vectors` (max_images x D), `mask` (True where an image loaded and
was encoded) and `count`. A missing, corrupt, truncated or oversized image leaves a False mask slot
and is counted by reason in `report.json`: never a silent zero vector. With `grid: true`, the
patch/region tokens of every encoded image go to `image_grid.parquet` (one row per image; the
MMSR setting keeps 49, e.g. a 7x7 CNN grid).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import polars as pl
import pyarrow as pa

from pipeline.config import ImageConfig, ImageEncoderConfig
from pipeline.features.common import (
    Stage,
    base_provenance,
    image_batches,
    image_slots,
    skipped,
    write_report,
)
from pipeline.features.encoders import ImageEncoder, config_dict
from pipeline.features.store import extract_sharded, stack_table, vector_column
from pipeline.params import ConfigError, from_dict


def grid_size(encoder: ImageEncoder, image_size: int) -> int:
    import torch

    probe = torch.zeros(1, 3, image_size, image_size)
    _, tokens = encoder.forward(probe, grid=True)
    return int(tokens.shape[1]) if tokens is not None else 0


def run(stage: Stage) -> dict:
    cfg = from_dict(ImageConfig, stage.section, "features.image")
    enc_cfg = from_dict(ImageEncoderConfig, cfg.encoder, "features.image.encoder")
    encoder = ImageEncoder(enc_cfg, stage.device)
    grid = grid_size(encoder, enc_cfg.image_size) if cfg.grid else 0
    if cfg.grid and not grid:
        raise ConfigError(f"features.image.grid: encoder kind {enc_cfg.kind!r} gives no token grid; set grid: false")
    dtype = stage.settings.dtype
    counts: Counter = Counter()
    slots_all = image_slots(stage.items, cfg.max_images, counts)
    prov = {"image": base_provenance(stage, "image_features", "image", dim=encoder.dim, slots=cfg.max_images,
                                     **encoder.identity)}
    outputs = {"image": (stage.out / "image.parquet", "image")}
    if grid:
        prov["image_grid"] = base_provenance(stage, "image_features", "image_grid", dim=encoder.dim, grid=grid,
                                             **encoder.identity)
        outputs["image_grid"] = (stage.out / "image_grid.parquet", "image_grid")

    def compute(shard: pl.DataFrame) -> dict[str, pa.Table]:
        ids = shard["item_id"].to_numpy()
        slots = slots_all.join(shard.select("item_id"), on="item_id", how="semi")
        vecs = np.zeros((shard.height, cfg.max_images, encoder.dim), np.float32)
        mask = np.zeros((shard.height, cfg.max_images), bool)
        grid_rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for item_ids, index, pixels in image_batches(slots, stage.raw, encoder.preprocess, encoder.cfg.batch_size,
                                                      counts, cfg.max_pixels):
            pooled, tokens = encoder.forward(pixels, grid=bool(grid))
            rows = np.searchsorted(ids, item_ids)  # shards are sorted by item_id
            vecs[rows, index] = pooled.numpy()
            mask[rows, index] = True
            if grid:
                grid_rows.append((item_ids, index, tokens.numpy()))
        counts["encoded"] += int(mask.sum())
        out = {"image": stack_table(ids, vecs, mask, dtype)}
        if grid:
            gi = np.concatenate([g[0] for g in grid_rows]) if grid_rows else np.zeros(0, np.int32)
            gx = np.concatenate([g[1] for g in grid_rows]) if grid_rows else np.zeros(0, np.int32)
            gt = np.concatenate([g[2] for g in grid_rows]) if grid_rows else np.zeros((0, grid, encoder.dim), np.float32)
            out["image_grid"] = pa.table({"item_id": pa.array(gi, pa.int32()), "image_index": pa.array(gx, pa.int32()),
                                          "tokens": vector_column(gt, dtype)})
        return out

    timing = extract_sharded(stage.items.select("item_id", "image_paths"), compute, outputs, prov,
                             {"image": config_dict(cfg), "encoder": config_dict(encoder.cfg)},
                             stage.work, stage.settings.shard_size, "image features", counts)
    report = image_report(stage, slots_all.height, counts, timing)
    report |= {"encoder": encoder.identity, "dim": encoder.dim, "grid_tokens": grid, "device": str(stage.device)}
    write_report(stage, "image_features", report)
    return report


def image_report(stage: Stage, n_slots: int, counts: Counter, timing: dict) -> dict:
    """Counts by reason over every shard (reused shards bring theirs from their first run)."""
    encoded = int(counts.get("encoded", 0))
    return {"items": stage.items.height, "images_considered": n_slots, "images_encoded": encoded,
            "images_skipped": n_slots - encoded, "skipped": skipped(counts),
            "notes": {k: int(v) for k, v in sorted(counts.items()) if k not in ("encoded", *skipped(counts))},
            **timing}
