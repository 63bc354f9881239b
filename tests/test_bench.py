"""Correctness parts of the benchmark helpers."""

import os

import numpy as np
import polars as pl
import pytest
import torch

from bench.synthetic import interactions, vectors, write_inter
from pipeline.config import PreprocessConfig
from pipeline.download import download
from pipeline.metrics import brute_force_ranks, ranks_from_topk
from pipeline.preprocess import preprocess, run
from pipeline.retrieval import exact_topk
from pipeline.sources import SOURCES
from pipeline.sources.recbole import write_atomic
from pipeline.tables import read_table


def test_synthetic_generators_shapes_and_determinism():
    u1, i1 = vectors(100, 300, 16, seed=3)
    u2, i2 = vectors(100, 300, 16, seed=3)
    assert u1.shape == (100, 16) and i1.shape == (300, 16) and u1.dtype == np.float32
    assert np.array_equal(u1, u2) and np.array_equal(i1, i2)
    assert not np.array_equal(u1, vectors(100, 300, 16, seed=4)[0])
    a = interactions(500, 2000, 10_000, seed=1)
    assert a.height == 10_000 and a.equals(interactions(500, 2000, 10_000, seed=1))
    assert a["user"].n_unique() == 500 and a["item"].max() < 2000
    # timestamps strictly increase within each user
    assert a.group_by("user").agg((pl.col("timestamp").diff().drop_nulls() > 0).all())["timestamp"].all()
    counts = a.group_by("item").len()["len"].sort(descending=True).to_numpy()
    assert counts[:20].sum() > 10 * counts[-20:].sum()  # Zipf: a popular head and a long tail


def test_chunked_evaluator_equals_brute_force_on_bench_vectors():
    users, items = vectors(1000, 700, 32, seed=0)
    targets = np.random.default_rng(0).integers(0, 700, 1000)
    s, i = exact_topk(users, items, 51, chunk=97)
    got = ranks_from_topk(s, i, targets)
    want = brute_force_ranks(torch.from_numpy(users), torch.from_numpy(items), torch.from_numpy(targets))
    want[want > 50] = np.inf
    assert (got == want).mean() > 0.995


def test_recbole_atomic_writer_round_trip(tmp_path):
    # a prepared data set -> atomic files -> our RecBole reader -> preprocess (no filtering) -> same sequences
    write_inter(interactions(60, 80, 900, seed=2), tmp_path / "src", "x")
    download({"dataset": "x", "datasets": {"x": {"format": "recbole", "source": str(tmp_path / "src"), "name": "x"}}},
             tmp_path / "raw")
    run(tmp_path / "raw", tmp_path / "prep", PreprocessConfig(user_core=3, item_core=3))
    seqs = read_table(tmp_path / "prep" / "sequences.parquet", "sequences")
    items = read_table(tmp_path / "prep" / "items.parquet", "items")
    folder = write_atomic(seqs, tmp_path / "atomic", "rt", items)
    header = (folder / "rt.inter").read_text().splitlines()[0]
    assert header == "user_id:token\titem_id:token\ttimestamp:float"
    data = SOURCES["recbole"].read(folder, {"name": "rt", "images": None})
    back_items, _, back, _ = preprocess(data, PreprocessConfig(user_core=0, item_core=0, duplicates="none"))
    # ids are renumbered on the way back in; compare through the written id strings
    to_orig = dict(zip(back_items["item_id"].to_list(), back_items["orig_id"].to_list()))
    got = {row["orig_id"]: [int(to_orig[i]) for i in row["item_ids"]] for row in back.iter_rows(named=True)}
    want = dict(zip(seqs["user_id"].cast(pl.String).to_list(), seqs["item_ids"].to_list()))
    assert got == want


def test_a_result_file_says_the_settings_its_runs_used():
    """A study's recorded rows are matched on the `--set` overrides their runs were made with."""
    from pipeline.results import run_settings

    assert run_settings({"argv": ["--set", "train.threads=1", "a.b=some value", "--models", "x"]}) == {"a.b=some value"}
    assert run_settings({"command": "python x.py --set 'a=1' train.threads=1"}) == {"a=1"}
    assert run_settings({"rows": []}) is None and run_settings({"argv": ["--params", "p.yaml"]}) is None


def test_model_cost_profile_writes_operator_tables_with_shapes(tmp_path):
    from bench.model_cost import profiled

    a = torch.randn(64, 32)
    assert torch.equal(profiled(lambda: a @ a.T, None, "x"), a @ a.T) and not any(tmp_path.iterdir())  # off: no file
    out = profiled(lambda: a @ a.T, tmp_path, 'mmsr:fusion="co_attention"')
    assert torch.equal(out, a @ a.T)
    [f] = tmp_path.iterdir()
    assert f.name == "mmsr_fusion=_co_attention_.txt"  # a file name from the spec
    text = f.read_text()
    assert "aten::mm" in text and "[64, 32]" in text  # the operator, and the shapes it ran on


def test_the_gpu_check_runs_in_its_cpu_mode(tmp_path, capsys):
    """bench.gpu_check --tiny: every step of the GPU check (train fp32 + bf16, FAISS device-vs-CPU
    exactness, top-k against its GEMM, MiniLM extraction) at toy sizes on the CPU, one table."""
    import json

    from bench.gpu_check import main

    main(["--tiny", "--out", str(tmp_path / "check.json")])
    rows = json.loads((tmp_path / "check.json").read_text())["rows"]
    assert [r["check"].split(",")[0] for r in rows] == ["SASRec train + evaluate"] * 2 + [
        "FAISS on the device vs CPU", "exact top-50", "MiniLM extraction"]
    assert rows[0]["ndcg@10"] > 0 and rows[1]["precision"] == "bf16" and rows[2]["ranks_equal"]
    assert rows[3]["ratio"] > 0 and rows[4]["items_per_s"] > 0
    assert "| check | device | result | seconds |" in capsys.readouterr().out


