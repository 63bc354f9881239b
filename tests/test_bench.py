"""Correctness parts of the benchmark helpers."""

import numpy as np
import polars as pl
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


def test_automlp_report_picks_automlp_s_by_validation_and_sums_its_search_time():
    from bench.automlp_report import per_length, summarise

    rows = []
    for seed in (0, 1):
        base = {"seed": seed, "test/hr@10": 0.1, "test/mrr@10": 0.03}
        rows.append(base | {"model": "automlp", "search_k": 5, "search_s": 10.0, "wall_s": 30.0,
                            "test/ndcg@10": 0.05, "valid/ndcg@10": 0.05,
                            "search_p": {"2": 0.2 + seed / 10, "5": 0.5, "10": 0.3 - seed / 10}})
        for k, valid in ((2, 0.02), (5, 0.07), (10, 0.04)):
            rows.append(base | {"model": f"automlp:short_lengths=[{k}]", "wall_s": 20.0 + k,
                                "test/ndcg@10": k / 100, "valid/ndcg@10": valid})
        rows.append(base | {"model": "sasrec", "wall_s": 20.0, "test/ndcg@10": 0.04, "valid/ndcg@10": 0.05})
    auto, exhaustive, sasrec = summarise(rows)
    assert auto[4] == "5/5" and auto[5].startswith("10 ")
    assert exhaustive[4] == "5/5" and exhaustive[2].startswith("0.0500")  # k=5 has the best validation
    assert exhaustive[5].startswith("77 ")  # 22 + 25 + 30 s: every candidate was trained
    assert sasrec[4] == "—"
    grid = per_length(rows)
    assert [line[0] for line in grid] == ["2", "5", "10"]
    assert grid[1][1].startswith("0.0700") and grid[2][2].startswith("0.1000") and grid[0][3].startswith("22")
    assert grid[0][4].startswith("0.250 ± 0.071")  # α shares 0.2 and 0.3 over the two seeds


