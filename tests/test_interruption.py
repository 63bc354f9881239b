"""A real SIGKILL in the middle of training; the rerun resumes from the last saved epoch and ends
bit-for-bit where an uninterrupted run ends; nothing half-written ever sits under a final name.
(Feature extraction has the same test in test_features.py.)"""

import os
import subprocess
import sys

import torch
import yaml

from pipeline.download import download
from pipeline.preprocess import PreprocessConfig, run
from tests.conftest import ROOT, tiny_params


def train_cmd(params_file, prepared, out, env_extra=None):
    env = os.environ | {"PYTHONPATH": str(ROOT)} | (env_extra or {})
    return subprocess.run([sys.executable, "-m", "pipeline.train", "--params", str(params_file), "--prepared",
                           str(prepared), "--out", str(out), "--features", str(out / "none"), "--pretrain",
                           str(out / "none")], env=env, capture_output=True, text=True, cwd=ROOT)


def test_killed_training_resumes_and_matches_an_uninterrupted_run(tmp_path):
    p = tiny_params()
    p["train"] |= {"epochs": 5, "patience": 10, "threads": 1}
    download(p, tmp_path / "raw")
    run(tmp_path / "raw", tmp_path / "prepared", PreprocessConfig(**p["preprocess"]))
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(p))

    killed = train_cmd(params_file, tmp_path / "prepared", tmp_path / "a", {"MMREC_KILL_AFTER_EPOCHS": "2"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / "a" / "model.pt").exists()  # no checkpoint under its final name
    state = torch.load(tmp_path / "a" / "resume.pt", weights_only=True)  # complete, loadable
    assert state["progress"]["epoch"] == 2 and len(state["progress"]["history"]) == 2

    resumed = train_cmd(params_file, tmp_path / "prepared", tmp_path / "a")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stderr and "after epoch 2" in resumed.stderr
    assert not (tmp_path / "a" / "resume.pt").exists()

    whole = train_cmd(params_file, tmp_path / "prepared", tmp_path / "b")
    assert whole.returncode == 0, whole.stderr[-2000:]
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    assert a["meta"] == b["meta"]
    for k in b["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert (tmp_path / "a" / "curve.csv").read_text().count("\n") == 6  # header + 5 epochs, none repeated


def test_a_resume_state_from_other_settings_is_ignored(tmp_path):
    p = tiny_params()
    p["train"] |= {"epochs": 2, "threads": 1}
    download(p, tmp_path / "raw")
    run(tmp_path / "raw", tmp_path / "prepared", PreprocessConfig(**p["preprocess"]))
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(p))
    killed = train_cmd(params_file, tmp_path / "prepared", tmp_path / "a", {"MMREC_KILL_AFTER_EPOCHS": "1"})
    assert killed.returncode == -9
    p["train"]["lr"] = 0.01
    params_file.write_text(yaml.safe_dump(p))
    again = train_cmd(params_file, tmp_path / "prepared", tmp_path / "a")
    assert again.returncode == 0 and "saved by a run with other settings" in again.stderr
