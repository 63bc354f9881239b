"""docs/adding-a-source.md works as written: its example format, copied out of the page into a
package of its own and registered with one entry, reads a folder through download -> preprocess ->
train -> evaluate; the counts reconcile with the file and a malformed line is counted, not lost."""

from __future__ import annotations

import importlib
import json
import re
import sys

import numpy as np
import pytest

from pipeline.sources import SOURCES, Source
from tests.conftest import ROOT, tiny_params

PAGE = ROOT / "docs" / "adding-a-source.md"


@pytest.fixture
def csvlog(tmp_path, monkeypatch):
    pkg = tmp_path / "newsources"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "csvlog.py").write_text(re.search(r"```python\n(.*?)```", PAGE.read_text(), re.DOTALL).group(1))
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("newsources.csvlog")
    line = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.DOTALL)[1].strip()
    assert line == '"csvlog": Source(csvlog.CSVLogConfig, csvlog.fetch, csvlog.read),'  # the page's registry line
    monkeypatch.setitem(SOURCES, "csvlog", Source(mod.CSVLogConfig, mod.fetch, mod.read))
    yield mod
    sys.modules.pop("newsources.csvlog", None)
    sys.modules.pop("newsources", None)


def test_the_worked_source_reads_a_folder_through_the_pipeline(csvlog, tmp_path):
    from pipeline.config import PreprocessConfig
    from pipeline.download import download
    from pipeline.evaluate import evaluate
    from pipeline.preprocess import run
    from pipeline.train import train

    rng = np.random.default_rng(0)
    src = tmp_path / "shop"
    src.mkdir()
    lines = ["user,item,timestamp"]  # each user walks the catalogue in steps of one: sequential signal
    for u in range(120):
        start = rng.integers(0, 60)
        lines += [f"u{u},sku{(start + k) % 60},{1000 * u + k}" for k in range(12)]
    lines.insert(5, "u0,sku1")  # a malformed line: counted and skipped
    (src / "events.csv").write_text("\n".join(lines) + "\n")
    (src / "items.csv").write_text("item,title,description\n" + "".join(f"sku{i},Item {i},A thing\n" for i in range(60)))
    p = tiny_params(dataset="shop", datasets={"shop": {"format": "csvlog", "source": str(src)}})
    download(p, tmp_path / "raw")
    stats = run(tmp_path / "raw", tmp_path / "prepared", PreprocessConfig(**p["preprocess"]))
    assert stats["raw"]["interactions"] == 120 * 12 and stats["parse"]["inter_malformed_lines"] == 1
    assert stats["interactions"] + sum(stats["dropped"].values()) == 120 * 12  # nothing lost unaccounted
    assert stats["metadata"]["items_without_metadata"] == 0 and stats["items"] == 60
    scores = {}
    for name in ("pop", "sasrec"):
        q = p | {"model": name}
        train(q, tmp_path / "prepared", tmp_path / name)
        scores[name] = evaluate(q, tmp_path / "prepared", tmp_path / name / "model.pt", tmp_path / f"{name}.json")
    assert scores["sasrec"]["dataset"] == "shop"
    assert scores["sasrec"]["test/ndcg@10"] > 1.2 * scores["pop"]["test/ndcg@10"], scores
    assert json.loads((tmp_path / "raw" / "source.json").read_text())["format"] == "csvlog"
