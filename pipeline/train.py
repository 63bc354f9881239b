"""Stage `train`: prepared sequences -> trained model checkpoint + per-epoch curve.

Reads `model`, `models.<model>`, `train`, `protocol` and `preprocess.max_len` from params.yaml.
Everything here sees the training view only (`load_training_view`): each user's sequence without
its last two items, plus the validation targets for early stopping and AutoMLP's α.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from pathlib import Path

import polars as pl

from models import MODELS, build_model, model_config
from pipeline import distributed
from pipeline.checkpoint import load_tensors, save_checkpoint
from pipeline.data import TrainView, training_view
from pipeline.device import host
from pipeline.evaluation import ProtocolConfig
from pipeline.params import invalidate, ConfigError, choose, from_dict, load_params, setup_logging
from pipeline.preprocess import PreprocessConfig
from pipeline.features.store import load_item_matrix
from pipeline.tables import atomic_path, file_sha256, read_table, write_json
from pipeline.trainer import TrainConfig, fit, resolve_device, seed_everything

log = logging.getLogger("pipeline.train")


def load_training_view(prepared: Path) -> TrainView:
    """What training may see of `prepared`: each user's sequence without its last two items and the
    validation targets (pipeline.data.TrainView); the test items are dropped on reading."""
    items = read_table(prepared / "items.parquet", "items")
    return training_view(read_table(prepared / "sequences.parquet", "sequences"), items.height)


# Which stage folder under data/features holds each feature table.
FEATURE_DIRS = {"text": "text", "text_sentences": "text", "text_tokens": "text", "image": "image", "image_grid": "image",
                "keyword_vectors": "keywords"}


def with_run_settings(name: str, model_params: dict, pre: PreprocessConfig, cfg: TrainConfig, view) -> dict:
    """The model section plus what the run decides: max_len from preprocessing, the loss from train
    (unless the section fixes its own, as MMSR's bce), the user count for user-embedding models."""
    model_params = dict(model_params)
    fields = {f.name for f in dataclasses.fields(MODELS[name].Config)}
    if "max_len" in fields:
        model_params["max_len"] = pre.max_len
    if "loss" in fields and model_params.get("loss") is None:
        model_params["loss"] = cfg.loss
    if "num_users" in fields:  # user-embedding models (BPR-MF, FPMC)
        model_params["num_users"] = len(view.valid_targets)
    return model_params


def build_with_features(name: str, model_params: dict, features: Path, prepared: Path, num_items: int):
    """Build `name`; for a model with FEATURES, first load each modality's table (checked against this
    items.parquet), put their shapes into `model_params['features']`, then fill the model's buffers."""
    cls = MODELS[name]
    arrays = {}
    defaults = cls.Config.__dataclass_fields__
    source = file_sha256(prepared / "items.parquet") if hasattr(cls, "FEATURES") else None
    for modality in getattr(cls, "FEATURES", ()):
        key = f"{modality}_table"
        table = model_params.get(key, defaults[key].default)
        if table not in FEATURE_DIRS:
            raise ValueError(f"{key}={table!r}: use one of {sorted(FEATURE_DIRS)}")
        path = features / FEATURE_DIRS[table] / f"{table}.parquet"
        arrays[modality] = (table, *load_item_matrix(path, table, num_items, expect={"source_sha256": source}))
    if arrays:
        model_params["features"] = {m: list(v.shape[1:]) for m, (_, v, _) in arrays.items()}
        log.info("features: %s", {m: f"{t} {tuple(v.shape[1:])}, {int(k.reshape(len(k), -1).any(1).sum())} items"
                                  for m, (t, v, k) in arrays.items()})
    model = build_model(name, model_params, num_items)
    for modality, (_, vectors, mask) in arrays.items():
        model.feats.load(modality, vectors, mask)
    if arrays and hasattr(model, "features_loaded"):  # e.g. MMSR freezes its feature statistics
        model.features_loaded()
    return model


def load_pretrained(model, name: str, pretrain: Path) -> None:
    """Models with `load_m2se` and `pretrained: true` start from the pretrain stage's weights."""
    if not (hasattr(model, "load_m2se") and getattr(model.cfg, "pretrained", False)):
        return
    path = Path(model.cfg.pretrained_path) if model.cfg.pretrained_path else pretrain / f"{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no pre-trained weights; run the pretrain stage (dvc repro) or set "
                                f"models.{name}.pretrained: false")
    ckpt = load_tensors(path, "pre-trained weights file", "delete it and re-run the pretrain stage (dvc repro)")
    if "m2se" not in ckpt:
        raise FileNotFoundError(f"{path}: the pretrain stage ran for another model ({ckpt.get('skipped')}); run it "
                                f"with model={name} selected (dvc repro), or set models.{name}.pretrained: false")
    model.load_m2se(ckpt["m2se"], str(path))
    log.info("initialised %s's M²SE from %s (%s epochs of pre-training)", name, path, ckpt["meta"].get("epochs"))


def transfer(model, name: str, num_items: int, source: Path) -> dict:
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
    cfg = model_config(model)
    probe = build_model(name, cfg, num_items + 1).state_dict()
    own = dict(model.named_parameters())
    sized = {k for k, v in model.state_dict().items() if probe[k].shape != v.shape}
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


def run_params(params: dict, name: str) -> dict:
    """The parameters a trained model depends on, as recorded in its checkpoint and checked by evaluate."""
    return {"model": name, "models": (params.get("models") or {}).get(name) or {}, "train": params.get("train") or {},
            "max_len": (params.get("preprocess") or {}).get("max_len")}


