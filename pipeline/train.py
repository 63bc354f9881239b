"""Stage `train`: prepared sequences -> trained model checkpoint + per-epoch curve.

Reads `model`, `models.<model>`, `train`, `protocol` and `preprocess.max_len` from params.yaml.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

import polars as pl

from models import MODELS, build_model
from pipeline.checkpoint import save_checkpoint
from pipeline.data import Sequences
from pipeline.evaluation import ProtocolConfig
from pipeline.params import choose, from_dict, load_params, setup_logging
from pipeline.preprocess import PreprocessConfig
from pipeline.tables import atomic_path, read_table, write_json
from pipeline.trainer import TrainConfig, fit

log = logging.getLogger("pipeline.train")


def load_sequences(prepared: Path) -> Sequences:
    items = read_table(prepared / "items.parquet", "items")
    return Sequences.from_table(read_table(prepared / "sequences.parquet", "sequences"), items.height)


def train(params: dict, prepared: Path, out: Path) -> dict:
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
    model = build_model(name, model_params, seq.num_items)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("training %s (%d parameters) on %d users / %d items", name, n_params, len(seq.lengths), seq.num_items)
    summary = fit(model, seq, cfg, protocol, pre.max_len)
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "model.pt", name, model, seq.num_items,
                    {"best_epoch": summary["best_epoch"], "max_len": pre.max_len})
    with atomic_path(out / "curve.csv") as tmp:
        pl.DataFrame(summary["history"]).write_csv(tmp)
    info = {k: summary[k] for k in ("best_epoch", "best", "seconds", "device", "windows")}
    info |= {"model": name, "parameters": n_params, "epochs_run": len(summary["history"]),
             "train_s_per_epoch": sum(r["train_s"] for r in summary["history"]) / len(summary["history"])}
    write_json(out / "train.json", info)
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--out", default="data/model")
    args = ap.parse_args()
    setup_logging()
    train(load_params(args.params), Path(args.prepared), Path(args.out))


if __name__ == "__main__":
    main()
