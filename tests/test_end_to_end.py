"""Every stage on tiny structured data in a temporary folder; then the real DVC graph."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from pipeline.config import PreprocessConfig
from pipeline.download import download
from pipeline.evaluate import evaluate
from pipeline.metrics import metrics_from_ranks
from pipeline.params import ConfigError
from pipeline.preprocess import run
from pipeline.tables import read_table
from pipeline.train import train
from tests.conftest import ROOT, tiny_params

METRIC_KEYS = [f"{s}/{m}@{k}" for s in ("valid", "test") for m in ("hr", "ndcg", "mrr") for k in (5, 10, 20, 50)]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    p = tiny_params()
    download(p, tmp / "raw")
    run(tmp / "raw", tmp / "prepared", PreprocessConfig(**p["preprocess"]))
    return tmp, p


def test_stage_outputs(prepared):
    tmp, _ = prepared
    for name, kind in [("items", "items"), ("interactions", "interactions"), ("sequences", "sequences")]:
        assert read_table(tmp / "prepared" / f"{name}.parquet", kind).height > 0
    stats = json.loads((tmp / "prepared" / "stats.json").read_text())
    assert {"users", "items", "interactions", "density", "seq_length", "dropped"} <= set(stats)
    items = read_table(tmp / "prepared" / "items.parquet", "items")
    assert all((tmp / "raw" / p).is_file() for paths in items["image_paths"] for p in paths)


def test_sasrec_beats_pop_on_demo(prepared):
    tmp, p = prepared
    results = {}
    for model in ("pop", "sasrec"):
        out = tmp / model
        info = train(p | {"model": model}, tmp / "prepared", out)
        results[model] = evaluate(p | {"model": model}, tmp / "prepared", out / "model.pt", out / "metrics.json")
        assert set(METRIC_KEYS) <= set(results[model])
        assert (out / "curve.csv").read_text().startswith("epoch,")
        assert info["best_epoch"] >= 1
    assert "history_masking" in " ".join(results["pop"])
    # on request: sampled metrics, labelled, easier than full ranking; length groups always
    q = p | {"protocol": p["protocol"] | {"sampled": 50, "sampled_by": "uniform"}}
    sampled = evaluate(q, tmp / "prepared", tmp / "sasrec" / "model.pt", tmp / "sampled.json")
    assert sampled["test_sampled50_uniform/hr@10"] >= sampled["test/hr@10"] and "SAMPLED" in sampled["protocol/sampled"]
    kept = read_table(tmp / "ranks.parquet", "ranks").filter(pl.col("query") == "test_sampled")["rank"].to_numpy()
    assert kept.max() <= 51 and np.isfinite(kept).all()  # among the target + 50 negatives: every rank exact
    assert metrics_from_ranks(kept.astype(float), [10])["hr@10"] == pytest.approx(sampled["test_sampled50_uniform/hr@10"])
    assert sum(v for k, v in sampled.items() if k.startswith("test_len_") and k.endswith("/users")) == sampled["users"]
    assert results["sasrec"]["test/ndcg@10"] > 1.2 * results["pop"]["test/ndcg@10"], results
    # every query's rank is saved beside the metrics, and gives the same numbers
    ranks = read_table(tmp / "sasrec" / "ranks.parquet", "ranks")
    for query in ("valid", "test", "test_unmasked", "cold_seq"):
        mine = ranks.filter(ranks["query"] == query)
        n = results["sasrec"]["users"] if query != "cold_seq" else results["sasrec"]["cold_seq/queries"]
        assert mine.height == n
        ndcg = metrics_from_ranks(mine["rank"].to_numpy().astype(float), [10])["ndcg@10"]
        assert ndcg == pytest.approx(results["sasrec"][f"{query}/ndcg@10"], abs=1e-6)
    # beyond accuracy: coverage / popularity / long-tail share of the lists, per query in the ranks
    sas, pop = results["sasrec"], results["pop"]
    assert pop["test/coverage@10"] < sas["test/coverage@10"] <= 1 and pop["test/tail@10"] <= sas["test/tail@10"]
    assert pop["test/pop@10"] > sas["test/pop@10"]  # popularity recommends the most-trained items, by construction
    test_rows = ranks.filter(ranks["query"] == "test")
    assert float(test_rows["tail@10"].mean()) == pytest.approx(sas["test/tail@10"], abs=1e-6)
    # unmasked beside masked: the same queries, seen items back among the candidates, never easier
    assert (ranks.filter(ranks["query"] == "test_unmasked")["rank"].to_numpy()
            >= ranks.filter(ranks["query"] == "test")["rank"].to_numpy()).all()
    assert results["sasrec"]["test_unmasked/ndcg@10"] <= results["sasrec"]["test/ndcg@10"]
    # the MMSR study's cold scenario: every prefix ending in a rare item, far more queries than cold test users
    assert results["sasrec"]["cold_seq/queries"] > results["sasrec"]["test_cold/users"]
    assert 0 <= results["sasrec"]["cold_seq/ndcg@10"] <= results["sasrec"]["cold_seq/hr@10"] <= 1


@pytest.mark.parametrize("model, train_over", [("bprmf", {"epochs": 100, "lr": 0.01, "patience": 20}), ("fpmc", {})])
def test_papers_baselines_beat_pop_on_demo(prepared, model, train_over):
    """The M2SR / AutoMLP tables' baselines train through the one loop and beat popularity (BPR-MF,
    one factor per user, needs more steps than the tiny default budget). BERT4Rec: test_trainer."""
    tmp, p = prepared
    res = {}
    for m in ("pop", model):
        out = tmp / f"baseline-{m}"
        train(p | {"model": m, "train": p["train"] | train_over}, tmp / "prepared", out)
        res[m] = evaluate(p | {"model": m, "train": p["train"] | train_over}, tmp / "prepared", out / "model.pt",
                          out / "metrics.json")
    assert res[model]["test/ndcg@10"] > 1.2 * res["pop"]["test/ndcg@10"], (res[model]["test/ndcg@10"],
                                                                           res["pop"]["test/ndcg@10"])


def extract(p: dict, folder: Path) -> None:
    from pipeline.features import image, keywords, text
    from pipeline.features.common import open_stage

    for name, module in (("text", text), ("image", image), ("keywords", keywords)):
        module.run(open_stage(name, p, folder / "prepared", folder / "raw", folder / "features" / name))


@pytest.fixture(scope="module")
def pretrained(prepared):
    from pipeline.pretrain import pretrain

    tmp, p = prepared
    extract(p, tmp)
    info = pretrain(p, tmp / "prepared", tmp / "features", tmp / "pretrain")
    assert info["history"][-1]["loss"] < info["history"][0]["loss"], info["history"]  # pre-training learns
    return tmp, p


def test_feature_models_train_on_cached_features_and_beat_pop(pretrained):
    tmp, p = pretrained
    results = {}
    infos = {}
    for model in ("pop", "m2sr", "msm4sr", "mmsr", "automlp"):
        out = tmp / model
        infos[model] = train(p | {"model": model}, tmp / "prepared", out, tmp / "features", tmp / "pretrain")
        results[model] = evaluate(p | {"model": model}, tmp / "prepared", out / "model.pt", out / "metrics.json")
    for model in ("m2sr", "msm4sr", "mmsr", "automlp"):
        assert results[model]["test/ndcg@10"] > 1.2 * results["pop"]["test/ndcg@10"], {
            m: (r["valid/ndcg@10"], r["test/ndcg@10"]) for m, r in results.items()}
    # AutoMLP searched, then retrained with the chosen length only; both are in the metrics
    assert infos["automlp"]["search_k"] in (2, 5, 10) and results["automlp"]["search/k"] == infos["automlp"]["search_k"]
    assert sum(results["automlp"][f"search/p@{k}"] for k in (2, 5, 10)) == pytest.approx(1.0, abs=1e-4)
    assert len(infos["automlp"]["search_history"]) == 2 and "search/alpha@5" in results["automlp"]
    with pytest.raises(FileNotFoundError, match="text.parquet: table not found"):
        train(p | {"model": "m2sr"}, tmp / "prepared", tmp / "x", tmp / "no-features")


def test_cross_domain_finetune_keeps_the_pretrained_transformer(pretrained, tmp_path):
    """MSM4SR_Cross: pre-train on data set A, fine-tune on B (other items, other size) with the
    Transformer frozen; only the modality encoders (and B's item IDs) move."""
    import torch

    src, p = pretrained
    demo_b = {"format": "demo", "n_items": 220, "n_users": 200, "seed": 11, "image_size": 16}
    pb = p | {"datasets": {"demo": demo_b}, "model": "msm4sr",
              "models": p["models"] | {"msm4sr": p["models"]["msm4sr"] | {
                  "pretrained_path": str(src / "pretrain" / "weights.pt"), "freeze_transformer": True}}}
    download(pb, tmp_path / "raw")
    run(tmp_path / "raw", tmp_path / "prepared", PreprocessConfig(**pb["preprocess"]))
    extract(pb, tmp_path)
    info = train(pb, tmp_path / "prepared", tmp_path / "model", tmp_path / "features", tmp_path / "no-pretrain-here")
    res = evaluate(pb, tmp_path / "prepared", tmp_path / "model" / "model.pt", tmp_path / "metrics.json")
    pre = torch.load(src / "pretrain" / "weights.pt", weights_only=True)["state"]
    tuned = torch.load(tmp_path / "model" / "model.pt", weights_only=True)["state_dict"]
    assert tuned["item_emb.weight"].shape[0] != torch.load(src / "msm4sr" / "model.pt", weights_only=True)[
        "state_dict"]["item_emb.weight"].shape[0]  # a different catalogue
    for k in pre:
        if k.startswith("transformer."):
            torch.testing.assert_close(tuned[k], pre[k], msg=k)
    assert any(not torch.allclose(tuned[k], pre[k]) for k in pre if k.startswith("enc."))
    assert info["best_epoch"] >= 1 and res["test/ndcg@10"] > 0


def test_evaluate_refuses_a_checkpoint_trained_with_other_params(prepared):
    """params.yaml rewritten between train and evaluate (e.g. a refused concurrent `dvc exp run -S
    model=pop`): no metrics are written under the wrong label."""
    tmp, p = prepared
    out = tmp / "mismatch"
    train(p | {"model": "pop"}, tmp / "prepared", out)
    with pytest.raises(ConfigError, match="model: trained with 'pop', params.yaml says 'sasrec'"):
        evaluate(p, tmp / "prepared", out / "model.pt", out / "metrics.json")
    with pytest.raises(ConfigError, match="train: trained with .*'seed': 0.*'seed': 5"):
        evaluate(p | {"model": "pop", "train": p["train"] | {"seed": 5}}, tmp / "prepared", out / "model.pt",
                 out / "metrics.json")
    assert not (out / "metrics.json").exists()
    assert evaluate(p | {"model": "pop"}, tmp / "prepared", out / "model.pt", out / "metrics.json")["model"] == "pop"


def test_train_refuses_to_write_when_params_yaml_changed_while_it_ran(prepared, tmp_path):
    tmp, p = prepared
    rewritten = tmp_path / "params.yaml"
    rewritten.write_text(yaml.safe_dump(p | {"model": "sasrec"}))  # what a second `dvc exp run` leaves behind
    with pytest.raises(ConfigError, match="changed while this stage ran.*queue them"):
        train(p | {"model": "pop"}, tmp / "prepared", tmp_path / "out", params_file=rewritten)
    assert not (tmp_path / "out" / "model.pt").exists()


def test_transfer_scores_another_catalogue_with_its_own_statistics(prepared, tmp_path):
    """MMSR trained on catalogue A starts a run on catalogue B (other items, other size): every learned
    parameter comes from A, the feature tables and their statistics are B's, and B is ranked."""
    import torch

    from tests.conftest import write_random_features

    tmp, p = prepared
    write_random_features(tmp / "prepared", tmp_path / "fa", seed=1)
    pa = p | {"model": "mmsr"}
    train(pa, tmp / "prepared", tmp_path / "a", tmp_path / "fa")
    pb = pa | {"datasets": {"demo": {"format": "demo", "n_items": 220, "n_users": 200, "seed": 11, "image_size": 16}}}
    download(pb, tmp_path / "rawb")
    run(tmp_path / "rawb", tmp_path / "b", PreprocessConfig(**pb["preprocess"]))
    write_random_features(tmp_path / "b", tmp_path / "fb", seed=2)
    pb["train"] = p["train"] | {"init_from": str(tmp_path / "a"), "epochs": 1, "lr": 0.0}  # lr 0: nothing moves
    info = train(pb, tmp_path / "b", tmp_path / "bt", tmp_path / "fb")
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "bt" / "model.pt", weights_only=True)
    assert a["num_items"] != b["num_items"] and info["transfer"]["catalogue_sized"] == []  # ID-agnostic
    params = [k for k in b["state_dict"] if not k.startswith("feats.") and not k.startswith(("mu_", "sd_"))]
    assert info["transfer"]["copied"] == len(params)
    for k in params:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    text = b["state_dict"]["feats.text"][b["state_dict"]["feats.text_mask"]]
    torch.testing.assert_close(b["state_dict"]["mu_text"], text.mean(0))  # B's statistics, not A's
    assert not torch.allclose(a["state_dict"]["mu_text"], b["state_dict"]["mu_text"])
    res = evaluate(pb, tmp_path / "b", tmp_path / "bt" / "model.pt", tmp_path / "bt" / "metrics.json")
    assert res["items"] == b["num_items"] and 0 <= res["test/ndcg@10"] <= 1
    # an ID model transfers its sequence encoder; its ID table is the target's own
    train(p | {"model": "sasrec", "train": p["train"] | {"epochs": 1}}, tmp / "prepared", tmp_path / "sa")
    ids = train(p | {"model": "sasrec", "train": pb["train"] | {"init_from": str(tmp_path / "sa")}}, tmp_path / "b",
                tmp_path / "st")
    assert ids["transfer"]["catalogue_sized"] == ["item_emb.weight"]
    with pytest.raises(ConfigError, match="holds a 'mmsr' model, this run trains 'sasrec'"):
        train(p | {"model": "sasrec", "train": pb["train"]}, tmp_path / "b", tmp_path / "x")


