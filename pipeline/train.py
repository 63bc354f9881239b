"""Training one run (the `train` stage's library): the selected model built from the prepared
tables (pipeline.builder), its procedure (pipeline.procedures: fit, or search then fit), and the
outputs — checkpoint, per-epoch curve, run summary, timings.

Reads `model`, `models.<model>`, `train`, `protocol` and `preprocess.max_len` from params.yaml.
Everything here sees the training view only (`data.load_training_view`): each user's sequence
without its last two items, plus the validation targets for early stopping and AutoMLP's α.
"""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from pipeline import builder, distributed
from pipeline.checkpoint import load_tensors, run_params, save_checkpoint
from pipeline.config import PreprocessConfig, ProtocolConfig, TrainConfig, load_params
from pipeline.data import load_training_view
from pipeline.device import host, resolve_device
from pipeline.layout import RunDirs
from pipeline.loop import finished, seed_everything
from pipeline.params import ConfigError, from_dict
from pipeline.procedures import PROCEDURES, Run
from pipeline.tables import atomic_path, write_json
from pipeline.trainer import fit

log = logging.getLogger("pipeline.train")

RUN_COLUMNS = ("train_s", "eval_s")  # per-epoch timings: in the timing file, not in the hashed curve


def transfer(model, name: str, section: dict, inputs, source: Path) -> dict:
    """Start `model` (built for this catalogue, its feature buffers and statistics from this data set)
    from a source run's checkpoint: every learned *parameter* whose shape does not depend on the
    catalogue is copied; catalogue-sized parameters (ID embeddings, output biases: found by building
    the same config for one more item and seeing which shapes change) and every buffer (feature
    tables, feature statistics, counts) stay this data set's own. Returns what was copied and skipped."""
    path = source / "model.pt" if source.is_dir() else source
    if not path.is_file():
        raise FileNotFoundError(f"train.init_from={str(source)!r}: no checkpoint there; train the source run first "
                                "and point init_from at its model.pt")
    ckpt = load_tensors(path, "checkpoint", "re-train the source run")
    if ckpt.get("model") != name:
        raise ConfigError(f"train.init_from: {path} holds a {ckpt.get('model')!r} model, this run trains {name!r}")
    sized = builder.catalogue_sized(name, section, inputs, model)
    own = dict(model.named_parameters())
    take, skipped = {}, {"catalogue_sized": sorted(k for k in own if k in sized), "missing_in_source": [],
                         "shape_mismatch": []}
    for k, p in own.items():
        if k in sized:
            continue
        src = ckpt["state_dict"].get(k)
        if src is None:
            skipped["missing_in_source"].append(k)
        elif src.shape != p.shape:
            skipped["shape_mismatch"].append(k)
        else:
            take[k] = src
    if not take:
        raise ConfigError(f"train.init_from: nothing of {path} fits this {name} model (other architecture settings?)")
    model.load_state_dict(take, strict=False)
    log.info("transfer from %s: %d parameter tensors copied; kept this data set's %s", path, len(take),
             {k: len(v) for k, v in skipped.items()})
    return {"source": str(path), "source_items": ckpt["num_items"], "copied": len(take),
            **{k: v for k, v in skipped.items()}}


