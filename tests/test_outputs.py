"""A stage's outputs are one unit: built under a temporary name and moved into place together, so
a failure leaves the previous folder whole; the tables of one folder carry one generation that
readers check; leftovers of interrupted runs are removed and counted; the query CLI refuses feature
tables of another preprocessing run and answers bad input in one line."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from pipeline.config import PreprocessConfig
from pipeline.data import load_split
from pipeline.download import download
from pipeline.preprocess import run
from pipeline.tables import TableError, output_folder, read_provenance
from tests.conftest import ROOT, tiny_params, write_random_features


def prepared(tmp_path, seed: int = 3):
    p = tiny_params()
    p["datasets"]["demo"] |= {"seed": seed}
    download(p, tmp_path / f"raw{seed}")
    run(tmp_path / f"raw{seed}", tmp_path / "prepared", PreprocessConfig(**p["preprocess"]))
    return tmp_path / "prepared"


def test_a_failing_build_leaves_the_previous_folder_whole(tmp_path):
    out = tmp_path / "out"
    with output_folder(out) as tmp:
        (tmp / "a").write_text("1")
        (tmp / "b").write_text("1")
    with pytest.raises(OSError):
        with output_folder(out) as tmp:
            (tmp / "a").write_text("2")
            raise OSError("No space left on device")  # a full disk after the first of two files
    assert (out / "a").read_text() == (out / "b").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing half-built left behind


def test_leftovers_of_a_killed_run_are_removed_and_counted(tmp_path, caplog):
    out = tmp_path / "prepared"
    (tmp_path / ".prepared.tmp-abc").mkdir()
    (tmp_path / ".prepared.old-abc").mkdir()
    (tmp_path / ".prepared.x1.tmp").write_text("")
    with output_folder(out) as tmp:
        (tmp / "x").write_text("")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]
    assert "removed 3 leftover(s) of an interrupted run" in caplog.text


def test_a_prepared_folder_mixing_two_runs_is_refused(tmp_path):
    folder = prepared(tmp_path, seed=3)
    gen = read_provenance(folder / "items.parquet")["generation"]
    assert read_provenance(folder / "sequences.parquet")["generation"] == gen
    load_split(folder)  # one run: fine
    other = prepared(tmp_path / "b", seed=4)
    shutil.copy(other / "items.parquet", folder / "items.parquet")  # a new items table beside old sequences
    with pytest.raises(TableError, match="written by different runs of the stage"):
        load_split(folder)


def query(*args, prepared_dir, features) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.query", "--prepared", str(prepared_dir), "--features",
                           str(features), *args], cwd=ROOT, capture_output=True, text=True)


def test_query_refuses_features_of_another_run_and_bad_input_in_one_line(tmp_path):
    folder = prepared(tmp_path, seed=3)
    write_random_features(folder, tmp_path / "features")
    assert query("item", "1", prepared_dir=folder, features=tmp_path / "features").returncode == 0
    shutil.rmtree(folder)
    prepared(tmp_path, seed=4)  # the prepared tables change; the features stay
    res = query("item", "1", prepared_dir=folder, features=tmp_path / "features")
    assert res.returncode == 1 and "provenance source_sha256" in res.stderr and "Traceback" not in res.stderr
    for args, says in ((["sql", "SELEC title FROM items"], "error: "), (["sql", "SELECT nope FROM items"], "error: "),
                       (["item", "1", "--k", "-1"], "--k -1: give a positive number")):
        res = query(*args, prepared_dir=folder, features=tmp_path / "features")
        assert res.returncode != 0 and says in res.stderr and "Traceback" not in res.stderr, res.stderr