@pytest.mark.parametrize("fusion", ["merge_attention", "co_attention"])
def test_mmsr_fuses_word_tokens_and_the_image_grid(prepared, tmp_path, fusion):
    """`text_table: text_tokens` and `image_table: image_grid` (4 tokens per image here) load into MMSR's
    token stacks and train through the fine-grained fusions."""
    import torch

    from tests.conftest import write_random_features

    tmp, p = prepared
    write_random_features(tmp / "prepared", tmp_path / "f")
    section = p["models"]["mmsr"] | {"text_table": "text_tokens", "image_table": "image_grid", "fusion": fusion}
    q = p | {"model": "mmsr", "models": p["models"] | {"mmsr": section}, "train": p["train"] | {"epochs": 2}}
    info = train(q, tmp / "prepared", tmp_path / "m", tmp_path / "f")
    state = torch.load(tmp_path / "m" / "model.pt", weights_only=True)["state_dict"]
    assert state["feats.text"].shape[1:] == (6, 12) and state["feats.image"].shape[1:] == (4, 16)
    assert state["feats.image_mask"][1:].any(1).float().mean() > 0.8  # items with an image have their 4 tokens
    res = evaluate(q, tmp / "prepared", tmp_path / "m" / "model.pt", tmp_path / "m" / "metrics.json")
    assert info["epochs_run"] == 2 and 0 <= res["test/ndcg@10"] <= 1


