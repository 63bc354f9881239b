"""docs/benchmarks.md's generated tables agree with bench/results/*.json (bench/docs_tables.py)."""

import subprocess
import sys
from pathlib import Path

import pytest

from bench import docs_tables

ROOT = Path(__file__).resolve().parents[1]


def test_benchmarks_page_matches_results():
    res = subprocess.run([sys.executable, "-m", "bench.docs_tables", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "generated block(s) agree" in res.stdout


def test_check_catches_an_edited_number(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("x\n<!-- generated: bench.docs_tables --help -->\nstale\n<!-- end generated -->\ny\n")
    res = subprocess.run([sys.executable, "-m", "bench.docs_tables", "--check", "--page", str(page)], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 1 and "disagrees" in res.stderr
    subprocess.run([sys.executable, "-m", "bench.docs_tables", "--write-docs", "--page", str(page)], cwd=ROOT, check=True)
    text = page.read_text()
    assert text.startswith("x\n") and text.endswith("<!-- end generated -->\ny\n") and "--write-docs" in text


def test_a_glob_without_files_is_an_error():
    with pytest.raises(SystemExit, match="matches no file"):
        docs_tables.expand("bench.model_cost --report bench/results/no-such-*.json")