def test_combine_counts_a_rerun_once_and_keeps_the_later_row(tmp_path, capsys):
    import json

    from bench.baselines import combine

    def row(seed, ndcg):
        return {"model": "sasrec", "seed": seed, "test/hr@10": 0.2, "test/ndcg@10": ndcg, "test/mrr@10": 0.05,
                "valid/ndcg@10": 0.1, "test_cold/ndcg@10": 0.0, "test_cold/hr@50": 0.0, "best_epoch": 3,
                "train_s_per_epoch": 1.0, "wall_s": 5.0}

    stats = {"users": 3, "items": 4, "interactions": 12, "density": 1.0}
    for name, rows in (("a.json", [row(0, 0.10), row(1, 0.20)]), ("b.json", [row(0, 0.30)])):
        (tmp_path / name).write_text(json.dumps({"dataset": "x", "stats": stats, "rows": rows}))
    combine([str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    out = capsys.readouterr().out
    assert "| sasrec | 0.2000 ± 0.0000 | 0.2500 ± 0.0707 |" in out  # seeds 0 (re-run: 0.30) and 1 (0.20)
    assert "seeds [0, 1]" in out and "| — |" in out  # no cold_seq column values in these rows


def test_exp_table_groups_seeds_by_experiment_name():
    from bench.exp_table import METRICS, summarise

    cols = {"Experiment": ["sci-sasrec-s0", "sci-sasrec-s1", "sci-mmsr-s0", "other-s0", "", "sci-mmsr-s1",
                           "sci-sasrec-s0"],
            "rev": ["a1", "a2", "a3", "a4", "main", "workspace", "b1"],  # a workspace row repeats or is stale
            "Created": ["2026-11-24T07:00:00", "2026-11-24T08:00:00", "2026-11-24T09:00:00", "2026-11-24T07:00:00",
                        "", "", "2026-11-24T06:00:00"],  # the last row: an older run of sci-sasrec-s0
            "data/metrics.json:model": ["sasrec", "sasrec", "mmsr", "pop", "sasrec", "mmsr", "sasrec"]}
    for key in METRICS:
        cols[key] = ["0.1", "0.3", "0.2", "0.9", "0.5", "0.7", "0.8"]
    rows = summarise(pl.DataFrame(cols), "sci")
    assert [r[0] for r in rows] == ["sasrec", "mmsr"] and [r[1] for r in rows] == ["2", "1"]
    assert rows[0][2] == "0.2000 ± 0.1414" and rows[1][2] == "0.2000"


def test_cold_queries_keep_the_test_queries_whose_target_is_cold():
    from bench.cold_start import cold_queries

    ranks = pl.DataFrame({"query": ["valid", "test", "test", "test", "cold_seq"], "user_id": [0, 0, 1, 2, 1],
                          "target": [2, 2, 1, 3, 2], "rank": [1.0, 4.0, 2.0, 9.0, 3.0]})
    cold = np.array([False, False, True, True])  # items 2 and 3 (row 0 = padding)
    (got,) = cold_queries([ranks], cold)
    assert got["query"].unique().to_list() == ["test_cold"]
    assert got["user_id"].to_list() == [0, 2] and got["rank"].to_list() == [4.0, 9.0]


def test_cold_start_jobs_are_one_line_per_row_and_seed_and_the_warm_only_row_keeps_its_setting(capsys):
    from bench import cold_start

    cold_start.jobs()
    lines = capsys.readouterr().out.splitlines()
    rows = [r for t in cold_start.TABLES.values() for r in t["rows"]]
    assert len(lines) == len(rows) * len(cold_start.SEEDS) - 1  # MMSR-T seed 0 is the transfer source run
    assert all(ln.count("--seeds ") == 1 and len(ln.split("--seeds ")[1].split(" --")[0].split()) == 1 for ln in lines)
    warm = [ln for ln in lines if "pretrain.warm_only=true" in ln]
    assert len(warm) == len(cold_start.SEEDS) and all("use_ids=false'" in ln for ln in warm)
    assert len({ln.split("--name ")[1].split()[0] for ln in lines}) == len(lines)  # no two jobs write one file


def test_transfer_jobs_train_the_source_first_and_transferred_runs_wait_for_it(capsys):
    from bench import transfer

    transfer.jobs(["demo:ml-100k"])
    lines = capsys.readouterr().out.splitlines()
    ckpt = str(transfer.source_ckpt("demo", ["text", "image"]))
    if not transfer.source_ckpt("demo", ["text", "image"]).is_file():
        assert "--keep-models" in lines[0] and "--seeds 0" in lines[0]
        lines = lines[1:]
    assert len(lines) == len(transfer.FRACTIONS) * len(transfer.SEEDS) * 2
    moved = [ln for ln in lines if "init_from" in ln]
    assert len(moved) == len(lines) // 2 and all(ln.startswith(f"while [ ! -f {ckpt} ]") for ln in moved)
    assert all(f"--name demo-to-ml-100k-f{f:g}-" in " ".join(lines) for f in transfer.FRACTIONS)


def test_cross_jobs_pretrain_the_source_first_and_pretrained_runs_wait_for_it(capsys, monkeypatch, tmp_path):
    from bench import transfer

    monkeypatch.setattr(transfer, "WORK", transfer.ROOT / "bench" / ".work" / tmp_path.name)  # no checkpoint there
    transfer.cross_jobs()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("-m bench.transfer pretrain-source amazon-scientific")
    runs = lines[1:]
    assert len(runs) == len(transfer.SEEDS) * len(transfer.CROSS_LABELS)
    waiting = [ln for ln in runs if ln.startswith("while [ ! -f")]
    assert len(waiting) == 2 * len(transfer.SEEDS) and all("pretrained_path=" in ln for ln in waiting)
    assert all("pretrained=false" in ln for ln in runs if ln not in waiting)
    assert sum("freeze_transformer=true" in ln for ln in runs) == len(transfer.SEEDS)


def test_a_result_file_counts_as_done_only_with_rows_for_every_seed(tmp_path):
    """`jobs --missing` must re-queue a failed or half-finished job (its file is written after every seed)."""
    from pipeline.results import has_rows, run_settings, save

    save(tmp_path / "a.json", [{"seed": 0}], failed=[{"seed": 1}])
    assert has_rows(tmp_path / "a.json", [0]) and not has_rows(tmp_path / "a.json", [0, 1])
    assert not has_rows(tmp_path / "missing.json", [0])
    assert run_settings({"argv": ["--set", "train.threads=1", "a.b=some value", "--models", "x"]}) == {"a.b=some value"}
    assert run_settings({"command": "python x.py --set 'a=1' train.threads=1"}) == {"a=1"}
    assert run_settings({"rows": []}) is None and run_settings({"argv": ["--params", "p.yaml"]}) is None


def test_budget_rows_join_one_job_per_seed(tmp_path):
    """pretrain_throughput --budget: `a-s0.json,a-s1.json` (one job per seed) is one budget row;
    a seed twice, or seeds fine-tuned from different pre-trainings, is refused."""
    import json

    import pytest

    from bench.pretrain_throughput import budget_group, print_budget

    for seed, epochs in ((0, 300), (1, 300), (2, 10)):
        (tmp_path / f"a-s{seed}.json").write_text(json.dumps({"rows": [{"seed": seed, "pretrain": {"epochs": epochs}}]}))
    name, rows = budget_group(f"{tmp_path}/a-s0.json,{tmp_path}/a-s1.json")
    assert name.name == "a.json" and sorted(rows) == [0, 1] and rows[1]["_dir"] == tmp_path
    with pytest.raises(SystemExit, match="seed 0 again"):
        budget_group(f"{tmp_path}/a-s0.json,{tmp_path}/a-s0.json")
    with pytest.raises(SystemExit, match="different pre-trainings"):
        print_budget([f"{tmp_path}/a-s0.json,{tmp_path}/a-s2.json"])


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


def test_combine_marks_no_difference_significant_with_fewer_than_three_seeds(tmp_path, capsys):
    """A row short of seeds is labelled, and its difference is printed without * (a smoke test)."""
    import json

    from bench.baselines import combine

    def row(model, seed, ndcg):
        return {"model": model, "seed": seed, "test/hr@10": 0.2, "test/ndcg@10": ndcg, "test/mrr@10": 0.05,
                "valid/ndcg@10": 0.1, "test_cold/ndcg@10": 0.0, "test_cold/hr@50": 0.0, "best_epoch": 3,
                "train_s_per_epoch": 1.0, "wall_s": 5.0}

    rows = [row("sasrec", s, 0.30 + s / 100) for s in range(3)] + [row("pop", s, 0.10 + s / 100) for s in range(3)] \
        + [row("gru4rec", s, 0.05 + s / 1000) for s in range(2)]
    stats = {"users": 3, "items": 4, "interactions": 12, "density": 1.0}
    (tmp_path / "a.json").write_text(json.dumps({"dataset": "x", "stats": stats, "rows": rows}))
    combine([str(tmp_path / "a.json")], vs="sasrec")
    lines = {ln.split(" | ")[0]: ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| ")}
    assert "(seeds, p" in lines["| pop"] and lines["| pop"].count(" * |") == 1  # 3 seeds a side: significant
    short = lines["| gru4rec (2 of 3 seeds)"]  # Welch's p is tiny here too, but 2 seeds are no finding
    assert "(n < 3 seeds)" in short and " * " not in short


def test_combine_leaves_resumed_runs_out_of_wall_time():
    """A resumed run's wall_s covers its last process only: the table's wall s / run leaves it out and says so."""
    from bench.baselines import wall_cell

    runs = [{"wall_s": 100.0, "resumed_after_epochs": []}, {"wall_s": 300.0},
            {"wall_s": 20.0, "resumed_after_epochs": [7]}]
    assert wall_cell(runs) == "200 (1 resumed, left out)"
    assert wall_cell(runs[:2]) == "200"
    assert wall_cell(runs[2:]) == "— (1 resumed)"


def test_stale_rows_flags_a_row_whose_model_the_code_no_longer_builds(tmp_path):
    """bench/stale_rows.py rebuilds each row's spec on the current code: equal parameter counts pass, a
    changed structure or a spec that no longer builds is STALE, another params file is skipped."""
    import json

    from bench.stale_rows import check, current_parameters
    from tests.conftest import tiny_params, write_random_features

    p = tiny_params()
    download(p, tmp_path / "raw")
    run(tmp_path / "raw", tmp_path / "prepared", PreprocessConfig(**p["preprocess"]))
    write_random_features(tmp_path / "prepared", tmp_path / "features")
    specs = ("sasrec", 'mmsr:fusion="co_attention"')
    now = {spec: current_parameters(spec, set(), tmp_path, p, None) for spec in specs}
    assert now["sasrec"] > 0 and now['mmsr:fusion="co_attention"'] > 0

    def row(model, seed, parameters):
        return {"model": model, "seed": seed, "parameters": parameters}

    rows = [row("sasrec", 0, now["sasrec"]), row("sasrec", 1, now["sasrec"]),
            row('mmsr:fusion="co_attention"', 0, now['mmsr:fusion="co_attention"'] - 2 * 640),  # a block fewer
            row("sasrec:no_such_option=1", 0, 5)]
    (tmp_path / "a.json").write_text(json.dumps({"argv": ["--set", "train.threads=1"], "rows": rows}))
    (tmp_path / "b.json").write_text(json.dumps({"argv": ["--params", "other.yaml"], "rows": rows[:1]}))
    (tmp_path / "c.json").write_text(json.dumps({"argv": [], "stats": {"items": 7}, "rows": rows[:1]}))
    lines = check([str(tmp_path / f) for f in ("a.json", "b.json", "c.json")], tmp_path, p)
    verdicts = {(ln[0].rsplit("/", 1)[-1], ln[1]): ln[4] for ln in lines}
    assert verdicts[("a.json", "sasrec")].startswith("ok")
    assert verdicts[("a.json", 'mmsr:fusion="co_attention"')].startswith("STALE: the code builds another model")
    assert verdicts[("a.json", "sasrec:no_such_option=1")].startswith("STALE: the current code cannot build it")
    assert verdicts[("b.json", "sasrec")].startswith("skipped")
    assert verdicts[("c.json", "sasrec")].startswith("skipped: other data (7 items")
