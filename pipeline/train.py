"""Stage `train`: prepared sequences -> trained model checkpoint + per-epoch curve.

Reads `model`, `models.<model>`, `train`, `protocol` and `preprocess.max_len` from params.yaml.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

import polars as pl
import torch

from models import MODELS, build_model
from pipeline.checkpoint import save_checkpoint
from pipeline.data import Sequences
from pipeline.evaluation import ProtocolConfig
from pipeline.params import choose, from_dict, load_params, setup_logging
from pipeline.preprocess import PreprocessConfig
from pipeline.features.store import load_item_matrix
from pipeline.tables import atomic_path, file_sha256, read_table, write_json
from pipeline.trainer import TrainConfig, fit, seed_everything

log = logging.getLogger("pipeline.train")


def load_sequences(prepared: Path) -> Sequences:
    items = read_table(prepared / "items.parquet", "items")
    return Sequences.from_table(read_table(prepared / "sequences.parquet", "sequences"), items.height)


# Which stage folder under data/features holds each feature table.
FEATURE_DIRS = {"text": "text", "text_sentences": "text", "image": "image", "image_grid": "image",
                "keyword_vectors": "keywords"}


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
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model.load_m2se(ckpt["m2se"], str(path))
    log.info("initialised %s's M²SE from %s (%s epochs of pre-training)", name, path, ckpt["meta"].get("epochs"))


def train(params: dict, prepared: Path, out: Path, features: Path | None = None, pretrain: Path | None = None) -> dict:
    name, model_params = choose(params, "model", "models")
    if name not in MODELS:
        raise ValueError(f"params.yaml: model={name!r} has a section but no implementation; registered: {sorted(MODELS)}")
    pre = from_dict(PreprocessConfig, params.get("preprocess"), "preprocess")
    cfg = from_dict(TrainConfig, params.get("train"), "train")
    protocol = from_dict(ProtocolConfig, params.get("protocol"), "protocol")
    seq = load_sequences(prepared)
    model_params = dict(model_params)
    if "max_len" in {f.name for f in dataclasses.fields(MODELS[name].Config)}:
        model_params["max_len"] = pre.max_len
    features = features or prepared.parent / "features"
    seed_everything(cfg.seed)  # the initial weights too: two runs with one seed are the same run
    model = build_with_features(name, model_params, features, prepared, seq.num_items)
    load_pretrained(model, name, pretrain or prepared.parent / "pretrain")
    searched = None
    if hasattr(model, "chosen_length") and len(model.cfg.short_lengths) > 1:  # AutoMLP: search, then retrain
        from pipeline.search import search

        searched = search(model, seq, cfg, pre.max_len)
        model_params = model_params | {"short_lengths": [searched["k"]]}
        model = build_with_features(name, model_params, features, prepared, seq.num_items)
        log.info("retraining %s with the chosen short-term length %d only", name, searched["k"])
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("training %s (%d parameters) on %d users / %d items", name, n_params, len(seq.lengths), seq.num_items)
    out.mkdir(parents=True, exist_ok=True)
    summary = fit(model, seq, cfg, protocol, pre.max_len, state_path=out / "resume.pt")
    meta = {"best_epoch": summary["best_epoch"], "max_len": pre.max_len}
    if searched:
        meta["search"] = {k: searched[k] for k in ("k", "p", "alpha", "seconds")}
    save_checkpoint(out / "model.pt", name, model, seq.num_items, meta)
    with atomic_path(out / "curve.csv") as tmp:
        pl.DataFrame(summary["history"]).write_csv(tmp)
    info = {k: summary[k] for k in ("best_epoch", "best", "seconds", "device", "windows")}
    info |= {"model": name, "parameters": n_params, "epochs_run": len(summary["history"]),
             "train_s_per_epoch": sum(r["train_s"] for r in summary["history"]) / len(summary["history"])}
    if searched:
        info |= {"search_k": searched["k"], "search_p": searched["p"], "search_s": searched["seconds"],
                 "search_history": searched["history"]}
    write_json(out / "train.json", info)
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--features", default="data/features")
    ap.add_argument("--pretrain", default="data/pretrain")
    ap.add_argument("--out", default="data/model")
    args = ap.parse_args()
    setup_logging()
    train(load_params(args.params), Path(args.prepared), Path(args.out), Path(args.features), Path(args.pretrain))


if __name__ == "__main__":
    main()
