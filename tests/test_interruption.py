"""A real SIGKILL in the middle of training; the rerun resumes from the last saved epoch and ends
bit-for-bit where an uninterrupted run ends; nothing half-written ever sits under a final name.
(Feature extraction has the same test in test_features.py.)"""

import json
import os
import subprocess
import sys

import torch
import yaml

from pipeline.config import PreprocessConfig
from pipeline.download import download
from pipeline.params import ConfigError
from pipeline.preprocess import run
from tests.conftest import ROOT, tiny_params


def train_cmd(params_file, prepared, out, env_extra=None):
    env = os.environ | {"PYTHONPATH": str(ROOT)} | (env_extra or {})
    return subprocess.run([sys.executable, "-m", "pipeline.stages.train", "--params", str(params_file), "--prepared",
                           str(prepared), "--out", str(out), "--features", str(out / "none"), "--pretrain",
                           str(out / "none"), "--timing", str(out / "timing.json")],  # never the repo's data/
                          env=env, capture_output=True, text=True, cwd=ROOT)


def prepared(tmp_path, model="sasrec", **train):
    """Tiny demo prepared under tmp_path and its params.yaml (train section updated by `train`)."""
    p = tiny_params(model=model)
    p["train"] |= train
    download(p, tmp_path / "raw")
    run(tmp_path / "raw", tmp_path / "prepared", PreprocessConfig(**p["preprocess"]))
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(p))
    return p, params_file


