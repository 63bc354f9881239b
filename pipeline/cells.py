"""One cell of a comparison: a (data set, model spec, seed, overrides) run through the same library
functions the DVC stages call — download, preprocess, the feature stages the model reads, its
pre-training, train, evaluate — outside DVC, in a work folder several jobs can share.

    params = with_settings(load_params("params.yaml"), ["train.threads=1"]) | {"dataset": "ml-100k"}
    row = run_cell(params, Path("bench/.work/ml-100k"), "msm4sr:pretrained=false", seed=0, results=Path("out"))

A model spec is `name` or `name:key=value;key=value` (overrides of its params section, an ablation);
settings are `section.key=value` (overrides of params.yaml). Values are YAML (`5`, `1e-3`, `true`,
`[10]`, `co_attention`, `"text"`). The work folder keeps `raw/`, `prepared/`, `features/` (made once,
reused when present: same params!), `pretrain-cache/<hash of the pre-training settings>/` (one
pre-training per setting; a job on another core waits for it under a file lock and reuses its
weights; a killed pre-training resumes) and `runs/<name-model-seed>/` (train saves its state there
after every epoch, so a killed job resumes where it stopped when run again).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from pipeline import builder
from pipeline.config import PreprocessConfig, ProtocolConfig
from pipeline.download import download
from pipeline.evaluate import evaluate
from pipeline.features import image, keywords, text
from pipeline.features.common import open_stage
from pipeline.layout import FEATURE_STAGES, RunDirs
from pipeline.params import ConfigError, from_dict
from pipeline.preprocess import run as preprocess
from pipeline.pretrain import pretrain
from pipeline.tables import atomic_path, read_json
from pipeline.train import train

log = logging.getLogger("pipeline.cells")

FEATURE_RUNNERS = {"text": text.run, "image": image.run, "keywords": keywords.run}


def parse_value(text: str, where: str) -> Any:
    """A value typed on a command line, read as YAML 1.2-ish: numbers (`1e-3` included), booleans,
    null, lists, mappings, else the bare string."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: cannot read {text!r} ({str(e).splitlines()[0]}); write a number, true/false, "
                          "a [list] or a word") from None
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value):
        return float(value)  # YAML 1.1 reads 1e-3 as a string
    return value


def with_settings(params: dict, assignments: list[str]) -> dict:
    """params.yaml's dict with `section.key=value` overrides applied (a new dict)."""
    params = json.loads(json.dumps(params))
    for a in assignments:
        if "=" not in a:
            raise ConfigError(f"setting {a!r}: write section.key=value, e.g. train.epochs=5")
        key, value = a.split("=", 1)
        *path, last = key.split(".")
        node = params
        for p in path:
            node = node.setdefault(p, {})
        node[last] = parse_value(value, key)
    return params


def parse_spec(spec: str) -> tuple[str, dict]:
    """'msm4sr:pretrained=false;nip=false' -> ('msm4sr', {'pretrained': False, 'nip': False})."""
    name, _, rest = spec.partition(":")
    builder.model_class(name, f"model spec {spec!r}: model")
    over = {}
    for part in filter(None, rest.split(";")):
        if "=" not in part:
            raise ConfigError(f"model spec {spec!r}: {part!r} is not key=value (e.g. {name}:hidden=32;dropout=0.1)")
        key, value = part.split("=", 1)
        over[key] = parse_value(value, f"{name}.{key}")
    builder.config(name, over)  # an unknown key or a bad value: an error now, not hours into a queue
    return name, over


def cell_params(params: dict, spec: str, seed: int) -> dict:
    """params.yaml's dict for one cell: the spec's model selected with its overrides, train.seed set."""
    name, over = parse_spec(spec)
    models = (params.get("models") or {}) | {name: ((params.get("models") or {}).get(name) or {}) | over}
    out = params | {"model": name, "models": models, "train": (params.get("train") or {}) | {"seed": seed}}
    if builder.traits(name).pretraining:  # the pretrain stage pre-trains the cell's model
        out["pretrain"] = (params.get("pretrain") or {}) | {"model": name}
    return out


def run_slug(name: str, model: str, seed: int) -> str:
    """A file-name-safe name for one (result file, model spec, seed) run."""
    return re.sub(r"[^A-Za-z0-9]+", "_", f"{Path(name).stem}-{model}-s{seed}").strip("_")


def prepare(params: dict, work: Path) -> dict:
    """download -> preprocess of `params['dataset']` into work/raw and work/prepared (reused when
    already there); returns the preprocessing stats."""
    dirs = RunDirs(work)
    if (dirs.prepared / "stats.json").is_file():
        log.info("reusing %s", dirs.prepared)
        return read_json(dirs.prepared / "stats.json")
    download(params, dirs.raw)
    return preprocess(dirs.raw, dirs.prepared, from_dict(PreprocessConfig, params.get("preprocess"), "preprocess"))


