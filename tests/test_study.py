"""Studies (pipeline/study.py): a declared comparison is validated with one clear line per problem,
runs its cells (one process per core), skips what is done, resumes a killed cell, and writes a
page whose verdicts come from the statistics; the README's "compare your model" path works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

TINY = ["datasets.demo.n_items=300", "datasets.demo.n_users=250", "datasets.demo.seed=3", "datasets.demo.image_size=16",
        "preprocess.user_core=3", "preprocess.item_core=3", "preprocess.max_len=20", "train.epochs=3",
        "train.batch_size=64", "train.lr=0.003", "models.sasrec.hidden=32", "models.sasrec.layers=1",
        "models.sasrec.inner=64", "features.shard_size=128"]


def tiny_study(tmp_path: Path, name: str = "tiny", **over) -> Path:
    study = {"title": "Tiny demo", "dataset": "demo", "seeds": [0, 1, 2], "settings": TINY, "reference": "sasrec",
             "rows": [{"id": "pop", "model": "pop"}, {"id": "sasrec", "model": "sasrec"}],
             "claims": [{"id": "seq", "source": "SASRec (ICDM'18) §4", "text": "a sequence model beats popularity",
                         "a": "sasrec", "b": "pop", "direction": ">", "effect": "+50%"}]} | over
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def study(*args: str, home: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = os.environ | {"MMREC_STUDIES": str(home), "PYTHONPATH": str(ROOT)} | (env_extra or {})
    return subprocess.run([sys.executable, "-m", "pipeline.study", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True)


@pytest.mark.parametrize("change, says", [
    ({"rows": [{"id": "pop", "model": "pop", "colour": "red"}]}, "rows.0.colour: Extra inputs are not permitted"),
    ({"reference": "nope"}, "reference 'nope' is not a row id"),
    ({"rows": [{"id": "pop", "model": "pop", "settings": ["train.loss=bce"]}, {"id": "sasrec", "model": "sasrec"}]},
     "row pop: settings ['train.loss=bce'] change a condition every row shares"),
    ({"rows": [{"id": "x", "model": "bert5rec"}]}, "model spec 'bert5rec': model='bert5rec' is not one of"),
    ({"views": {"test": {"metrics": ["ndcg10"]}}}, "views.test.metrics"),
    ({"seeds": "three"}, "seeds: Input should be a valid list"),
    ({"rows": [{"id": "pop", "model": "pop"}, {"id": "sasrec", "model": 'sasrec:loss="bce"'}]},
     "row sasrec: its loss (bce) differs from row pop's (ce); rows of one table share it"),
    ({"rows": [{"id": "pop", "model": "pop"}, {"id": "sasrec", "model": "sasrec", "settings": ["preprocess.max_len=10"]}]},
     "row sasrec: its data ("),
    ({"varies": ["data"], "rows": [{"id": "pop", "model": "pop"},
                                   {"id": "sasrec", "model": "sasrec", "settings": ["preprocess.max_len=10"]}]},
     "claim seq: rows sasrec and pop run on different data"),
])
def test_a_bad_study_file_is_one_line_naming_the_field(tmp_path, change, says):
    from pipeline.study import StudyError, load

    with pytest.raises(StudyError, match=None) as err:
        load(tiny_study(tmp_path, **change))
    assert says in str(err.value) and "\n" not in str(err.value), str(err.value)


@pytest.mark.slow
def test_a_study_runs_resumes_judges_and_takes_your_model(tmp_path):
    home = tmp_path / "home"
    path = tiny_study(tmp_path)
    killed = study("cell", str(path), "--row", "sasrec", "--seed", "0", home=home,
                   env_extra={"MMREC_KILL_AFTER_EPOCHS": "1"})
    assert killed.returncode == -9, killed.stderr[-2000:]
    other = tiny_study(tmp_path, name="pops", reference="pop", claims=[], rows=[{"id": "pop", "model": "pop"}])
    ran = study("run", str(path), str(other), "--cores", "0", "1", home=home)  # two studies, one queue
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    assert "6 cell(s) to run" in ran.stdout and "[6/6]" in ran.stdout and "[7/" not in ran.stdout
    assert "pops: 3 cell(s) to run" in ran.stdout and "(3 of them copied from a cell with the same key" in ran.stdout
    assert ran.stdout.count("copied to pops pop seed") == 3  # the same key trains once per queue
    assert (home / "pages" / "pops.md").is_file() and "0/1/2" in (home / "pages" / "pops.md").read_text()
    # a cell another study finished with the same parameters and model code is copied, not run again
    same = tiny_study(tmp_path, name="again", reference="popular", claims=[], rows=[{"id": "popular", "model": "pop"}])
    reused = study("run", str(same), home=home)
    assert "again: 3 cell(s) reused from other studies" in reused.stdout, reused.stdout[-2000:] + reused.stderr[-2000:]
    copied = yaml.safe_load((home / "results" / "again" / "popular-s1.json").read_text())["rows"][0]
    assert copied["reused_from"].endswith("-s1.json") and (home / "results" / "again" / copied["ranks"]).is_file()
    assert "s0 done, s1 done, s2 done" in study("status", str(same), home=home).stdout
    assert "resuming training" in (home / "results" / "tiny" / "logs" / "sasrec-s0.log").read_text()
    page = (home / "pages" / "tiny.md").read_text()
    claim = next(line for line in page.splitlines() if line.startswith("| a sequence model beats popularity"))
    assert claim.endswith("| reproduced |"), claim
    cell = yaml.safe_load((home / "results" / "tiny" / "sasrec-s1.json").read_text())["rows"][0]
    assert cell["curve"]["epoch"] == [1, 2, 3] and len(cell["curve"]["valid/ndcg@10"]) == 3  # rules replay on it
    again = study("run", str(path), home=home)
    assert "every cell is done" in again.stdout
    assert "s0 done, s1 done, s2 done" in study("status", str(path), home=home).stdout
    # the README's "compare your model": one row added on the command line, its cells only, the page with it
    added = study("run", str(path), "--add", "gru4rec:embedding=16;hidden=16", "--cores", "0", "1", home=home)
    assert added.returncode == 0 and "3 cell(s) to run" in added.stdout, added.stdout[-2000:] + added.stderr[-2000:]
    page = (home / "pages" / "tiny.md").read_text()
    row = next(line for line in page.splitlines() if line.startswith("| gru4rec:embedding=16;hidden=16 (added)"))
    assert "0/1/2" in row and "[" in row  # its three seeds and its two-level interval against the reference
    assert study("report", str(path), "--add", "gru4rec:embedding=16;hidden=16", "--check", home=home).returncode == 0


def test_declared_variation_is_allowed_and_stated(tmp_path):
    """`varies: [loss]` lets rows differ in their loss (a loss study); the page's header says so."""
    from pipeline.study import load, markdown

    st = load(tiny_study(tmp_path, varies=["loss"], claims=[],
                         rows=[{"id": "pop", "model": "pop"}, {"id": "sasrec", "model": 'sasrec:loss="bce"'}]))
    found = {"runs": {"pop": {}, "sasrec": {}}, "values": {(r, "test", m): (None, []) for r in ("pop", "sasrec")
                                                           for m in ("ndcg@10", "hr@10")}, "tested": {}, "holm": {}}
    assert "**Rows differ in their loss** (declared): pop ce, sasrec bce." in markdown(st, found)