def test_killed_training_resumes_and_matches_an_uninterrupted_run(tmp_path):
    p, params_file = prepared(tmp_path, epochs=5, patience=10, threads=1)

    killed = train_cmd(params_file, tmp_path / "prepared", tmp_path / "a", {"MMREC_KILL_AFTER_EPOCHS": "2"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / "a" / "model.pt").exists()  # no checkpoint under its final name
    state = torch.load(tmp_path / "a" / "resume.pt", weights_only=True)  # complete, loadable
    assert state["progress"]["epoch"] == 2 and len(state["progress"]["history"]) == 2

    resumed = train_cmd(params_file, tmp_path / "prepared", tmp_path / "a")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming training from" in resumed.stderr and "after epoch 2" in resumed.stderr
    assert not (tmp_path / "a" / "resume.pt").exists()

    whole = train_cmd(params_file, tmp_path / "prepared", tmp_path / "b")
    assert whole.returncode == 0, whole.stderr[-2000:]
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    assert a["meta"] == b["meta"]
    for k in b["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert (tmp_path / "a" / "curve.csv").read_text().count("\n") == 6  # header + 5 epochs, none repeated


def test_a_killed_automlp_search_resumes_and_so_does_the_fit_after_it(tmp_path):
    """AutoMLP's search runs in the same epoch loop: killed after search epoch 1 it resumes there;
    killed during the fit after the search, the finished search is reused, not run again. Both end
    with the weights and search record of an uninterrupted run."""
    from tests.conftest import write_random_features

    p, params_file = prepared(tmp_path, model="automlp", epochs=3, patience=10, threads=1)
    p["models"]["automlp"] |= {"search_epochs": 2, "short_lengths": [2, 5]}
    params_file.write_text(yaml.safe_dump(p))
    write_random_features(tmp_path / "prepared", tmp_path / "features")

    def run(out, kill=None):
        env = os.environ | {"PYTHONPATH": str(ROOT)} | ({"MMREC_KILL_AFTER_EPOCHS": str(kill)} if kill else {})
        return subprocess.run([sys.executable, "-m", "pipeline.stages.train", "--params", str(params_file),
                               "--prepared", str(tmp_path / "prepared"), "--features", str(tmp_path / "features"),
                               "--pretrain", str(out / "none"), "--out", str(out)], env=env, capture_output=True,
                              text=True, cwd=ROOT)

    whole = run(tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-2000:]
    expected = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)
    for kill, says in ((1, "resuming the search from"), (3, "the search finished before this run was stopped")):
        out = tmp_path / f"killed-{kill}"
        assert run(out, kill).returncode == -9
        resumed = run(out)
        assert resumed.returncode == 0 and says in resumed.stderr, resumed.stderr[-3000:]
        got = torch.load(out / "model.pt", weights_only=True)
        assert got["meta"] == expected["meta"] and got["config"] == expected["config"]
        assert all(torch.equal(got["state_dict"][k], v) for k, v in expected["state_dict"].items())
        assert json.loads((out / "train.json").read_text())["search_history"] == \
            json.loads((tmp_path / "whole" / "train.json").read_text())["search_history"]
        assert not {"search.pt", "search_state.pt", "resume.pt"} & {f.name for f in out.iterdir()}


def test_a_resume_state_from_other_settings_is_ignored(tmp_path):
    p, params_file = prepared(tmp_path, epochs=2, threads=1)
    killed = train_cmd(params_file, tmp_path / "prepared", tmp_path / "a", {"MMREC_KILL_AFTER_EPOCHS": "1"})
    assert killed.returncode == -9
    p["train"]["lr"] = 0.01
    params_file.write_text(yaml.safe_dump(p))
    again = train_cmd(params_file, tmp_path / "prepared", tmp_path / "a")
    assert again.returncode == 0 and "saved by a run with other settings" in again.stderr


def test_killed_pretraining_resumes_and_matches_an_uninterrupted_run(tmp_path):
    """MSM4SR's pre-training is SIGKILLed after epoch 1 of 3; the rerun resumes from its saved state
    and ends with exactly the weights of an uninterrupted run."""
    from tests.conftest import write_random_features

    p, params_file = prepared(tmp_path, model="msm4sr")
    p["pretrain"] |= {"epochs": 3, "threads": 1}
    params_file.write_text(yaml.safe_dump(p))
    write_random_features(tmp_path / "prepared", tmp_path / "features")

    def pretrain_cmd(out, env_extra=None):
        env = os.environ | {"PYTHONPATH": str(ROOT)} | (env_extra or {})
        return subprocess.run([sys.executable, "-m", "pipeline.stages.pretrain", "--params", str(params_file), "--prepared",
                               str(tmp_path / "prepared"), "--features", str(tmp_path / "features"), "--out", str(out),
                               "--timing", str(out.parent / f"{out.name}-timing.json")],
                              env=env, capture_output=True, text=True, cwd=ROOT)

    killed = pretrain_cmd(tmp_path / "a", {"MMREC_KILL_AFTER_EPOCHS": "1"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / "a" / "weights.pt").exists()
    assert torch.load(tmp_path / "a" / "resume.pt", weights_only=True)["progress"]["epoch"] == 1
    resumed = pretrain_cmd(tmp_path / "a")
    assert resumed.returncode == 0 and "resuming pre-training" in resumed.stderr and "after epoch 1" in resumed.stderr
    assert not (tmp_path / "a" / "resume.pt").exists()
    whole = pretrain_cmd(tmp_path / "b")
    assert whole.returncode == 0, whole.stderr[-2000:]
    a = torch.load(tmp_path / "a" / "weights.pt", weights_only=True)["state"]
    b = torch.load(tmp_path / "b" / "weights.pt", weights_only=True)["state"]
    for k in b:
        assert torch.equal(a[k], b[k]), k


def test_a_corrupt_or_pickled_resume_state_is_ignored_with_a_hint(tmp_path):
    p, params_file = prepared(tmp_path, epochs=2, threads=1)
    (tmp_path / "a").mkdir()
    for name in ("truncated", "pickled", "other settings"):
        if name == "truncated":
            (tmp_path / "a" / "resume.pt").write_bytes(b"PK\x03\x04 half a zip")
        elif name == "pickled":  # a pickled object (any class): weights_only=True refuses to unpickle it
            torch.save({"key": "x", "progress": ConfigError("not a tensor")}, tmp_path / "a" / "resume.pt")
        else:  # readable, but saved by another run: ignored, and the run does not count as resumed
            torch.save({"key": "another run's settings", "progress": {"epoch": 3}}, tmp_path / "a" / "resume.pt")
        out = train_cmd(params_file, tmp_path / "prepared", tmp_path / "a")
        assert out.returncode == 0, out.stderr[-2000:]
        expected = "saved by a run with other settings" if name == "other settings" else "not a readable resume state"
        assert expected in out.stderr and "starting over" in out.stderr, name
        assert "weights_only=False" not in out.stderr  # never the invitation to unpickle code
        assert (tmp_path / "a" / "model.pt").is_file()
        assert json.loads((tmp_path / "a" / "train.json").read_text())["resumed_after_epochs"] == []  # started over


CELL = ("import json, sys, yaml; from pathlib import Path; from pipeline import cells; "
        "from pipeline.params import setup_logging; setup_logging(); "
        "p = yaml.safe_load(open(sys.argv[1])); "
        "row = cells.run_cell(p, Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), Path(sys.argv[5]), 'r'); "
        "Path(sys.argv[6]).write_text(json.dumps(row, default=str))")


def cell_argv(params_file, work, out, model, seed):
    """One cell (pipeline.cells.run_cell, what every study cell runs) in its own process."""
    return [sys.executable, "-c", CELL, str(params_file), str(work), model, str(seed), str(out), str(out / f"s{seed}.json")]


def test_cells_on_two_cores_share_one_pretraining(tmp_path):
    """Two cells with the same pre-training settings on one work folder: one pre-trains, the other
    waits for it (file lock) and fine-tunes from the same weights; both rows carry its summary."""
    from tests.conftest import write_random_features

    p, params_file = prepared(tmp_path / "w", model="msm4sr", epochs=1, threads=1)
    p["pretrain"]["threads"] = 1
    params_file.write_text(yaml.safe_dump(p))
    write_random_features(tmp_path / "w" / "prepared", tmp_path / "w" / "features")
    (tmp_path / "o").mkdir()
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    jobs = [subprocess.Popen(cell_argv(params_file, tmp_path / "w", tmp_path / "o", "msm4sr", seed),
                             env=env, stderr=subprocess.PIPE, text=True, cwd=ROOT) for seed in (0, 1)]
    logs = [job.communicate()[1] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], [log[-2000:] for log in logs]
    assert sum("pre-training msm4sr on" in log for log in logs) == 1
    assert sum("reusing the pre-trained weights" in log for log in logs) == 1
    rows = [json.loads((tmp_path / "o" / f"s{seed}.json").read_text()) for seed in (0, 1)]
    assert rows[0]["pretrain"] == rows[1]["pretrain"] and rows[0]["pretrain"]["epochs"] == 3
    here = sorted(r["pretrain_here_s"] for r in rows)  # one job pre-trained; the other waited or reused
    assert here[0] == 0 and here[1] > 0 and all(0 <= r["pretrain_wait_s"] <= r["wall_s"] for r in rows)
    reused = next(r for r in rows if r["pretrain_here_s"] == 0)
    assert reused["pretrain_wait_s"] <= here[1] + 1  # no longer than the pre-training it waited for
    assert rows[0]["test/ndcg@10"] != rows[1]["test/ndcg@10"]  # two seeds' fine-tunes, not one result twice
