"""docs/adding-a-model.md works as written: its model file, copied into a package of its own and
registered the documented way (one registry entry), keeps the contract and runs plan -> train ->
evaluate on the demo data through the library the stages call; its contract block is current."""

from __future__ import annotations

import importlib
import re
import sys

import pytest

from models import MODELS
from models.contract import problems, with_markdown
from tests.conftest import ROOT

PAGE = ROOT / "docs" / "adding-a-model.md"


def model_file() -> str:
    """The first python block of the page: the model file."""
    return re.search(r"```python\n(.*?)```", PAGE.read_text(), re.DOTALL).group(1)


@pytest.fixture
def textgru(tmp_path, monkeypatch):
    pkg = tmp_path / "newmodels"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "textgru.py").write_text(model_file())
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = importlib.import_module("newmodels.textgru").TextGRU
    monkeypatch.setitem(MODELS, "textgru", cls)  # the registry line
    yield cls
    sys.modules.pop("newmodels.textgru", None)
    sys.modules.pop("newmodels", None)


def test_the_worked_model_keeps_the_contract_and_trains_through_the_pipeline(textgru, tmp_path):
    from pipeline.config import PreprocessConfig
    from pipeline.download import download
    from pipeline.evaluate import evaluate
    from pipeline.plan import plan
    from pipeline.preprocess import run
    from pipeline.train import train
    from tests.conftest import tiny_params, write_random_features

    assert problems(textgru) == []
    p = tiny_params(model="textgru")
    p["models"].pop("textgru", None)  # no params section: the Config's defaults (`+models.textgru={}` in DVC)
    download(p, tmp_path / "raw")
    run(tmp_path / "raw", tmp_path / "prepared", PreprocessConfig(**p["preprocess"]))
    needs = plan(p, tmp_path / "plan")
    assert needs == {"text": True, "image": False, "keywords": False, "pretrain": False}
    assert any(k.endswith("newmodels/textgru.py") for k in (tmp_path / "plan" / "code.json").read_text().split('"'))
    write_random_features(tmp_path / "prepared", tmp_path / "features")
    scores = {}
    for name in ("pop", "textgru"):
        out = tmp_path / name
        info = train(p | {"model": name}, tmp_path / "prepared", out, tmp_path / "features")
        scores[name] = evaluate(p | {"model": name}, tmp_path / "prepared", out / "model.pt", out / "metrics.json")
    assert info["model"] == "textgru" and info["epochs_run"] >= 1
    assert scores["textgru"]["test/ndcg@10"] > 1.2 * scores["pop"]["test/ndcg@10"], scores


def test_the_contract_block_of_the_page_is_current():
    text = PAGE.read_text()
    assert with_markdown(text) == text, "run `python -m bench.docs_tables --write-docs`"


@pytest.mark.slow
def test_a_new_user_adds_a_model_in_two_files_and_a_file_in_one_line(tmp_path):
    """Through DVC, as the pages say: the model file + the registry line are the only edits; the
    data set is one `-S` line pointing at a SASRec-format file beside the project."""
    import json

    import yaml

    from tests.conftest import tiny_params
    from tests.test_end_to_end import dvc, dvc_project, git_commit, ran

    src = tmp_path / "data-src"
    src.mkdir()
    (src / "seqs.txt").write_text("".join(f"u{u} " + " ".join(f"i{(u * 7 + k) % 70}" for k in range(14)) + "\n"
                                          for u in range(80)))
    params = tiny_params()
    params["train"] |= {"epochs": 2, "threads": 1}
    params["features"] |= {"threads": 1}
    repo = dvc_project(tmp_path, params)
    (repo / "models" / "textgru.py").write_text(model_file())  # file 1 of 2
    registry = (repo / "models" / "__init__.py").read_text()  # file 2 of 2: the import and the registry line
    registry = registry.replace("from models.sasrec import SASRec\n", "from models.sasrec import SASRec\n"
                                "from models.textgru import TextGRU\n")
    (repo / "models" / "__init__.py").write_text(registry.replace('    "bert4rec": BERT4Rec,\n',
                                                                  '    "bert4rec": BERT4Rec,\n    "textgru": TextGRU,\n'))
    git_commit(repo)
    out = dvc(repo, "exp", "run", "-S", "dataset=mine", "-S",
              "+datasets.mine={format: sasrec, source: ../data-src, file: seqs.txt}", "-S", "model=textgru", "-S",
              "+models.textgru={}")
    assert {"download", "preprocess", "plan", "text_features", "train", "evaluate"} <= ran(out), out
    metrics = json.loads((repo / "data" / "metrics.json").read_text())
    assert metrics["model"] == "textgru" and metrics["dataset"] == "mine" and metrics["users"] == 80
    assert yaml.safe_load((repo / "params.yaml").read_text())["models"]["textgru"] == {}
