"""No test label reaches training: poison every user's test item and train every registered model
on the clean and the poisoned tables. Weights, the validation curve, AutoMLP's search and MSM4SR's
pre-trained weights must be bit-identical; only the evaluate stage may see the difference."""

import json
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


def poison(prepared: Path, seed: int = 0, after: int | None = None) -> np.ndarray:
    """Replace every held-out event by a different random item, in both sequences.parquet and
    interactions.parquet: leave-one-out, every user's last item (the test target); with `after` (a
    time split's cut), every event at or after that time. Returns how many events changed."""
    items = read_table(prepared / "items.parquet", "items").height
    seqs = read_table(prepared / "sequences.parquet", "sequences").sort("user_id")
    rng = np.random.default_rng(seed)
    lists, changed = [], 0
    for s, t in zip(seqs["item_ids"].to_list(), seqs["timestamps"].to_list()):
        hit = [i == len(s) - 1 for i in range(len(s))] if after is None else [x >= after for x in t]
        new = [(x - 1 + int(rng.integers(1, items))) % items + 1 if h else x for x, h in zip(s, hit)]  # never the old
        changed += sum(hit)
        lists.append(new)
    write_table(seqs.with_columns(pl.Series("item_ids", lists, pl.List(pl.Int32))), prepared / "sequences.parquet",
                "sequences", read_provenance(prepared / "sequences.parquet"))
    inter = read_table(prepared / "interactions.parquet", "interactions").sort("user_id", "position")
    flat = pl.Series("item_id", [x for s in lists for x in s], pl.Int32)
    write_table(inter.with_columns(flat), prepared / "interactions.parquet", "interactions",
                read_provenance(prepared / "interactions.parquet"))
    return changed


@pytest.fixture(scope="module", params=["loo", "time"])
def data(request, tmp_path_factory):
    """Clean and poisoned prepared folders: leave-one-out poisons every test item; the time split
    poisons every event from the second cut on (all its test events)."""
    tmp = tmp_path_factory.mktemp(f"leak-{request.param}")
    p = tiny_params()
    p["preprocess"] |= {"split": request.param}
    p["train"] |= {"epochs": 3, "patience": 3, "threads": 1}
    p["pretrain"] |= {"epochs": 2, "threads": 1}
    download(p, tmp / "raw")
    run(tmp / "raw", tmp / "clean" / "prepared", PreprocessConfig(**p["preprocess"]))
    shutil.copytree(tmp / "clean" / "prepared", tmp / "poisoned" / "prepared")
    cuts = json.loads((tmp / "clean" / "prepared" / "stats.json").read_text())["split"].get("cuts")
    test = (read_table(tmp / "clean" / "prepared" / "interactions.parquet", "interactions")["split"] == "test").sum()
    assert poison(tmp / "poisoned" / "prepared", after=cuts[1] if cuts else None) == test > 0  # every test event
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


def test_a_time_split_trains_on_the_events_before_its_first_cut_only(tmp_path):
    """Poison every event from the time split's FIRST cut on (validation and test): the training
    view and every epoch's training loss stay bit-identical (validation, which reads those events by
    design, may pick another epoch; AutoMLP's search trains on validation items, §2.4.1)."""
    from pipeline.data import load_training_view
    from pipeline.train import train

    p = tiny_params()
    p["preprocess"] |= {"split": "time"}
    p["train"] |= {"epochs": 3, "patience": 3, "threads": 1}
    download(p, tmp_path / "raw")
    run(tmp_path / "raw", tmp_path / "clean" / "prepared", PreprocessConfig(**p["preprocess"]))
    shutil.copytree(tmp_path / "clean" / "prepared", tmp_path / "poisoned" / "prepared")
    c1 = json.loads((tmp_path / "clean" / "prepared" / "stats.json").read_text())["split"]["cuts"][0]
    assert poison(tmp_path / "poisoned" / "prepared", after=c1) > 0
    views = {v: load_training_view(tmp_path / v / "prepared") for v in VARIANTS}
    assert np.array_equal(views["clean"].train.flat, views["poisoned"].train.flat)
    assert not np.array_equal(views["clean"].valid_targets, views["poisoned"].valid_targets)
    for name in ("sasrec", "gru4rec"):
        losses = [curve(train(p | {"model": name}, tmp_path / v / "prepared", tmp_path / v / name) and
                        tmp_path / v / name / "curve.csv")["loss"] for v in VARIANTS]
        assert losses[0].equals(losses[1]), name