def train(params: dict, prepared: Path, out: Path, features: Path | None = None, pretrain: Path | None = None,
          params_file: Path | None = None, timing: Path | None = None) -> dict:
    """Train the selected model on the training view of `prepared`. With `params_file`, that file is
    read again at the end and must still say what it said at the start (a second `dvc exp run` in
    the same workspace rewrites it; nothing is written then).

    Writes model.pt, curve.csv and train.json under `out` — results only, byte-identical for the
    same inputs — and the run's timings and host details to `timing` (when given). Returns both."""
    name, model_params = choose(params, "model", "models")
    if name not in MODELS:
        raise ValueError(f"params.yaml: model={name!r} has a section but no implementation; registered: {sorted(MODELS)}")
    pre = from_dict(PreprocessConfig, params.get("preprocess"), "preprocess")
    cfg = from_dict(TrainConfig, params.get("train"), "train")
    protocol = from_dict(ProtocolConfig, params.get("protocol"), "protocol")
    distributed.init(resolve_device(cfg.device, "train.device"))  # under torchrun: join the group
    view = load_training_view(prepared)
    model_params = with_run_settings(name, model_params, pre, cfg, view)
    features = features or prepared.parent / "features"
    seed_everything(cfg.seed)  # the initial weights too: two runs with one seed are the same run
    model = build_with_features(name, model_params, features, prepared, view.num_items)
    load_pretrained(model, name, pretrain or prepared.parent / "pretrain")
    searched = None
    if hasattr(model, "chosen_length") and len(model.cfg.short_lengths) > 1:  # AutoMLP: search, then retrain
        from pipeline.search import search

        searched = search(model, view, cfg, pre.max_len)
        model_params = model_params | {"short_lengths": [searched["k"]]}
        model = build_with_features(name, model_params, features, prepared, view.num_items)
        log.info("retraining %s with the chosen short-term length %d only", name, searched["k"])
    transferred = transfer(model, name, view.num_items, Path(cfg.init_from)) if cfg.init_from else None
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("training %s (%d parameters, loss %s) on %d users / %d items", name, n_params,
             getattr(model.cfg, "loss", "-"), len(view.valid_targets), view.num_items)
    out.mkdir(parents=True, exist_ok=True)
    summary = fit(model, view, cfg, protocol, pre.max_len, state_path=out / "resume.pt")
    if not distributed.is_main():  # every rank holds the same model; rank 0 writes it
        return {k: summary[k] for k in ("best_epoch", "best", "windows")}
    if params_file is not None:
        check_unchanged(params_file, params, name)
    meta = {"best_epoch": summary["best_epoch"], "max_len": pre.max_len, "params": run_params(params, name)}
    if searched:
        meta["search"] = {k: searched[k] for k in ("k", "p", "alpha")}
    if transferred:
        meta["transfer"] = transferred
    save_checkpoint(out / "model.pt", name, model, view.num_items, meta)
    history = summary["history"]
    with atomic_path(out / "curve.csv") as tmp:
        pl.DataFrame(history).drop(*RUN_COLUMNS).write_csv(tmp)
    info = {k: summary[k] for k in ("best_epoch", "best", "windows")}
    info |= {"model": name, "parameters": n_params, "epochs_run": len(history),
             "resumed_after_epochs": summary["resumed_after"]}  # [] = trained in one process
    if searched:
        info |= {"search_k": searched["k"], "search_p": searched["p"],
                 "search_history": [{k: v for k, v in r.items() if k != "seconds"} for r in searched["history"]]}
    if transferred:
        info["transfer"] = transferred
    write_json(out / "train.json", info)
    run = {"seconds": summary["seconds"], "device": summary["device"], "precision": summary.get("precision", "fp32"),
           "train_s_per_epoch": sum(r["train_s"] for r in history) / len(history),
           "eval_s_per_epoch": sum(r["eval_s"] for r in history) / len(history), **host()}
    if searched:
        run |= {"search_s": searched["seconds"], "search_s_per_epoch": [r["seconds"] for r in searched["history"]]}
    if timing is not None:
        write_json(timing, run)
    return info | run


RUN_COLUMNS = ("train_s", "eval_s")  # per-epoch timings: in the timing file, not in the hashed curve



def check_unchanged(params_file: Path, params: dict, name: str) -> None:
    """Refuse to write results when params.yaml no longer selects what this run trained."""
    now = load_params(params_file)
    if now.get("model") != name or run_params(now, name) != run_params(params, name):
        raise ConfigError(f"{params_file} changed while this stage ran (it trained model={name!r}, the file now says "
                          f"model={now.get('model')!r} with other settings?): nothing was written. Another `dvc exp "
                          "run` in this workspace rewrites params.yaml; run experiments one at a time here, or "
                          "queue them (`dvc exp run --queue` + `dvc queue start`)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--features", default="data/features")
    ap.add_argument("--pretrain", default="data/pretrain")
    ap.add_argument("--out", default="data/model")
    ap.add_argument("--timing", help="write the run's timings and host here (not hashed; e.g. data/timing/train.json)")
    ap.add_argument("--invalidates", nargs="*", help="later stages' outputs this stage makes stale (removed)")
    args = ap.parse_args()
    setup_logging()
    params = load_params(args.params)
    if int(os.environ.get("RANK", "0")) == 0:  # a torchrun worker other than rank 0 leaves files alone
        invalidate(args.invalidates)
    # DVC runs `python -m pipeline.train`: with train.nproc > 1 it becomes torchrun's workers here
    distributed.become_workers(from_dict(TrainConfig, params.get("train"), "train").nproc, "pipeline.train")
    train(params, Path(args.prepared), Path(args.out), Path(args.features), Path(args.pretrain),
          Path(args.params), Path(args.timing) if args.timing else None)
    distributed.finish()


if __name__ == "__main__":
    main()
