"""No test label reaches training: poison every user's test item and train every registered model
on the clean and the poisoned tables. Weights, the validation curve, AutoMLP's search and MSM4SR's
pre-trained weights must be bit-identical; only the evaluate stage may see the difference."""

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from models import MODELS
from pipeline.config import PreprocessConfig
from pipeline.download import download
from pipeline.preprocess import run
from pipeline.tables import file_sha256, read_provenance, read_table, write_table
from tests.conftest import tiny_params, write_random_features

VARIANTS = ("clean", "poisoned")


def poison(prepared: Path, seed: int = 0) -> np.ndarray:
    """Replace every user's last item (the test target) by a different random item, in both
    sequences.parquet and interactions.parquet; returns the new test items."""
    items = read_table(prepared / "items.parquet", "items").height
    seqs = read_table(prepared / "sequences.parquet", "sequences").sort("user_id")
    rng = np.random.default_rng(seed)
    last = seqs["item_ids"].list.last().to_numpy()
    new = (last - 1 + rng.integers(1, items, len(last))) % items + 1  # never the old item
    lists = [s[:-1] + [int(t)] for s, t in zip(seqs["item_ids"].to_list(), new)]
    prov = read_provenance(prepared / "sequences.parquet")
    write_table(seqs.with_columns(pl.Series("item_ids", lists, pl.List(pl.Int32))), prepared / "sequences.parquet",
                "sequences", prov)
    inter = read_table(prepared / "interactions.parquet", "interactions")
    test_item = pl.DataFrame({"user_id": seqs["user_id"], "_new": pl.Series(new).cast(pl.Int32)})
    inter = (inter.join(test_item, on="user_id", how="left")
             .with_columns(pl.when(pl.col("split") == "test").then(pl.col("_new")).otherwise(pl.col("item_id"))
                           .alias("item_id")).drop("_new"))
    write_table(inter, prepared / "interactions.parquet", "interactions",
                read_provenance(prepared / "interactions.parquet"))
    return new


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("leak")
    p = tiny_params()
    p["train"] |= {"epochs": 3, "patience": 3, "threads": 1}
    p["pretrain"] |= {"epochs": 2, "threads": 1}
    download(p, tmp / "raw")
    run(tmp / "raw", tmp / "clean" / "prepared", PreprocessConfig(**p["preprocess"]))
    shutil.copytree(tmp / "clean" / "prepared", tmp / "poisoned" / "prepared")
    before = read_table(tmp / "clean" / "prepared" / "sequences.parquet", "sequences")["item_ids"].list.last()
    after = poison(tmp / "poisoned" / "prepared")
    assert (before.to_numpy() != after).all()  # every test target changed
    assert file_sha256(tmp / "clean" / "prepared" / "items.parquet") == \
        file_sha256(tmp / "poisoned" / "prepared" / "items.parquet")
    write_random_features(tmp / "clean" / "prepared", tmp / "features")  # shared: features come from items only
    return tmp, p


def curve(path: Path) -> pl.DataFrame:
    return pl.read_csv(path)  # losses and validation metrics (timings live in the timing file)


@pytest.mark.parametrize("name", list(MODELS))
def test_poisoned_test_labels_leave_training_bit_identical(data, name):
    from pipeline.pretrain import pretrain
    from pipeline.train import train

    tmp, p = data
    params = p | {"model": name}
    infos, ckpts, pretrained = {}, {}, {}
    for v in VARIANTS:
        folder = tmp / v
        if getattr(MODELS[name], "pretrain_loss", None):
            pretrain(params, folder / "prepared", tmp / "features", folder / "pretrain")
            pretrained[v] = torch.load(folder / "pretrain" / "weights.pt", weights_only=True)["state"]
        infos[v] = train(params, folder / "prepared", folder / name, tmp / "features", folder / "pretrain")
        ckpts[v] = torch.load(folder / name / "model.pt", weights_only=True)
    clean, bad = ckpts["clean"]["state_dict"], ckpts["poisoned"]["state_dict"]
    assert clean.keys() == bad.keys()
    for k in clean:
        assert torch.equal(clean[k], bad[k]), f"{name}: weight {k} depends on the test items"
    assert curve(tmp / "clean" / name / "curve.csv").equals(curve(tmp / "poisoned" / name / "curve.csv"))
    meta = {v: ckpts[v]["meta"] for v in VARIANTS}
    assert meta["clean"] == meta["poisoned"]  # best epoch, AutoMLP's k, p and α
    if "search_k" in infos["clean"]:
        assert infos["clean"]["search_k"] == infos["poisoned"]["search_k"]
        assert infos["clean"]["search_history"] == infos["poisoned"]["search_history"]
    for k in pretrained.get("clean", {}):
        assert torch.equal(pretrained["clean"][k], pretrained["poisoned"][k]), f"pre-trained {k} saw the test items"