def test_unknown_model_is_a_clear_error(prepared):
    tmp, p = prepared
    with pytest.raises(ConfigError, match="model='bert5rec' is not one of"):
        train(p | {"model": "bert5rec"}, tmp / "prepared", tmp / "x")


def dvc(cwd: Path, *args: str) -> str:
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                        "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def dvc_project(tmp_path: Path, params: dict) -> Path:
    """A copy of the project's code and graph with `params` as params.yaml, in a fresh git repository."""
    repo = tmp_path / "repo"
    repo.mkdir(parents=True)
    for name in ("pipeline", "models", ".dvc/config", ".dvcignore", "dvc.yaml", "pyproject.toml", "requirements.lock"):
        src, dst = ROOT / name, repo / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dst)
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    return repo


def git_commit(repo: Path) -> None:
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"], cwd=repo, check=True)


def ran(out: str) -> set[str]:
    return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage '")}


@pytest.mark.slow
def test_dvc_graph_reruns_only_what_a_change_touches(tmp_path):
    params = tiny_params()
    params["train"] |= {"epochs": 2, "threads": 1}
    params["features"] |= {"threads": 1}
    repo = dvc_project(tmp_path, params)
    dvc(repo, "repro")
    metrics = json.loads((repo / "data" / "metrics.json").read_text())
    assert metrics["model"] == "sasrec" and set(METRIC_KEYS) <= set(metrics)
    # SASRec reads no features and no pre-trained weights: those stages only leave their markers
    for stage in ("text", "image", "keywords"):
        report = json.loads((repo / "data" / "features" / stage / "report.json").read_text())
        assert "reads no" in report["skipped"] and not list((repo / "data" / "features" / stage).glob("*.parquet"))
    assert "reads no pre-trained" in json.loads((repo / "data" / "pretrain" / "pretrain.json").read_text())["skipped"]
    assert json.loads((repo / "data" / "timing" / "train.json").read_text())["seconds"] > 0  # timings: their own file
    git_commit(repo)
    # another model's parameter: nothing to do
    edited = yaml.safe_load((repo / "params.yaml").read_text())
    edited["models"]["mmsr"]["fusion"] = "gate"
    (repo / "params.yaml").write_text(yaml.safe_dump(edited))
    assert "Data and pipelines are up to date" in dvc(repo, "status")
    # another model's code: only the plan re-runs (its code fingerprint for sasrec is unchanged)
    with open(repo / "models" / "mmsr.py", "a") as f:
        f.write("\n# an edit\n")
    out = dvc(repo, "repro")
    assert ran(out) == {"plan"}, out
    git_commit(repo)
    # another ID-only model: plan, train, evaluate; no feature stage, no pre-training
    out = dvc(repo, "exp", "run", "-S", "model=gru4rec")
    assert ran(out) == {"plan", "train", "evaluate", "report"}, out
    assert json.loads((repo / "data" / "metrics.json").read_text())["model"] == "gru4rec"
    shown = dvc(repo, "exp", "show", "--no-pager", "--md")
    assert "test/ndcg@10" in shown and "gru4rec" in shown
    # a feature model: its tables are extracted (and only those it reads)
    out = dvc(repo, "exp", "run", "-S", "model=m2sr")
    assert {"text_features", "image_features", "train", "evaluate"} <= ran(out), out
    for name in ("text/text", "image/image"):
        assert (repo / "data" / "features" / f"{name}.parquet").is_file(), name
    assert not (repo / "data" / "features" / "keywords" / "keyword_vectors.parquet").exists()
    # part of the graph on new data: no metrics of the previous run are left behind
    edited = yaml.safe_load((repo / "params.yaml").read_text())
    edited["datasets"]["demo"]["seed"] = 4
    (repo / "params.yaml").write_text(yaml.safe_dump(edited))
    out = dvc(repo, "repro", "download", "preprocess")
    assert ran(out) == {"download", "preprocess"} and not (repo / "data" / "metrics.json").exists(), out