def test_model_cost_counts_an_epochs_flops_from_the_real_step(tmp_path):
    """The FLOPs bench.model_cost states: counted on one real batch of the model's own loss (forward
    + backward), at least the full softmax's three (P x d) @ (d x N) products, times the batches."""
    from bench.model_cost import step_flops
    from pipeline.data import load_training_view, train_windows
    from tests.conftest import tiny_params

    p = tiny_params()
    download(p, tmp_path / "raw")
    run(tmp_path / "raw", tmp_path / "prepared", PreprocessConfig(**p["preprocess"]))
    got = step_flops(p, tmp_path)
    view = load_training_view(tmp_path / "prepared")
    x, y, _ = train_windows(view.train, 20)
    positions = int((y[:64] > 0).sum())  # the batch's real targets
    softmax = 3 * 2 * positions * 32 * (view.num_items + 1)
    assert softmax < got["flops_per_step"] < 20 * softmax
    assert got["steps_per_epoch"] == -(-len(x) // 64) and got["flops_per_epoch"] == got["flops_per_step"] * got[
        "steps_per_epoch"]


def test_preprocess_engines_write_the_same_rows_in_the_same_order(tmp_path):
    """bench.preprocess_engines: every engine's k-core round and ordering give one checksum (the
    benchmark refuses to print a table otherwise); an engine that cannot run is a row saying why."""
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    out = tmp_path / "engines.json"
    res = subprocess.run([sys.executable, "-m", "bench.preprocess_engines", "--rows", "30000", "--budget-mb", "64",
                          "--work", str(tmp_path / "w"), "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    done = [r for r in rows if "digest" in r]
    assert {r["engine"] for r in done} >= {"polars-eager", "polars-streaming", "polars-streaming-ooc"}
    assert len({(r["rows_out"], r["digest"]) for r in done}) == 1 and 0 < done[0]["rows_out"] < 30000
    assert all("failed" in r for r in rows if "digest" not in r)  # duckdb, when not installed: said, not dropped


@pytest.mark.parametrize("argv", [
    ["bench.preprocess_scale", "--sizes", "20000"],
    ["bench.preprocess_scale", "--sizes", "20000", "--engine", "disk"],
    ["bench.eval_memory", "--longest", "50", "--items", "500", "--users", "10"],
    ["bench.eval_scale", "--sizes", "1000x1000"],
    ["bench.train_scale", "--grid", "2000:20000:bce", "--steps", "1"],
])
def test_a_benchmark_measures_in_a_fresh_child_and_records_its_own_memory(tmp_path, argv):
    """The scale benchmarks measure each point in a new process (`python -m bench.<name> --one …` from
    the project root): it must import, run and report a peak RSS of its own (VmHWM)."""
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    out = tmp_path / "r.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"BENCH_THREADS": "1"}  # as a user runs it
    res = subprocess.run([sys.executable, "-m", *argv, "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                         env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    peaks = [r.get("peak_rss_mb", r.get("peak_rss_total_mb")) for r in rows]
    assert peaks and all(p is not None and 0 < p < 4000 for p in peaks), rows


def test_a_measuring_process_that_fails_says_why():
    """`bench.measure` raises with the command and the child's stderr, never returns a half row."""
    from bench import MeasureError, measure

    with pytest.raises(MeasureError, match="exit 2(.|\n)*unrecognized arguments: --no-such-flag"):
        measure("bench.preprocess_scale", "--no-such-flag")
    with pytest.raises(MeasureError, match="no result"):
        measure("bench.preprocess_scale", "--report", "bench/results/preprocess-scale.json")


def test_stopping_rules_replay_recorded_curves(tmp_path):
    """A rule replayed on a recorded curve: what it gives up, how long it runs; a curve that ends before
    the rule would stop is `ran out`, not averaged."""
    import json

    from bench.stopping_rules import curves, replay

    def cell(name, values):
        (tmp_path / "s").mkdir(exist_ok=True)
        curve = {"epoch": list(range(1, len(values) + 1)), "step": [10 * e for e in range(1, len(values) + 1)],
                 "valid/ndcg@10": values}
        (tmp_path / "s" / f"{name}-s0.json").write_text(json.dumps(
            {"study": "s", "row": name, "rows": [{"seed": 0, "model": "m", "dataset": "d", "curve": curve}]}))

    cell("late", [0.1, 0.2, 0.15, 0.15, 0.3, 0.1, 0.1, 0.1])  # the best (0.3) comes 3 epochs after a plateau
    cell("short", [0.1, 0.2])  # ended before any rule here would stop
    rows = {r["rule"]: r for r in replay(curves(tmp_path), {"p2": (2, 0, 0.0), "p3": (3, 0, 0.0)})}
    assert rows["p2"]["mean_delta"] == pytest.approx(0.2 - 0.3) and rows["p2"]["ran_out"] == 1
    assert rows["p3"]["mean_delta"] == 0.0 and rows["p3"]["mean_share"] == 1.0 and rows["p3"]["replayed"] == 1