def train(params: dict, prepared: Path, out: Path, features: Path | None = None, pretrain: Path | None = None,
          params_file: Path | None = None, timing: Path | None = None) -> dict:
    """Train the selected model on the training view of `prepared`. With `params_file`, that file is
    read again at the end and must still say what it said at the start (a second `dvc exp run` in
    the same workspace rewrites it; nothing is written then).

    Writes model.pt, curve.csv and train.json under `out` — results only, byte-identical for the
    same inputs — and the run's timings and host details to `timing` (when given). Returns both."""
    name, section = builder.selected(params)
    pre = from_dict(PreprocessConfig, params.get("preprocess"), "preprocess")
    cfg = from_dict(TrainConfig, params.get("train"), "train")
    protocol = from_dict(ProtocolConfig, params.get("protocol"), "protocol")
    distributed.init(resolve_device(cfg.device, "train.device"))  # under torchrun: join the group
    view = load_training_view(prepared)
    if cfg.order == "shuffled":  # the sequentiality check: the training events' order destroyed, the queries kept
        view = view.shuffled(cfg.seed)
    features = features or RunDirs(prepared.parent).features

    def build(overrides: dict):
        return builder.build_for_run(name, section | overrides, view, pre.max_len, cfg.loss, features, prepared)

    seed_everything(cfg.seed)  # the initial weights too: two runs with one seed are the same run
    model, inputs = build({})
    builder.start_pretrained(model, name, pretrain or RunDirs(prepared.parent).pretrain)
    ready = PROCEDURES[builder.traits(name).procedure](model, Run(view, cfg, pre.max_len, out,
                                                                   lambda o: build(o)[0]))
    model, section = ready.model, section | ready.overrides
    transferred = transfer(model, name, section, inputs, Path(cfg.init_from)) if cfg.init_from else None
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("training %s (%d parameters) on %d users / %d items", name, n_params, view.num_users,
             view.num_items)
    out.mkdir(parents=True, exist_ok=True)
    summary = fit(model, view, cfg, protocol, pre.max_len, state_path=out / "resume.pt")
    if not distributed.is_main():  # every rank holds the same model; rank 0 writes it
        return {k: summary[k] for k in ("best_epoch", "best", "windows")}
    if params_file is not None:
        check_unchanged(params_file, params, name)
    meta = {"best_epoch": summary["best_epoch"], "params": run_params(params, name), "metrics": ready.metrics}
    if transferred:
        meta["transfer"] = transferred
    save_checkpoint(out / "model.pt", name, model, builder.model_config(model), inputs.describe(), meta)
    history = summary["history"]
    with atomic_path(out / "curve.csv") as tmp:
        pl.DataFrame(history).drop(*RUN_COLUMNS).write_csv(tmp)
    info = {k: summary[k] for k in ("best_epoch", "best", "windows")}
    info |= {"model": name, "parameters": n_params, "epochs_run": len(history),
             "resumed_after_epochs": summary["resumed_after"]}  # [] = trained in one process
    info |= ready.info
    if transferred:
        info["transfer"] = transferred
    write_json(out / "train.json", info)
    run = {"seconds": summary["seconds"], "device": summary["device"], "precision": summary.get("precision", "fp32"),
           "train_s_per_epoch": sum(r["train_s"] for r in history) / len(history),
           "eval_s_per_epoch": sum(r["eval_s"] for r in history) / len(history), **host(), **ready.timing}
    if timing is not None:
        write_json(timing, run)
    for state in ("resume.pt", "search.pt"):  # kept until the outputs are written: a kill before resumes
        finished(out / state)
    return info | run


def check_unchanged(params_file: Path, params: dict, name: str) -> None:
    """Refuse to write results when params.yaml no longer selects what this run trained."""
    now = load_params(params_file)
    if now.get("model") != name or run_params(now, name) != run_params(params, name):
        raise ConfigError(f"{params_file} changed while this stage ran (it trained model={name!r}, the file now says "
                          f"model={now.get('model')!r} with other settings?): nothing was written. Another `dvc exp "
                          "run` in this workspace rewrites params.yaml; run experiments one at a time here, or "
                          "queue them (`dvc exp run --queue` + `dvc queue start`)")


def run_stage(params_file: Path, prepared: Path, features: Path, pretrain: Path, out: Path, timing: Path | None,
              module: str | None = None) -> dict:
    """The train stage: with `train.nproc` > 1 relaunched as torchrun workers (`module`), then
    `train` with params.yaml checked again at the end."""
    params = load_params(params_file)
    if module:
        distributed.become_workers(from_dict(TrainConfig, params.get("train"), "train").nproc, module)
    result = train(params, prepared, out, features, pretrain, params_file, timing)
    distributed.finish()
    return result