def extract(params: dict, work: Path, stages=FEATURE_STAGES) -> None:
    """The feature stages, as `dvc repro` would run them, into work/features (a stage whose folder
    already holds its report or tables is kept)."""
    dirs = RunDirs(work)
    for name in stages:
        folder = dirs.features / name
        if not (folder / "report.json").is_file() and not any(folder.glob("*.parquet")):
            FEATURE_RUNNERS[name](open_stage(name, params, dirs.prepared, dirs.raw, folder))


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive lock on `path` (created): jobs sharing a work folder take turns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def pretrained(params: dict, work: Path, folder: Path) -> dict:
    """The pretrain stage for these model + pretrain settings, once per setting in
    work/pretrain-cache (jobs on other cores wait under a lock and reuse the weights; a killed
    pre-training resumes after its last epoch); links folder/pretrain to it and returns the row
    fields: `pretrain` (settings, pair visits, seconds of pre-training epochs, pairs/s, the first
    and last epochs' losses) and this job's share of its wall time: `pretrain_wait_s` (waiting for
    another job's pre-training) and `pretrain_here_s` (pre-training in this process; 0 if reused)."""
    name = params["model"]
    key = json.dumps({f"models.{name}": builder.pretraining_settings(name, params["models"][name]),
                      "pretrain": params.get("pretrain") or {}}, sort_keys=True)
    target = work / "pretrain-cache" / hashlib.sha256(key.encode()).hexdigest()[:16]
    target.mkdir(parents=True, exist_ok=True)
    t0, here = time.perf_counter(), 0.0
    with locked(target / ".lock"):  # another job pre-training these settings: wait for its weights
        waited = time.perf_counter() - t0
        if not (target / "summary.json").is_file() or not (target / builder.PRETRAINED_WEIGHTS).is_file():
            info = pretrain(params, folder / "prepared", folder / "features", target)
            history = info["history"]
            summary = {"settings": params.get("pretrain") or {}, "pairs": info["pairs"], "epochs": len(history),
                       "pair_visits": sum(r.get("pair_visits", 0) for r in history),
                       "seconds": sum(info["epoch_seconds"]),  # every epoch, also those before a resume
                       "pairs_per_s": info["pairs_per_s"], "first_epoch": history[0] if history else {},
                       "last_epoch": history[-1] if history else {}}
            with atomic_path(target / "summary.json") as tmp:
                tmp.write_text(json.dumps(summary, indent=1))
            here = time.perf_counter() - t0 - waited
        else:
            log.info("reusing the pre-trained weights in %s", target)
    link = folder / "pretrain"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target.resolve())
    return {"pretrain": json.loads((target / "summary.json").read_text()), "pretrain_wait_s": round(waited, 1),
            "pretrain_here_s": round(here, 1)}


def keep_ranks(src: Path, results: Path, name: str, model: str, seed: int) -> str:
    """Copy a run's per-query ranks under results/ranks/; returns the path relative to `results`
    (what `pipeline.compare` reads for paired statistics)."""
    dst = results / "ranks" / f"{run_slug(name, model, seed)}.parquet"
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return str(dst.relative_to(results))


def run_cell(params: dict, work: Path, spec: str, seed: int, results: Path, name: str = "cells",
             keep_model: Path | None = None) -> dict:
    """Train and evaluate one cell on work's data (prepared and extracted first when missing);
    returns its result row: seed, wall seconds, train.json, metrics.json, the spec, where its ranks
    were copied (under `results`) and, for a pre-training model, its pre-training."""
    t0 = time.perf_counter()
    p = cell_params(params, spec, seed)
    needs = builder.needs(p)
    with locked(work / ".prepare.lock"):  # another job on this work folder: wait for its data and tables
        prepare(p, work)
        extract(p, work, [s for s in FEATURE_STAGES if needs[s]])
    out = RunDirs(work).root / "runs" / run_slug(name, spec, seed)
    with tempfile.TemporaryDirectory() as scratch:  # this job's view of work: its own pretrain link
        folder = Path(scratch)
        for sub in ("prepared", "features"):
            if (work / sub).is_dir():
                (folder / sub).symlink_to((work / sub).resolve())
        pre = pretrained(p, work, folder) if needs["pretrain"] else {}
        info = train(p, folder / "prepared", out, folder / "features", folder / "pretrain")
        res = evaluate(p, folder / "prepared", out / "model.pt", out / "metrics.json")
    ranks = keep_ranks(out / "ranks.parquet", results, name, spec, seed)
    curve = validation_curve(out / "curve.csv", p)
    if keep_model is not None:  # the file to copy the trained model to (a transfer source)
        with atomic_path(keep_model) as tmp:  # a waiting transfer job never reads half a file
            shutil.copyfile(out / "model.pt", tmp)
    shutil.rmtree(out)  # what the row needs is copied out; a later run starts afresh
    return {"seed": seed, "wall_s": time.perf_counter() - t0, **info, **res, "model": spec, "ranks": ranks,
            "curve": curve, **pre}


def validation_curve(path: Path, params: dict) -> dict[str, list]:
    """A run's validation curve, kept with its result so stopping rules can be replayed on it
    (`pipeline.study`): epoch, optimizer step and the selection metric after every epoch."""
    key = f"valid/{from_dict(ProtocolConfig, params.get('protocol'), 'protocol').select_metric}"
    curve = pl.read_csv(path)
    return {"epoch": curve["epoch"].to_list(), "step": curve["step"].to_list(),
            key: curve[key].to_list()}


def trainable_parameters(params: dict, work: Path, spec: str, overrides: dict | None = None, view=None) -> int:
    """Trainable parameters of `spec` as the train stage builds it now on work's tables (with
    `overrides` of its section, e.g. AutoMLP's searched length); `view`: work's training view."""
    from pipeline.data import load_training_view

    p = cell_params(params, spec, 0)
    name = p["model"]
    dirs = RunDirs(work)
    view = view or load_training_view(dirs.prepared)
    model, _ = builder.build_for_run(name, p["models"][name] | (overrides or {}), view,
                                     from_dict(PreprocessConfig, p.get("preprocess"), "preprocess").max_len,
                                     (p.get("train") or {}).get("loss", "ce"), dirs.features, dirs.prepared)
    return sum(t.numel() for t in model.parameters() if t.requires_grad)
