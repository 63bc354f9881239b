"""What the three feature stages share: settings, the items they read, image batches, reports."""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import polars as pl
import torch

from pipeline import distributed
from pipeline.config import FeatureSettings, load_params
from pipeline.device import cpu_threads, resolve_device
from pipeline.features.images import SKIP_REASONS, load_image
from pipeline.layout import needed
from pipeline.params import from_dict
from pipeline.tables import file_sha256, output_folder, read_table, write_json

log = logging.getLogger("pipeline.features")


@dataclass
class Stage:
    """A parsed stage invocation: settings, its own params section, inputs and output folder."""

    settings: FeatureSettings
    section: dict
    params: dict
    items: pl.DataFrame
    items_sha256: str
    raw: Path
    out: Path
    work: Path
    device: torch.device
    timing: Path | None = None  # where the run's timings go (never into `out`, which DVC hashes)
    prepared_items: Path | None = None  # items.parquet (its provenance names the source format)


def run_stage(name: str, run: Callable[[Stage], dict], params_file: Path, prepared: Path, raw: Path | None, out: Path,
              plan: Path | None = None, timing: Path | None = None, module: str | None = None) -> dict | None:
    """One feature stage. With `plan` (the plan stage's file for this stage) saying the selected model
    reads none of its tables (and `features.extract` is not `all`), only a marker `report.json` is
    written: the stage costs nothing for ID-only models (pipeline/plan.py). An interrupted run
    resumes with the missing shards only. With `features.nproc` > 1 the command (`module`) re-runs
    itself as that many torchrun workers."""
    if not needed(plan):
        with output_folder(out) as tmp:
            write_json(tmp / "report.json", {"skipped": f"the selected model reads no {name} features; "
                                                        "`dvc exp run -S features.extract=all` extracts them anyway"})
        log.info("%s features not needed by the selected model: skipped (features.extract: auto)", name)
        return None
    params = load_params(params_file)
    if module:
        distributed.become_workers(feature_settings(params).nproc, module)
    stage = open_stage(name, params, prepared, raw, out)
    stage.timing = timing
    if distributed.active():  # several processes: rank 0 writes the tables in place
        report = run(stage)
    else:  # the tables and report.json appear together or not at all
        with output_folder(out) as tmp:
            stage.out = tmp
            report = run(stage)
    distributed.finish()
    return report


STAGE_SECTIONS = ("text", "image", "keywords")  # features.<stage>: one stage's own settings


def feature_settings(params: dict) -> FeatureSettings:
    """The settings the three feature stages share: `features` without the stages' own sections."""
    shared = {k: v for k, v in (params.get("features") or {}).items() if k not in STAGE_SECTIONS}
    return from_dict(FeatureSettings, shared, "features")


def open_stage(name: str, params: dict, prepared: Path, raw: Path, out: Path) -> Stage:
    section = (params.get("features") or {}).get(name) or {}
    settings = feature_settings(params)
    torch.set_num_threads(cpu_threads(settings.threads, "features.threads"))
    items_path = prepared / "items.parquet"
    items = read_table(items_path, "items")
    device = resolve_device(settings.device, "features.device")
    distributed.init(device)  # under torchrun: join the group (shards split across ranks)
    return Stage(settings, section, params, items, file_sha256(items_path), raw, out,
                 out.parent / ".work" / name, device, prepared_items=items_path)


def base_provenance(stage: Stage, name: str, kind: str, **extra) -> dict:
    return {"stage": name, "kind": kind, "source_table": "items.parquet", "source_sha256": stage.items_sha256,
            "dtype": stage.settings.dtype, **extra}


def image_slots(items: pl.DataFrame, max_images: int, counts: Counter) -> pl.DataFrame:
    """One row per (item, image index) for the first `max_images` images; extra images are counted."""
    n = items["image_paths"].list.len().cast(pl.Int64)
    counts["over_max_images"] += int((n - max_images).clip(lower_bound=0).sum())
    counts["items_without_images"] += int((n == 0).sum())
    return (items.select("item_id", pl.col("image_paths").list.head(max_images))
            .explode("image_paths").drop_nulls("image_paths")
            .with_columns(pl.int_range(pl.len()).over("item_id").cast(pl.Int32).alias("image_index"))
            .rename({"image_paths": "path"}))


def image_batches(slots: pl.DataFrame, raw: Path, preprocess, batch_size: int, counts: Counter,
                  max_pixels: int) -> Iterator[tuple[np.ndarray, np.ndarray, torch.Tensor]]:
    """Yield (item_ids, image_indices, pixels) for the images that load; decoding of the next batch
    runs in a background thread while the caller's model works on the current one."""

    def load(rows: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, torch.Tensor | None]:
        keep, tensors = [], []
        for j, path in enumerate(rows["path"].to_list()):
            img = load_image(raw / path, counts, max_pixels=max_pixels)
            if img is not None:
                keep.append(j)
                tensors.append(preprocess(img))
        rows = rows[keep] if keep else rows.clear()
        return (rows["item_id"].to_numpy(), rows["image_index"].to_numpy(),
                torch.stack(tensors) if tensors else None)

    chunks = [slots.slice(s, batch_size) for s in range(0, slots.height, batch_size)]
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(load, chunks[0]) if chunks else None
        for k in range(len(chunks)):
            ids, idx, pixels = pending.result()
            pending = pool.submit(load, chunks[k + 1]) if k + 1 < len(chunks) else None
            if pixels is not None:
                yield ids, idx, pixels


def skipped(counts: Counter) -> dict:
    return {r: int(counts.get(r, 0)) for r in SKIP_REASONS}


RUN_KEYS = ("reused", "computed", "seconds", "items_per_s", "device")  # about the run, not the tables


def write_report(stage: Stage, name: str, report: dict) -> None:
    """`report.json` (counts: the same for the same inputs) beside the tables; the run's timings and
    resumption counts to `stage.timing`. Rank 0 writes them in a distributed run."""
    if not distributed.is_main():
        return
    write_json(stage.out / "report.json", {k: v for k, v in report.items() if k not in RUN_KEYS})
    if stage.timing is not None:
        write_json(stage.timing, {k: report[k] for k in RUN_KEYS if k in report})
    log.info("%s report: %s", name, {k: v for k, v in report.items() if k not in ("provenance",)})
