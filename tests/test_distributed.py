"""torch.distributed paths on CPU: gloo, 2 processes, against one process.

- DDP training with the same global batch follows the one-process curve (loss and validation
  metrics per epoch, final weights) within float tolerance — with CE and with sampled negatives
  (the negatives are drawn for the whole batch by every rank, so the shared generator stays in step).
- Sharded full-ranking evaluation returns exactly the one-process ranks and metrics.
- The train stage with `train.nproc: 2` relaunches itself under torch.distributed.run and writes one
  checkpoint that evaluates like the one-process run's.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import yaml

from pipeline.config import ProtocolConfig, TrainConfig
from pipeline.data import Sequences, Split
from pipeline.evaluation import evaluate_queries
from pipeline.loop import seed_everything
from pipeline.trainer import fit
from tests.tiny import for_view

ROOT = Path(__file__).resolve().parents[1]
SASREC = {"hidden": 16, "heads": 2, "inner": 32, "layers": 1, "dropout": 0.0}


def structured_split(users=80, n_items=40, seed=0):
    """Users walk the catalogue with a stride (next = previous + 3), lengths 8-30: windows with
    different numbers of targets, so ranks hold different shares of each batch."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(8, 31, users)
    flat = np.concatenate([(rng.integers(0, n_items) + 3 * np.arange(n)) % n_items + 1 for n in lengths])
    return Split(Sequences(flat, np.concatenate([[0], np.cumsum(lengths)]), n_items))


def run_fit(loss: str) -> dict:
    split = structured_split()
    seed_everything(0)
    model = for_view("sasrec", SASREC | {"loss": loss}, split.training)
    shared = loss == "sampled_softmax"  # 8 negatives shared by the batch, drawn by popularity (logQ-corrected)
    cfg = TrainConfig(epochs=4, batch_size=32, lr=3e-3, patience=10, seed=0, threads=1, loss=loss,
                      negatives=8 if shared else 2, negatives_by="popularity" if shared else "uniform")
    summary = fit(model, split.training, cfg, ProtocolConfig(ks=[5, 10]), 10)
    metrics, ranks = evaluate_queries(model, split.test_queries(10), ProtocolConfig(ks=[5, 10]), torch.device("cpu"))[:2]
    return {"history": [{k: v for k, v in r.items() if not k.endswith("_s")} for r in summary["history"]],
            "weights": {k: v.detach().clone() for k, v in model.state_dict().items()}, "ranks": ranks,
            "metrics": metrics}


def _worker(rank: int, world: int, init: str, job: str, arg: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        result = run_fit(arg) if job == "fit" else run_eval()
        if rank == 0:
            torch.save(result, out)
    finally:
        dist.destroy_process_group()


def two_processes(tmp_path: Path, job: str, arg: str = "") -> dict:
    out = tmp_path / f"{job}{arg}.pt"
    mp.spawn(_worker, args=(2, f"file://{tmp_path / f'rdv-{job}{arg}'}", job, arg, str(out)), nprocs=2, join=True)
    return torch.load(out, weights_only=False)


@pytest.mark.parametrize("loss", ["ce", "bce", "sampled_softmax"])
def test_ddp_training_matches_one_process(tmp_path, loss):
    torch.set_num_threads(1)
    one = run_fit(loss)
    two = two_processes(tmp_path, "fit", loss)
    assert len(one["history"]) == len(two["history"]) == 4
    for a, b in zip(one["history"], two["history"]):
        assert a["step"] == b["step"]  # the same global batches: same steps per epoch
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-5), (k, a[k], b[k])
    for k, w in one["weights"].items():
        other = two["weights"][k]
        if k.endswith("qkv.bias"):  # the key bias's gradient is 0 in exact arithmetic (softmax is shift-invariant):
            q, _, v = w.chunk(3)     # float noise, which Adam turns into ±lr steps in either run; q and v must agree
            oq, _, ov = other.chunk(3)
            w, other = torch.cat([q, v]), torch.cat([oq, ov])
        torch.testing.assert_close(other, w, rtol=1e-4, atol=1e-5, msg=k)
    assert two["metrics"] == pytest.approx(one["metrics"], rel=1e-4, abs=1e-5)
    assert one["history"][-1]["valid/ndcg@10"] > one["history"][0]["valid/ndcg@10"]  # it did learn something


def run_eval() -> dict:
    split = structured_split(users=101)  # odd: unequal shards
    seed_everything(1)
    model = for_view("sasrec", SASREC, split.training)
    out = {}
    for mask in (True, False):
        out[mask] = evaluate_queries(model, split.test_queries(10), ProtocolConfig(mask_history=mask),
                                     torch.device("cpu"))
    return out


def test_sharded_evaluation_gives_one_process_ranks(tmp_path):
    one = run_eval()
    two = two_processes(tmp_path, "eval")
    for mask in (True, False):
        assert two[mask][0] == one[mask][0]
        np.testing.assert_array_equal(two[mask][1], one[mask][1])
        np.testing.assert_allclose(two[mask][2], one[mask][2], rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(two[mask].top, one[mask].top)  # the recommended lists too
        assert len(two[mask][1]) == 101


@pytest.mark.slow
def test_train_and_evaluate_stages_with_nproc_2_relaunch_under_torchrun(tmp_path):
    """`train.nproc: 2` through the stages' own command lines: one checkpoint, written by rank 0,
    with the one-process run's curve (dropout 0) within float tolerance; the evaluate stage on 2
    processes writes the same metrics.json and ranks.parquet bytes as one process."""
    from pipeline.evaluate import evaluate
    from tests.test_interruption import prepared

    params, _ = prepared(tmp_path, epochs=3, threads=1)
    params["models"]["sasrec"]["dropout"] = 0.0
    curves = {}
    for nproc in (1, 2):
        params["train"]["nproc"] = nproc
        pfile = tmp_path / f"params{nproc}.yaml"
        pfile.write_text(yaml.safe_dump(params))
        out = tmp_path / f"model{nproc}"
        env = os.environ | {"PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-m", "pipeline.stages.train", "--params", str(pfile), "--prepared",
                        str(tmp_path / "prepared"), "--out", str(out), "--features", str(out / "none"), "--pretrain",
                        str(out / "none")], check=True, cwd=ROOT, env=env)
        assert sorted(p.name for p in out.iterdir()) == ["curve.csv", "model.pt", "train.json"]
        curves[nproc] = (out / "curve.csv").read_text().splitlines()
        assert json.loads((out / "train.json").read_text())["epochs_run"] == 3
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "pipeline.stages.evaluate", "--params", str(tmp_path / "params2.yaml"), "--prepared",
                    str(tmp_path / "prepared"), "--checkpoint", str(tmp_path / "model2" / "model.pt"), "--out",
                    str(tmp_path / "e2" / "metrics.json"), "--ranks", str(tmp_path / "e2" / "ranks.parquet")],
                   check=True, cwd=ROOT, env=env)
    evaluate(params, tmp_path / "prepared", tmp_path / "model2" / "model.pt", tmp_path / "e1" / "metrics.json",
             tmp_path / "e1" / "ranks.parquet")  # in this process: one rank
    for name in ("metrics.json", "ranks.parquet"):
        assert (tmp_path / "e2" / name).read_bytes() == (tmp_path / "e1" / name).read_bytes(), name
    assert curves[1][0] == curves[2][0]
    for a, b in zip(curves[1][1:], curves[2][1:]):
        np.testing.assert_allclose(np.array(b.split(","), float), np.array(a.split(","), float), rtol=1e-4, atol=1e-5)