def test_a_set_on_the_command_line_reruns_recorded_rows(tmp_path):
    """Rows recorded under other settings cannot share a table with cells run under `--set`."""
    from pipeline.study import load

    st = load(tiny_study(tmp_path, rows=[{"id": "pop", "model": "pop", "recorded": {"files": "x.json"}},
                                         {"id": "sasrec", "model": "sasrec"}]), settings=["train.epochs=1"])
    assert st.rows[0].rerun == "the study runs with --set train.epochs=1" and st.rows[1].rerun is None


def test_every_study_page_is_current():
    """docs/studies/*.md are what `report` makes from the result files (CI's check, like the tables')."""
    res = subprocess.run([sys.executable, "-m", "pipeline.study", "report", *sorted(map(str, (ROOT / "studies").glob("*.yaml"))),
                          "--check"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]


@pytest.mark.slow
def test_the_readme_compare_your_model_path_on_the_demo(tmp_path):
    """README, "Compare your model": `run studies/spine-demo.yaml --add <your model>` on the demo data,
    here with one epoch a cell (`--set train.epochs=1`, which re-runs the recorded rows under it too,
    so the table stays on equal terms) and the outputs under a temporary home."""
    home = tmp_path / "home"
    spec = "sasrec:hidden=16;layers=1"
    ran = study("run", "studies/spine-demo.yaml", "--add", spec, "--set", "train.epochs=1", "--cores", "0", "1",
                home=home)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    assert "18 cell(s) to run" in ran.stdout and "[18/18]" in ran.stdout
    page = (home / "pages" / "spine-demo.md").read_text()
    row = next(line for line in page.splitlines() if line.startswith(f"| {spec} (added)"))
    assert "0/1/2" in row and "[" in row  # three seeds, and its interval against SASRec
    assert "(to re-run" not in page  # every recorded row ran again under the same settings
    assert (home / "pages" / "spine-demo.html").read_text().count("<img") == 2  # a figure per view


def test_stopping_rules_are_replayed_on_the_validation_curves(tmp_path):
    """`stopping:` rules run over each cell's recorded validation curve: epochs run, the epoch kept and
    what it gives up against the whole curve's best, and which runs' curves ended before the rule stopped."""
    from pipeline.study import load, replay_rules, stopping_section

    st = load(tiny_study(tmp_path, claims=[], stopping={"short": {"patience": 2}, "long": {"patience": 50},
                                                        "frac": {"patience": 2, "patience_frac": 2.5}}))
    values = [0.1, 0.3, 0.2, 0.25, 0.29, 0.28, 0.35, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]  # best 0.35 at epoch 7
    curve = {"epoch": list(range(1, 16)), "step": [10 * e for e in range(1, 16)], "valid/ndcg@10": values}
    runs = {"pop": {}, "sasrec": {0: {"curve": curve}, 1: {"curve": curve | {"valid/ndcg@10": values[:3]}}}}
    got = replay_rules(st, runs)
    short, frac, long_ = got["short"]["sasrec"], got["frac"]["sasrec"], got["long"]["sasrec"]
    assert (short[0]["epochs"], short[0]["chosen"], round(short[0]["delta"], 6), short[0]["ran_out"]) == (4, 2, -0.05, False)
    # 2.5 x epoch 2: 5 stale epochs needed, so it sees the new best at epoch 7 (then 17.5: past the curve)
    assert (frac[0]["epochs"], frac[0]["chosen"], frac[0]["delta"], frac[0]["ran_out"]) == (15, 7, 0.0, True)
    assert (long_[0]["epochs"], long_[0]["delta"], long_[0]["ran_out"]) == (15, 0.0, True)
    assert short[1]["ran_out"] and short[1]["delta"] == 0.0  # a curve shorter than the rule: the run's own result
    page = "\n".join(stopping_section(st, runs))
    assert "| short | 2 epochs | 3.5 (" in page and "-0.0500 (sasrec s0)" in page
    assert "| frac | 2 epochs and 2.5 × the best's epoch |" in page


def test_a_setting_added_at_its_neutral_value_keeps_finished_cells():
    """cell_key leaves out a later-added switch at the value that does what its absence did."""
    from pipeline.study import cell_key

    base = {"dataset": "demo", "datasets": {"demo": {}}, "model": "pop", "models": {"pop": {}},
            "train": {"patience": 10}, "protocol": {}, "pretrain": None}
    added = base | {"train": {"patience": 10, "patience_frac": 0.0}}
    assert cell_key(added) == cell_key(base)
    assert cell_key(base | {"train": {"patience": 10, "patience_frac": 0.5}}) != cell_key(base)


def test_rekey_keeps_cells_only_when_the_code_change_changes_no_behaviour(tmp_path, monkeypatch):
    """A cell that ran with HEAD's model files goes stale when those files change; `pipeline.rekey`
    keeps it when the behaviour digests (tiny fixed-seed training with the old and the new files)
    are equal, and leaves it stale when they differ or when the cell ran with other code."""
    import json

    from pipeline import rekey as rk
    from pipeline import study as st

    monkeypatch.setattr(st, "RESULTS", tmp_path / "results")
    path = tiny_study(tmp_path, claims=[], reference=None, rows=[{"id": "pop", "model": "pop"}], seeds=[0, 1])
    s = st.load(path)
    row = s.rows[0]
    head = {f: h for f, h in st.code_hashes("pop").items()}  # the working tree's files, as committed
    for seed, key in ((0, st.cell_key(st.cell_params(s, row, 0), head)), (1, "ran-with-other-code")):
        st.result_file(s, row, seed).parent.mkdir(parents=True, exist_ok=True)
        st.result_file(s, row, seed).write_text(json.dumps({"key": key, "rows": [{"seed": seed}]}))
    edited = {f: "0" * 64 for f in head}  # "after an edit": every file of the closure hashes differently
    monkeypatch.setattr(st, "code_hashes", lambda name: edited)
    monkeypatch.setattr(rk, "old_tree", lambda commit, files, into: head)
    monkeypatch.setattr(rk, "digest_in", lambda tree, params: "same")
    said = rk.rekey([path], "HEAD")
    assert "tiny/pop s0: same behaviour as at HEAD" in said[0] and "not run with HEAD's code" in said[1]
    assert st.finished(s, row, 0) and not st.finished(s, row, 1)
    assert json.loads(st.result_file(s, row, 0).read_text())["rekeyed"][0]["from"] == "HEAD"
    # a behaviour change is never accepted
    st.result_file(s, row, 0).write_text(json.dumps({"key": st.cell_key(st.cell_params(s, row, 0), head),
                                                     "rows": [{"seed": 0}]}))
    monkeypatch.setattr(rk, "digest_in", lambda tree, params: str(tree))
    assert "changes its behaviour: re-run" in rk.rekey([path], "HEAD")[0] and not st.finished(s, row, 0)


def test_the_behaviour_digest_is_reproducible_and_sees_a_change():
    """The digest rekey compares: the same configuration twice gives the same digest; another
    configuration (a different model setting) another one."""
    from pipeline.config import load_params
    from pipeline.rekey import digest

    p = load_params(ROOT / "params.yaml") | {"model": "sasrec"}
    p["models"]["sasrec"] = p["models"]["sasrec"] | {"hidden": 16, "inner": 32, "layers": 1}
    a, b = digest(p), digest(p)
    p["models"]["sasrec"]["dropout"] = 0.0
    assert a == b != digest(p)