@pytest.mark.slow
def test_two_runs_of_the_graph_give_byte_identical_artifacts(tmp_path):
    """Everything DVC hashes (tables, features, weights, curves, metrics) is the same in two folders;
    only the timing files differ."""
    params = tiny_params(model="m2sr")
    params["train"] |= {"epochs": 2, "threads": 1}
    params["features"] |= {"extract": "all", "threads": 1}
    locks, timings = [], []
    for name in ("one", "two"):
        repo = dvc_project(tmp_path / name, params)
        dvc(repo, "repro")
        locks.append(yaml.safe_load((repo / "dvc.lock").read_text()))
        timings.append((repo / "data" / "timing" / "train.json").read_text())
    def hashes(lock):
        return {(st, o["path"]): o.get("md5") for st, v in lock["stages"].items() for o in v.get("outs", [])}
    assert hashes(locks[0]) == hashes(locks[1]) and len(hashes(locks[0])) > 10
    assert locks[0] == locks[1]  # the whole lock file: deps, params, outs
    assert timings[0] != timings[1]


@pytest.mark.slow
def test_queued_grid_with_relative_source_paths(tmp_path):
    """`dvc exp run --queue` + `dvc queue start -j 2` with the default relative `source` (resolved from
    the project root, DVC_ROOT, although the queue runs in a copy under .dvc/tmp/exps)."""
    import time

    src = tmp_path / "data-src"  # beside the project, as ../shared/datasets is
    src.mkdir()
    rows = [(f"u{u}", f"i{(u * 7 + k) % 80}", 1_000 + u * 100 + k) for u in range(60) for k in range(12)]
    (src / "d.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n" +
                                 "".join(f"{u}\t{i}\t{t}\n" for u, i, t in rows))
    params = tiny_params(dataset="local")
    params["datasets"] = {"local": {"format": "recbole", "source": "../data-src", "name": "d"}}
    params["train"] |= {"epochs": 2}  # threads 0: the two workers take one core each (pipeline.device.cpu_threads)
    repo = dvc_project(tmp_path, params)
    git_commit(repo)
    for seed in (0, 1):
        dvc(repo, "exp", "run", "--queue", "-S", f"train.seed={seed}")
    dvc(repo, "queue", "start", "-j", "2")
    for _ in range(120):
        status = dvc(repo, "queue", "status")
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(5)
    assert status.count("Success") == 2, status
    shown = dvc(repo, "exp", "show", "--no-pager", "--csv")
    rows = [r for r in shown.splitlines() if "Success" in r or ",branch_" in r]
    assert len(rows) == 2 and all("sasrec" in r for r in rows), shown


@pytest.mark.slow
def test_dvc_repro_resumes_killed_pretraining(tmp_path):
    """msm4sr selected: `dvc repro` pre-trains; a SIGKILL after epoch 1 leaves resume.pt, and the
    next `dvc repro` continues from it instead of starting over."""
    params = tiny_params(model="msm4sr")
    params["train"] |= {"epochs": 2}
    params["pretrain"] |= {"epochs": 3}
    repo = dvc_project(tmp_path, params)
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                        "DVC_NO_ANALYTICS": "1", "MMREC_KILL_AFTER_EPOCHS": "1"}
    killed = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True)
    assert killed.returncode != 0 and (repo / "data" / "pretrain" / "resume.pt").is_file(), killed.stderr[-2000:]
    out = dvc(repo, "repro")
    assert "resuming pre-training" in out and "after epoch 1" in out, out[-3000:]
    assert not (repo / "data" / "pretrain" / "resume.pt").exists()
    info = json.loads((repo / "data" / "pretrain" / "pretrain.json").read_text())
    assert [r["epoch"] for r in info["history"]] == [1, 2, 3]
    assert json.loads((repo / "data" / "metrics.json").read_text())["model"] == "msm4sr"


def test_one_pass_pretraining_learns_and_counts_pair_visits(pretrained, tmp_path):
    """`pretrain.one_pass_windows`: every prefix of each window from one causal pass; the loss falls,
    each epoch visits every training pair once, and fine-tuning starts from the weights."""
    from pipeline.pretrain import pretrain

    tmp, p = pretrained
    q = p | {"pretrain": p["pretrain"] | {"one_pass_windows": 16}}
    info = pretrain(q, tmp / "prepared", tmp / "features", tmp_path / "pretrain")
    per_pair = json.loads((tmp / "pretrain" / "pretrain.json").read_text())
    assert info["history"][-1]["loss"] < info["history"][0]["loss"], info["history"]
    assert {r["pair_visits"] for r in info["history"]} == {info["pairs"]} and info["pairs"] == per_pair["pairs"]
    assert info["windows"] < info["pairs"] and info["pairs_per_s"] > 0
    train(q | {"model": "msm4sr"}, tmp / "prepared", tmp_path / "m", tmp / "features", tmp_path / "pretrain")
