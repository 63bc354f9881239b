"""Studies: a comparison declared in `studies/<name>.yaml`, run, judged and written up by one command.

    python -m pipeline.study run studies/spine-demo.yaml [--add 'textgru'] [--cores 0 1] [--set train.epochs=5]
    python -m pipeline.study status studies/spine-demo.yaml
    python -m pipeline.study report studies/*.yaml [--add ...] [--check]
    python -m pipeline.study index studies/*.yaml                  # the studies' table (docs/benchmarks.md)
    python -m pipeline.study claims --source MSM4SR studies/*.yaml # one paper's verdicts (docs/models/*.md)

A study names its data set, seeds, the settings every row shares, its rows (a model spec and the
row's own settings; or results recorded by earlier runs), a reference row, the query views and
metrics it reports, and the claims it tests (paper, section, the comparison, its direction and the
paper's effect size). `run` trains every missing cell — (row, seed) — through pipeline.cells, one
process per core, pinned, one thread each unless the study says otherwise; a cell whose result
file holds the same key (its parameters and its model's code fingerprint) is not run again, and a
killed study resumes: finished cells are kept, a cell killed mid-training resumes after its last
epoch. `report` writes `docs/studies/<name>.md` and `.html`: every row's per-seed means, each
row's difference to the reference and every claim's difference with a two-level bootstrap interval
(users as clusters × seeds, pipeline.compare), Holm's correction over the page's comparisons, and a
verdict per claim — reproduced / not reproduced / inconclusive (underpowered) / untested here —
generated, never typed.

Why not DVC experiments for the cells: a queued `dvc exp run` copies the workspace per experiment
and re-runs (or restores) download, preprocessing and features in each copy, and a queue task
killed at a session's end is lost; a study's cells share one prepared work folder and resume after
their last epoch. Every cell runs the library functions the DVC stages call, so a cell and a
`dvc exp run` of the same settings train the same model (docs/architecture.md, "Studies").
"""

from __future__ import annotations

import argparse
import base64
import glob
import hashlib
import io
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline import builder, cells, compare
from pipeline.config import load_params
from pipeline.jobs import Job, run_jobs
from pipeline.layout import FEATURE_STAGES
from pipeline.loop import EarlyStopping
from pipeline.params import ConfigError, setup_logging
from pipeline.plan import code_hashes
from pipeline.results import run_settings, save
from pipeline.tables import atomic_path

log = logging.getLogger("pipeline.study")

ROOT = Path(__file__).resolve().parents[1]
HOME = Path(os.environ["MMREC_STUDIES"]) if os.environ.get("MMREC_STUDIES") else None  # tests: elsewhere
RESULTS = HOME / "results" if HOME else ROOT / "studies" / "results"  # cells' result files and ranks (committed)
PAGES = HOME / "pages" if HOME else ROOT / "docs" / "studies"
WORK = HOME / ".work" if HOME else ROOT / "studies" / ".work"  # prepared data and run states (git-ignored)
RUN_METRICS = ("wall_s",)  # per run, not per query: compared over the seeds' values (a best_of row: its candidates' sum)
# per query: hr@K, ndcg@K, mrr@K (from the rank), pop@K, tail@K (columns of the ranks); coverage@K: per run
MIN_SEEDS = 3  # fewer seeds on a side: the difference is shown, never starred, and a claim is not judged
SHARED = ("train.loss", "train.negatives", "train.negatives_by", "train.patience", "train.patience_steps",
          "train.patience_frac", "train.epochs", "train.batch_size", "protocol")  # what rows of one table must share (a row may not set them)


class StudyError(ConfigError):
    """A study file is malformed, or asks for what cannot be done; the message says where and why."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Recorded(Strict):
    """Results of earlier runs (a result file's rows): the files, the spec they recorded, and the
    `--set` settings they must have run with (thread counts ignored; None: any)."""

    files: str | list[str]  # globs, relative to the project root; a later file's row of a seed wins
    model: str | None = None
    settings: list[str] | None = None


class Row(Strict):
    id: str
    model: str | None = None  # name[:key=value;...] (pipeline.cells.parse_spec)
    best_of: list[str] = []  # or: per seed, the listed row with the best validation NDCG@10 (an exhaustive search)
    label: str | None = None
    settings: list[str] = []  # the row's own params.yaml overrides (never one of SHARED)
    recorded: Recorded | None = None
    rerun: str | None = None  # why its recorded results must be re-run (shown; they still count, labelled)
    requires: list[str] = []  # files a cell waits for (another study's kept model, e.g. a transfer source)
    keep_model: str | None = None  # a folder: each cell's model is kept as <folder>/s<seed>/model.pt (a transfer source)

    @property
    def copyable(self) -> bool:
        """May a cell of this row take the result of another cell with its key instead of training? Not
        a transfer source: its kept model file is an output a result file does not carry."""
        return not self.keep_model

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", v):
            raise ValueError(f"row id {v!r}: letters, digits, _ . - only (it names files)")
        return v


class View(Strict):
    # test_unmasked: no history masking; test_sampled: against protocol.sampled negatives (SAMPLED, labelled)
    query: Literal["test", "valid", "cold_seq", "test_unmasked", "test_sampled"] = "test"
    cold_items: str | None = None  # a JSON file of cold item ids (`run` writes it when missing): queries whose target is one
    label: str | None = None
    metrics: list[str] = ["ndcg@10", "hr@10"]
    primary: str | None = None  # the metric each row is compared on against the reference here (default: the study's)

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v: list[str]) -> list[str]:
        for m in v:
            if m not in RUN_METRICS and not re.fullmatch(r"(hr|ndcg|mrr|pop|tail|coverage)@[1-9][0-9]*", m):
                raise ValueError(f"metric {m!r}: use hr@K, ndcg@K, mrr@K, pop@K, tail@K, coverage@K or "
                                 f"{', '.join(RUN_METRICS)}")
        return v


class Claim(Strict):
    id: str
    source: str  # paper and section
    text: str
    a: str  # row ids: the claim is about a − b
    b: str
    direction: Literal[">", "<", "="]
    effect: float | str | None = None  # the paper's a − b on `metric`: absolute, or "-10.9%" of b's mean; "=": the margin
    effect_note: str | None = None
    metric: str = "ndcg@10"
    view: str = "test"
    untested: str | None = None  # why this cannot be tested here

    @field_validator("effect")
    @classmethod
    def _effect(cls, v):
        if isinstance(v, str) and not re.fullmatch(r"[-+]?\d+(\.\d+)?%", v):
            raise ValueError(f"effect {v!r}: a number (absolute) or a percentage of B's mean such as '-10.9%'")
        return v

    def absolute(self, b_mean: float) -> float | None:
        """The paper's effect on our scale: absolute as given, or its percentage of our B's mean."""
        if isinstance(self.effect, str):
            return float(self.effect.rstrip("%")) / 100 * b_mean
        return self.effect


class StopRule(Strict):
    """An early-stopping rule to replay on every run's validation curve (train.patience*)."""
    patience: int = Field(10, ge=1)
    patience_steps: int = Field(0, ge=0)
    patience_frac: float = Field(0.0, ge=0)

    def stopper(self) -> EarlyStopping:
        return EarlyStopping(self.patience, self.patience_steps, self.patience_frac)

    def describe(self) -> str:
        return " and ".join([f"{self.patience} epoch{'s' if self.patience != 1 else ''}"] + ([f"{self.patience_steps} steps"] if self.patience_steps else [])
                            + ([f"{self.patience_frac:g} × the best's epoch"] if self.patience_frac else []))


class Study(Strict):
    name: str
    title: str
    dataset: str
    seeds: list[int]
    settings: list[str] = []
    conditions: dict[str, str] = {}
    reference: str | None = None
    primary: str = "ndcg@10"
    views: dict[str, View] = {"test": View()}
    rows: list[Row]
    claims: list[Claim] = []
    notes: str | None = None
    varies: list[Literal["loss", "data"]] = []  # what rows may differ in, declared (else every row shares it)
    threads: int = 1  # per cell (one cell per core)
    budget_epochs: int | None = None  # a fixed epoch budget: rows whose best epochs sit at it are not converged
    seed_pretraining: bool = False  # true: a seed pre-trains with its own pretrain.seed (its variance in the intervals)
    stopping: dict[str, StopRule] = {}  # rules replayed on each run's validation curve (against its own, longer rule)


# ---------------------------------------------------------------------------------------------- loading
def load(path: str | Path, add: list[str] | tuple = (), settings: list[str] | tuple = ()) -> Study:
    """The study file, validated (one line per problem, naming the field), with `add` specs as
    extra rows and `settings` appended to the shared ones."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"{path}: no such study file (studies/*.yaml)")
    import yaml

    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: a study is a mapping (title, dataset, seeds, rows, ...)")
    raw = {"name": path.stem} | raw
    raw["rows"] = list(raw.get("rows") or []) + [{"id": added_id(spec), "model": spec, "label": f"{spec} (added)"}
                                                 for spec in add]
    raw["settings"] = list(raw.get("settings") or []) + list(settings)
    if settings:  # recorded results ran without them: equal terms means running those rows again
        raw["rows"] = [r | {"rerun": f"the study runs with --set {' '.join(settings)}"}
                       if isinstance(r, dict) and r.get("recorded") and not r.get("rerun") else r for r in raw["rows"]]
    try:
        study = Study(**raw)
    except ValidationError as e:
        raise StudyError(f"{path}: " + "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}"
                                                 for err in e.errors())) from None
    check(study, path)
    return study


def added_id(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", spec).strip("_")


def check(study: Study, path: Path) -> None:
    """What the schema cannot say: ids unique and known, specs and settings valid, no row changing
    a shared condition."""
    ids = [r.id for r in study.rows]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    problems = [f"row id(s) {dup} appear twice"] if dup else []
    if study.reference is not None and study.reference not in ids:
        problems.append(f"reference {study.reference!r} is not a row id ({ids})")
    problems += [f"view {v}: primary {view.primary!r} is not one of its metrics" for v, view in study.views.items()
                 if view.primary and view.primary not in view.metrics]
    for c in study.claims:
        problems += [f"claim {c.id}: {side}={row!r} is not a row id" for side, row in (("a", c.a), ("b", c.b))
                     if row not in ids]
        if c.view not in study.views:
            problems.append(f"claim {c.id}: view {c.view!r} is not one of {sorted(study.views)}")
        elif c.metric not in study.views[c.view].metrics:
            problems.append(f"claim {c.id}: metric {c.metric!r} is not reported in view {c.view!r}")
        if c.direction == "=" and c.effect is None and c.untested is None:
            problems.append(f"claim {c.id}: an equivalence claim needs its margin (effect)")
    for r in study.rows:
        if (r.model is None) == (not r.best_of):
            problems.append(f"row {r.id}: give either `model` (a spec) or `best_of` (row ids), not both or neither")
            continue
        if r.best_of:
            problems += [f"row {r.id}: best_of names {x!r}, not a row id" for x in r.best_of if x not in ids]
            continue
        try:
            cells.parse_spec(r.model)
            cells.with_settings({}, r.settings)
        except ConfigError as e:
            problems.append(f"row {r.id}: {e}")
        shared = [s for s in r.settings if s.split("=", 1)[0].startswith(SHARED)]
        if shared:
            problems.append(f"row {r.id}: settings {shared} change a condition every row shares ({', '.join(SHARED)}); "
                            "set it for the whole study, or make it another study")
    try:
        cells.with_settings({}, study.settings)
    except ConfigError as e:
        problems.append(str(e))
    if not problems:
        problems += unequal_terms(study)
    if problems:
        raise StudyError(f"{path}: " + "; ".join(problems))


def terms(study: Study, row: Row) -> dict[str, str]:
    """The conditions a row's cells run under that rows of one table must share: the loss it
    trains with (the model's own `loss`, else train.loss) and its data (the prepared folder)."""
    params = cell_params(study, row, study.seeds[0])
    return {"loss": params["models"][params["model"]].get("loss") or params["train"]["loss"],
            "data": work_folder(params).name}


def unequal_terms(study: Study) -> list[str]:
    """A row whose loss or data differs from the first row's, unless the study declares it `varies`."""
    rows = [r for r in study.rows if r.model]
    if not rows:
        return []
    first = terms(study, rows[0])
    out = []
    for r in rows[1:]:
        got = terms(study, r)
        out += [f"row {r.id}: its {k} ({got[k]}) differs from row {rows[0].id}'s ({first[k]}); rows of one table "
                f"share it — declare `varies: [{k}]` if the study compares it" for k in first
                if got[k] != first[k] and k not in study.varies]
    data = {r.id: terms(study, r)["data"] for r in rows}
    out += [f"claim {c.id}: rows {c.a} and {c.b} run on different data; a comparison pairs rows of the same data"
            for c in study.claims if c.a in data and c.b in data and data[c.a] != data[c.b]]
    return out


# ---------------------------------------------------------------------------------------------- cells
def base_params(study: Study) -> dict:
    """params.yaml with the study's data set and shared settings (one thread a cell unless set)."""
    threads = [f"{s}.threads={study.threads}" for s in ("train", "features", "pretrain")]
    params = cells.with_settings(load_params(ROOT / "params.yaml"), threads + study.settings)
    if study.dataset not in (params.get("datasets") or {}):
        raise StudyError(f"study {study.name}: dataset {study.dataset!r} is not under params.yaml `datasets`")
    return params | {"dataset": study.dataset}


def cell_params(study: Study, row: Row, seed: int) -> dict:
    p = cells.cell_params(cells.with_settings(base_params(study), row.settings), row.model, seed)
    if study.seed_pretraining and builder.traits(p["model"]).pretraining:  # each seed its own pre-training
        p["pretrain"] = p["pretrain"] | {"seed": seed}
    return p


def work_folder(params: dict) -> Path:
    """One prepared folder per data set and the settings its data and features depend on."""
    data = without_neutral({k: params.get(k) for k in ("dataset", "preprocess", "features")}) | {
        "datasets": params["datasets"][params["dataset"]]}
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return WORK / f"{params['dataset']}-{digest}"


# Settings added after cells were recorded, with the value that does what their absence did: at that
# value they are left out of a cell's key, so adding a switch does not make every finished cell stale.
ADDED_NEUTRAL = {("train", "patience_frac"): 0.0, ("protocol", "head_share"): 0.2, ("preprocess", "split"): "loo",
                 ("preprocess", "split_cuts"): [0.8, 0.9], ("train", "order"): "time",
                 ("features", "text", "encoder", "instruction"): "", ("features", "text", "encoder", "add_eos"): True,
                 ("preprocess", "engine"): "auto"}


def without_neutral(sections: dict) -> dict:
    """`sections` without the later-added settings (key paths) that sit at their neutral value."""

    def drop(d, path: tuple, neutral):
        if not isinstance(d, dict) or path[0] not in d:
            return d
        if len(path) == 1:
            return {k: v for k, v in d.items() if k != path[0]} if d[path[0]] == neutral else d
        return d | {path[0]: drop(d[path[0]], path[1:], neutral)}

    out = dict(sections)
    for path, neutral in ADDED_NEUTRAL.items():
        out = drop(out, path, neutral)
    return out


def cell_key(params: dict, code: dict[str, str] | None = None) -> str:
    """What a finished cell must match to count: its parameters and its model's code fingerprint
    (`code`: {path: SHA-256} of another version of the model's files, for `pipeline.rekey`)."""
    name = params["model"]
    keep = without_neutral({k: params.get(k) for k in ("dataset", "preprocess", "train", "protocol", "pretrain",
                                                        "features")})
    keep |= {"datasets": params["datasets"][params["dataset"]], "model": name, "section": params["models"][name],
             "code": code if code is not None else code_hashes(name)}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()


def result_file(study: Study, row: Row, seed: int) -> Path:
    return RESULTS / study.name / f"{row.id}-s{seed}.json"


def finished(study: Study, row: Row, seed: int) -> dict | None:
    """The cell's result row when it ran with this key (else None: missing or stale)."""
    path = result_file(study, row, seed)
    if not path.is_file():
        return None
    payload = json.loads(path.read_text())
    return payload["rows"][0] if payload.get("key") == cell_key(cell_params(study, row, seed)) else None


def run_cell(study_path: Path, row_id: str, seed: int, add: list[str], settings: list[str]) -> None:
    """One cell, in its own process (what `run` launches): train, evaluate, write the result file."""
    study = load(study_path, add, settings)
    row = next(r for r in study.rows if r.id == row_id)
    for need in row.requires:
        path = ROOT / need
        while not path.is_file():
            log.info("waiting for %s (another study's cell makes it)", path)
            time.sleep(30)
    params = cell_params(study, row, seed)
    key = cell_key(params)  # now, as the model's code is imported: a file edited during the run does not re-key it
    folder = RESULTS / study.name
    result = cells.run_cell(params, work_folder(params), row.model, seed, folder, row.id,
                            ROOT / row.keep_model / f"s{seed}" / "model.pt" if row.keep_model else None)
    save(result_file(study, row, seed), [result], key=key, study=study.name, row=row.id)


def write_cold_items(study: Study) -> None:
    """A cold-item view's file, when missing: the items with fewer than protocol.cold_threshold
    training events in the study's data (kept beside the results: reports need no prepared data)."""
    from pipeline.data import load_split
    from pipeline.evaluation import cold_items

    for view in study.views.values():
        if view.cold_items and not (ROOT / view.cold_items).is_file():
            params = base_params(study)
            threshold = int((params.get("protocol") or {}).get("cold_threshold", 10))
            cold = cold_items(load_split(work_folder(params) / "prepared").training, threshold)
            with atomic_path(ROOT / view.cold_items) as tmp:
                tmp.write_text(json.dumps({"dataset": study.dataset, "threshold": threshold,
                                           "num_items": len(cold) - 1, "cold_items": cold.nonzero()[0].tolist()}))


def pending(study: Study) -> list[tuple[Row, int]]:
    return [(r, s) for r in study.rows if r.model and (r.recorded is None or r.rerun) for s in study.seeds
            if finished(study, r, s) is None]


@dataclass(eq=False)
class Cell:
    """A missing cell of a study, with its key (parameters and model code)."""
    study: Study
    path: Path  # the study file
    row: Row
    seed: int
    key: str


def copy_cell(src: Path, cell: Cell) -> None:
    """A finished cell of another study with the same key, copied as this cell's result (its ranks
    beside it, `reused_from` naming the file it came from) instead of run again."""
    payload = json.loads(src.read_text())
    row = payload["rows"][0]
    ranks = cells.keep_ranks(src.parent / row["ranks"], RESULTS / cell.study.name, cell.row.id, cell.row.model,
                             cell.seed)
    save(result_file(cell.study, cell.row, cell.seed),
         [row | {"model": cell.row.model, "ranks": ranks, "reused_from": str(src.relative_to(RESULTS))}],
         key=payload["key"], study=cell.study.name, row=cell.row.id)


def finished_elsewhere() -> dict[str, Path]:
    """{key: result file} of every finished cell with ranks, in every study."""
    index: dict[str, Path] = {}
    for f in sorted(RESULTS.glob("*/*.json")):
        payload = json.loads(f.read_text())
        if payload.get("key") and payload["rows"][0].get("ranks"):
            index.setdefault(payload["key"], f)
    return index


def plan(study_path: Path, add: list[str], settings: list[str], done_elsewhere: dict[str, Path]) -> tuple[Study, list[Cell]]:
    """A study's missing cells, its data and features prepared first (once per work folder); a cell
    another study finished with the same key is copied here, not run again."""
    study = load(study_path, add, settings)
    todo = [Cell(study, study_path, r, s, cell_key(cell_params(study, r, s))) for r, s in pending(study)]
    reused = [c for c in todo if c.row.copyable and c.key in done_elsewhere]
    for c in reused:
        copy_cell(done_elsewhere[c.key], c)
    if reused:
        print(f"{study.name}: {len(reused)} cell(s) reused from other studies (same parameters and model code)",
              flush=True)
    todo = [c for c in todo if all(c is not r for r in reused)]
    mine = [cell_params(study, c.row, c.seed) for c in todo]
    for folder in {work_folder(q) for q in mine}:  # data and features once, up front
        p = next(q for q in mine if work_folder(q) == folder)
        cells.prepare(p, folder)
        stages = {st for q in mine for st in FEATURE_STAGES if builder.needs(q)[st]}
        cells.extract(p, folder, [st for st in FEATURE_STAGES if st in stages])
    if todo:
        write_cold_items(study)
    return study, todo


def run(study_paths: list[Path], add: list[str], settings: list[str], cores: list[int]) -> int:
    """Every missing cell of the studies from one queue, one process per core (pinned), so no core
    waits for a study's last cell; a key (parameters and model code) is trained once — a second
    study's cell with the same key is copied from the first when it finishes (or at once when it
    finished before). Each study's page is written as its last cell ends (and for a study with
    nothing to run, at once). Returns the failures."""
    done_elsewhere = finished_elsewhere()
    plans = [plan(path, add, settings, done_elsewhere) for path in study_paths]
    left = {study.name: len(todo) for study, todo in plans}
    trained: set[str] = set()  # the keys a job of this queue trains
    copies: dict[str, list[Cell]] = {}  # key -> the cells copied from it when it finishes
    jobs, by_job = [], {}
    for (study, todo), path in zip(plans, study_paths):
        base = [sys.executable, "-m", "pipeline.study", "cell", str(path), *sum((["--add", a] for a in add), []),
                *sum((["--set", s] for s in settings), [])]
        waiting = 0
        for c in todo:
            if c.key in trained and c.row.copyable:
                copies.setdefault(c.key, []).append(c)
                waiting += 1
                continue
            trained.add(c.key)
            job = Job(f"{study.name} {c.row.id} seed {c.seed}", base + ["--row", c.row.id, "--seed", str(c.seed)],
                      RESULTS / study.name / "logs" / f"{c.row.id}-s{c.seed}.log")
            jobs.append(job)
            by_job[id(job)] = c
        if todo:
            print(f"{study.name}: {len(todo)} cell(s) to run on core(s) {cores}; logs in "
                  f"{RESULTS / study.name / 'logs'}" + (f" ({waiting} of them copied from a cell with the same key "
                                                         "when it finishes)" if waiting else ""), flush=True)
        else:
            print(f"{study.name}: every cell is done ({len(study.rows)} rows × {len(study.seeds)} seeds)", flush=True)
    count = [0]

    def page(study: Study, path: Path) -> None:
        try:  # the queue goes on: a page that cannot be written now is written by `report` later
            report(load(path, add, settings))
            print(f"{path}: {PAGES / (Path(path).stem + '.md')}", flush=True)
        except ConfigError as e:
            print(f"{path}: page not written ({e}); the cells are saved — run `python -m pipeline.study "
                  f"report {path}`", flush=True)

    def ended(c: Cell) -> None:
        left[c.study.name] -= 1
        if left[c.study.name] == 0:
            page(c.study, c.path)

    def done(job: Job, rc: int, seconds: float) -> None:
        count[0] += 1
        print(f"[{count[0]}/{len(jobs)}] {job.name}: {'done' if rc == 0 else f'FAILED (exit {rc}), see {job.log}'} "
              f"in {seconds:.0f} s", flush=True)
        c = by_job[id(job)]
        for other in copies.pop(c.key, []):
            if rc == 0:
                copy_cell(result_file(c.study, c.row, c.seed), other)
                print(f"  copied to {other.study.name} {other.row.id} seed {other.seed} (same key)", flush=True)
            ended(other)
        ended(c)

    for (study, todo), path in zip(plans, study_paths):
        if not todo:
            page(study, path)
    codes = run_jobs(jobs, cores, done)
    return sum(rc != 0 for rc in codes)


def status(study: Study) -> str:
    lines = [f"{study.name}: {study.title}", ""]
    for r in study.rows:
        if r.best_of:
            lines.append(f"  {r.id:<28} the best on validation of {r.best_of}, per seed")
            continue
        if r.recorded is not None and not r.rerun:
            got = sorted(recorded_results(r))
            lines.append(f"  {r.id:<28} recorded: seeds {got or 'none'} ({r.recorded.files})")
            continue
        marks = []
        for s in study.seeds:
            path = result_file(study, r, s)
            marks.append(f"s{s} " + ("done" if finished(study, r, s) else "stale" if path.is_file() else "missing"))
        lines.append(f"  {r.id:<28} {', '.join(marks)}" + (f"  (re-run: {r.rerun})" if r.rerun else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- results
def recorded_results(row: Row) -> dict[int, dict]:
    """{seed: result row (+ `_dir`)} of a row's recorded files: the rows of its spec run with its settings."""
    rec = row.recorded
    out = {}
    for f in [f for pattern in ([rec.files] if isinstance(rec.files, str) else rec.files)
              for f in sorted(glob.glob(pattern, root_dir=ROOT))]:
        payload = json.loads((ROOT / f).read_text())
        if rec.settings is not None:
            sets = run_settings(payload)
            if sets is None or sets - {"preprocess.user_fraction=1.0"} != set(rec.settings):
                continue
        for r in payload["rows"]:
            if r["model"] == (rec.model or row.model):
                out[r.get("seed", 42)] = r | {"_dir": str((ROOT / f).parent)}
    return out


def results(study: Study, row: Row) -> dict[int, dict]:
    """{seed: result row}: the row's finished cells, else its recorded results; for a `best_of`
    row, per seed the candidate with the best validation NDCG@10 (`chosen` says which)."""
    if row.best_of:
        rows = {r.id: r for r in study.rows}
        per = {c: results(study, rows[c]) for c in row.best_of}
        return {s: max((per[c][s] | {"chosen": c, "cost_wall_s": sum(per[x][s]["wall_s"] for x in row.best_of)}
                        for c in row.best_of), key=lambda r: r["valid/ndcg@10"])
                for s in study.seeds if all(s in per[c] for c in row.best_of)}
    ran = {s: r | {"_dir": str(RESULTS / study.name)} for s in study.seeds if (r := finished(study, row, s))}
    if ran or row.recorded is None:
        return ran
    return {s: r | {"_recorded": True} for s, r in recorded_results(row).items() if s in study.seeds}


def view_values(runs: dict[int, dict], view: View, metric: str) -> tuple[np.ndarray | None, list[float]]:
    """Per-seed means of `metric` in `view`, and the ranks table list for paired statistics (None
    when a run kept no ranks)."""
    if metric in RUN_METRICS:
        return None, [r.get(f"cost_{metric}", r[metric]) for _, r in sorted(runs.items())]
    if metric.startswith("coverage@"):  # one value per run (of the whole query set): over the seeds' values
        return None, [r[f"{view.query}/{metric}"] for _, r in sorted(runs.items()) if f"{view.query}/{metric}" in r]
    if all(r.get("ranks") for r in runs.values()):
        tables = [select(compare.read_ranks(Path(r["_dir"]) / r["ranks"]), view) for _, r in sorted(runs.items())]
        if compare.column_of(metric) not in tables[0].columns:  # ranked before the column was kept
            return None, []
        return tables, [float(np.nanmean(compare.metric_values(t[compare.column_of(metric)].to_numpy(), metric)))
                        for t in tables]
    if view.cold_items:  # the recorded cold metrics used another definition of cold: only ranks can say
        return None, []
    return None, [r[f"{view.query}/{metric}"] for _, r in sorted(runs.items()) if f"{view.query}/{metric}" in r]


def select(ranks: pl.DataFrame, view: View) -> pl.DataFrame:
    """The view's queries of a ranks table (a cold-item view: those whose target is cold)."""
    q = ranks.filter(pl.col("query") == view.query)
    if view.cold_items:
        q = q.filter(pl.col("target").is_in(json.loads((ROOT / view.cold_items).read_text())["cold_items"]))
    return q.with_columns(pl.lit("view").alias("query"))  # what `interval` pairs on


def interval(a: list, b: list, metric: str, seed: int = 0) -> compare.Interval:
    """Two-level interval of A − B from ranks tables (paired per query), or from per-seed values alone."""
    if a and isinstance(a[0], pl.DataFrame):
        users, _, values = compare.aligned(a + b, "view", compare.column_of(metric))
        return compare.two_level(compare.metric_values(values[:, :len(a)], metric),
                                 compare.metric_values(values[:, len(a):], metric), users, seed=seed)
    return compare.two_level(np.array([a]), np.array([b]), np.zeros(1), seed=seed)


# ---------------------------------------------------------------------------------------------- report
def primary(study: Study, view: View) -> str:
    return view.primary or study.primary


def fmt(values: list[float]) -> str:
    v = np.asarray(values, float)
    if not len(v):
        return "—"
    d = 0 if abs(v.mean()) >= 10 else 4
    return f"{v.mean():.{d}f}" + (f" ± {v.std(ddof=1):.{d}f}" if len(v) > 1 else "")


def delta(iv: compare.Interval, p_holm: float) -> str:
    if min(iv.seeds_a, iv.seeds_b) < MIN_SEEDS:  # shown, never starred, outside Holm's family
        return f"{iv.diff:+.4f} (n < {MIN_SEEDS} seeds" + (")" if min(iv.seeds_a, iv.seeds_b) < 2 else
                                                            f": [{iv.low:+.4f}, {iv.high:+.4f}])")
    star = " *" if iv.excludes_zero and p_holm < compare.ALPHA else ""
    return f"{iv.diff:+.4f} [{iv.low:+.4f}, {iv.high:+.4f}]{star}"


def analyse(study: Study) -> dict:
    """Everything the page says, computed: per row and view the per-seed means; the family of
    comparisons — each row against the reference on the primary metric, then the claims, each
    (a, b, view, metric) once — with two-level intervals and Holm-adjusted p-values."""
    runs = {r.id: results(study, r) for r in study.rows}
    values = {(r.id, v, m): view_values(runs[r.id], view, m) if runs[r.id] else (None, [])
              for r in study.rows for v, view in study.views.items() for m in view.metrics}
    family = []
    if study.reference:
        data = {r.id: terms(study, r)["data"] for r in study.rows if r.model}
        family += [(r.id, study.reference, v, primary(study, view)) for r in study.rows
                   for v, view in study.views.items() if r.id != study.reference and primary(study, view) in view.metrics
                   and data.get(r.id, data.get(study.reference)) == data.get(study.reference)]
    family += [(c.a, c.b, c.view, c.metric) for c in study.claims if not c.untested]
    tested = {}
    for a, b, v, m in dict.fromkeys(family):
        (ta, va), (tb, vb) = values[(a, v, m)], values[(b, v, m)]
        if va and vb:
            paired = ta is not None and tb is not None
            tested[(a, b, v, m)] = interval(ta if paired else va, tb if paired else vb, m)
    judged = [k for k, iv in tested.items() if min(iv.seeds_a, iv.seeds_b) >= MIN_SEEDS]  # the rest are never starred
    holm = {k: float("nan") for k in tested} | dict(zip(judged, compare.holm([tested[k].p_value for k in judged])))
    return {"runs": runs, "values": values, "tested": tested, "holm": holm}


def claim_verdict(study: Study, claim: Claim, found: dict) -> tuple[str, compare.Interval | None, float | None]:
    if claim.untested:
        return f"untested here ({claim.untested})", None, None
    key = (claim.a, claim.b, claim.view, claim.metric)
    if key not in found["tested"]:
        missing = [x for x in (claim.a, claim.b) if not found["runs"][x]]
        return (f"untested here (no results for {', '.join(missing)} yet: `python -m pipeline.study run "
                f"studies/{study.name}.yaml`)"), None, None
    iv, p = found["tested"][key], found["holm"][key]
    limited = [x for x in (claim.a, claim.b) if budget_limited(study, found["runs"][x])]
    if limited:
        return (f"inconclusive (budget-limited: {', '.join(limited)} peaked at the {study.budget_epochs}-epoch budget "
                "— a comparison of learning speed, not of converged quality)"), iv, p
    if min(iv.seeds_a, iv.seeds_b) < MIN_SEEDS:
        return f"untested here (fewer than {MIN_SEEDS} seeds on a side)", iv, p
    said = compare.verdict(iv, p, claim.direction, effect_of(claim, found))
    if said == "not reproduced":
        said += " (under the conditions above)"
    reruns = [r.id for r in study.rows if r.id in (claim.a, claim.b) and r.rerun
              and any(x.get("_recorded") for x in found["runs"][r.id].values())]
    return said + (f"; row(s) {reruns} to be re-run" if reruns else ""), iv, p


def budget_limited(study: Study, runs: dict[int, dict]) -> bool:
    """The row's best epochs sit at the study's fixed budget (mean ≥ 90 % of it): still improving."""
    best = [r["best_epoch"] for r in runs.values() if "best_epoch" in r]
    return bool(study.budget_epochs and best and np.mean(best) >= 0.9 * study.budget_epochs)


def effect_of(claim: Claim, found: dict) -> float | None:
    b = found["values"][(claim.b, claim.view, claim.metric)][1]
    return claim.absolute(float(np.mean(b))) if b else None


def markdown(study: Study, found: dict | None = None) -> str:
    found = found or analyse(study)
    runs, values, tested, adj = found["runs"], found["values"], found["tested"], found["holm"]
    rows_by_id = {r.id: r for r in study.rows}
    stats_of = next((f"{r['users']:,} users, {r['items']:,} items" for rs in runs.values() for r in rs.values()
                     if "users" in r and "items" in r), None)
    out = [f"# {study.title}", "",
           f"<!-- generated by `python -m pipeline.study report studies/{study.name}.yaml` from the result files; "
           "do not edit -->", ""]
    out.append(f"**Data:** `{study.dataset}`" + (f" — {stats_of}" if stats_of else "") +
               f". **Seeds:** {', '.join(map(str, study.seeds))} for every row.")
    if study.settings:
        out.append(f"**Shared settings** (params.yaml overrides, every row): `{' '.join(study.settings)}`.")
    if study.seed_pretraining:
        out.append("**Pre-training:** every seed pre-trains its own weights (`pretrain.seed` = the seed), so the "
                   "seed level of every interval holds the pre-training's variance too.")
    modelled = [r for r in study.rows if r.model]
    if modelled:
        per = {r.id: terms(study, r) for r in modelled}
        out.append(f"**Loss:** {per[modelled[0].id]['loss']} for every row." if "loss" not in study.varies else
                   "**Rows differ in their loss** (declared): " + ", ".join(f"{i} {t['loss']}" for i, t in per.items())
                   + ".")
        if "data" in study.varies:
            out.append("**Rows differ in their data** (declared); a comparison pairs rows of the same data only.")
    for k, v in study.conditions.items():
        out.append(f"**{k}:** {v}")
    n = sum(np.isfinite(p) for p in adj.values())
    out += ["", f"**Statistics:** differences A − B are the mean over queries of A's mean over its seeds minus "
                f"B's; 95 % intervals by a two-level bootstrap (the users resampled as clusters with all their "
                f"queries, and each side's seeds resampled; 10,000 resamples, percentile). `*`: the interval "
                f"excludes 0 and Holm's adjusted p < 0.05 over the {n} comparison(s) on this page with ≥ {MIN_SEEDS} seeds "
                f"a side (fewer: shown, never starred). A claim is reproduced when its interval excludes 0 on the "
                "claimed side (Holm p < 0.05), not reproduced when the interval rules out the paper's effect, and "
                "inconclusive (underpowered) when it holds both 0 and that effect; MDE = 2.8 standard errors. Rows "
                "without per-query ranks are compared over their seeds' values alone (said where it happens).", ""]
    for v, view in study.views.items():
        label = view.label or f"`{view.query}` queries" + (f", targets in `{view.cold_items}`" if view.cold_items
                                                           else "")
        out.append(f"## {label}" if len(study.views) > 1 else "## Results")
        out.append("")
        header = ["row", "seeds", *(f"{m}" for m in view.metrics)]
        m0 = primary(study, view)
        if study.reference and m0 in view.metrics:
            header.append(f"Δ {m0} vs {study.reference}")
        header += ["best epochs"]
        out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in study.rows:
            got = runs[r.id]
            stale = r.rerun and (not got or any(x.get("_recorded") for x in got.values()))  # not run here yet
            label = (r.label or r.model or r.id) + (f" (to re-run: {r.rerun})" if stale else "") + \
                (" (budget-limited)" if budget_limited(study, got) else "") + \
                ("" if len(got) >= 3 or not got else f" ({len(got)} of {len(study.seeds)} seeds)")
            line = [label, "/".join(map(str, sorted(got))) or "—"]
            line += [fmt(values[(r.id, v, m)][1]) for m in view.metrics]
            if study.reference and m0 in view.metrics:
                key = (r.id, study.reference, v, m0)
                line.append("—" if key not in tested else delta(tested[key], adj[key]) +
                            ("" if values[(r.id, v, m0)][0] is not None else " (seeds only)"))
            line.append("/".join(str(x.get("best_epoch", "—")) + (f" ({x['chosen']})" if "chosen" in x else "")
                                 for _, x in sorted(got.items())) or "—")
            out.append("| " + " | ".join(line) + " |")
        out.append("")
    if study.claims:
        out += ["## Claims", "", "| claim | source | paper's effect | ours (A − B) | Holm p | MDE (80 %) | verdict |",
                "|---|---|---|---|---|---|---|"]
        for c in study.claims:
            said, iv, p = claim_verdict(study, c, found)
            a, b = rows_by_id[c.a].label or c.a, rows_by_id[c.b].label or c.b
            size = effect_of(c, found)
            effect = "—" if c.effect is None else f"{c.effect} of B" if isinstance(c.effect, str) else ""
            if size is not None:
                effect = (f"±{size:.4f}" if c.direction == "=" else f"{size:+.4f}") + \
                    (f" ({c.effect} of B's {float(np.mean(found['values'][(c.b, c.view, c.metric)][1])):.4f})"
                     if isinstance(c.effect, str) else "")
            if c.effect_note:
                effect += f" ({c.effect_note})"
            ours = "—" if iv is None else delta(iv, 1.0)
            b_values = found["values"][(c.b, c.view, c.metric)][1]
            if iv is not None and b_values and float(np.mean(b_values)):  # how large, relative to B
                ours += f" ({iv.diff / float(np.mean(b_values)):+.1%} of B)"
            out.append(f"| {c.text}: {a} {c.direction} {b} ({c.metric}, {c.view}) | {c.source} | {effect} | {ours} | "
                       f"{'—' if p is None or not np.isfinite(p) else f'{p:.2g}'} | {'—' if iv is None or min(iv.seeds_a, iv.seeds_b) < 2 else f'{iv.mde:.4f}'} | {said} |")
        out.append("")
    if study.stopping:
        out += stopping_section(study, runs)
    if study.notes:
        out += ["## Notes", "", study.notes.strip(), ""]
    sources = sorted({f for r in study.rows if r.recorded
                      for f in ([r.recorded.files] if isinstance(r.recorded.files, str) else r.recorded.files)})
    out += ["## Where the numbers come from", ""]
    out += [f"- recorded: `{s}`" for s in sources]
    out += [f"- this study's cells: `studies/results/{study.name}/` (`python -m pipeline.study run "
            f"studies/{study.name}.yaml`)"]
    return "\n".join(out).rstrip() + "\n"


def replay_rules(study: Study, runs: dict[str, dict[int, dict]]) -> dict[str, dict[str, list[dict]]]:
    """{rule: {row: per run, what the rule would have done on its validation curve}}: the epochs it
    runs, the epoch it picks, its validation value minus the whole curve's best (<= 0), and whether
    the curve ended before the rule would have stopped (then the run's own rule stopped first)."""
    out: dict[str, dict[str, list[dict]]] = {name: {} for name in study.stopping}
    for row_id, got in runs.items():
        for seed, r in sorted(got.items()):
            curve = r.get("curve")
            if not curve:
                continue
            key = next(k for k in curve if k.startswith("valid/"))
            points = list(zip(curve["epoch"], curve["step"], curve[key]))
            best = max(curve[key])
            for name, rule in study.stopping.items():
                stop = rule.stopper().replay(points)
                out[name].setdefault(row_id, []).append({
                    "seed": seed, "epochs": stop.stopped_at, "long_epochs": points[-1][0], "chosen": stop.best_epoch,
                    "delta": stop.best - best, "ran_out": not stop.should_stop(points[-1][1])
                    and stop.stopped_at == points[-1][0]})
    return out


def stopping_section(study: Study, runs: dict[str, dict[int, dict]]) -> list[str]:
    """The page's stopping-rule table: each declared rule replayed on every run's validation curve,
    against the run's own (longer) rule — selection on validation only, no test number involved."""
    replayed = replay_rules(study, runs)
    metric = study.primary
    n = sum(len(v) for v in next(iter(replayed.values()), {}).values())
    out = ["## Stopping rules replayed on the validation curves", "",
           f"Each rule is run over every run's recorded validation {metric} (epoch by epoch, as training would "
           f"have seen it; {n} runs): the epochs it would have trained, the epoch it would have kept, and that "
           f"epoch's validation {metric} minus the best of the whole curve (the run's own, longer rule: "
           f"`{' '.join(s for s in study.settings if 'patience' in s or 'epochs' in s) or 'params.yaml'}`). "
           "Training is deterministic per seed and no schedule depends on the stopping epoch, so a shorter rule's "
           "run is a prefix of the recorded one. `ran out`: runs whose curve ended before the rule would have "
           "stopped (the run's own rule stopped first; its numbers are then the run's own).", "",
           "| rule | stops when | epochs run (mean, share of the long run) | Δ valid (mean) | Δ valid (worst run) | "
           "ran out |", "|---|---|---|---|---|---|"]
    for name, rule in study.stopping.items():
        rows = [x for per in replayed[name].values() for x in per]
        if not rows:
            out.append(f"| {name} | {rule.describe()} | — | — | — | — |")
            continue
        ep = np.array([x["epochs"] for x in rows], float)
        share = ep.sum() / sum(x["long_epochs"] for x in rows)
        d = np.array([x["delta"] for x in rows])
        worst = rows[int(d.argmin())]
        row_of = next(rid for rid, per in replayed[name].items() if worst in per)
        out.append(f"| {name} | {rule.describe()} | {ep.mean():.1f} ({share:.0%}) | {d.mean():+.4f} | "
                   f"{d.min():+.4f} ({row_of} s{worst['seed']}) | {sum(x['ran_out'] for x in rows)} |")
    per_row = [rid for rid in runs if any(rid in replayed[name] for name in replayed)]
    if len(per_row) > 1:
        out += ["", "Per row, Δ valid (mean over seeds) / epochs run (mean):", "",
                "| rule | " + " | ".join(per_row) + " |", "|---|" + "---|" * len(per_row)]
        for name in study.stopping:
            cells_ = [replayed[name].get(rid, []) for rid in per_row]
            out.append(f"| {name} | " + " | ".join(
                f"{np.mean([x['delta'] for x in c]):+.4f} / {np.mean([x['epochs'] for x in c]):.0f}" if c else "—"
                for c in cells_) + " |")
    return out + [""]


def html(study: Study, found: dict, page: str) -> str:
    """The page with a figure per view: each row's per-seed values of the primary metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    for v, view in study.views.items():
        m0 = primary(study, view)
        if m0 not in view.metrics:
            continue
        fig, ax = plt.subplots(figsize=(7, 0.45 * len(study.rows) + 1.2))
        for i, r in enumerate(study.rows):
            vals = found["values"][(r.id, v, m0)][1]
            ax.scatter(vals, [i] * len(vals), color="tab:blue", s=18, zorder=3)
            if vals:
                ax.plot([np.mean(vals)] * 2, [i - 0.3, i + 0.3], color="black")
        ax.set_yticks(range(len(study.rows)), [r.label or r.model or r.id for r in study.rows], fontsize=7)
        ax.set_xlabel(f"{m0} ({view.label or view.query}); dots = seeds, bar = mean")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        figures.append(f'<img alt="{v}" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">')
    body = "".join(f"<pre>{line}</pre>" if line.startswith("|") else f"<p>{line}</p>" for line in page.splitlines()
                   if line and not line.startswith("<!--"))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{study.title}</title></head><body>"
            f"{''.join(figures)}{body}</body></html>\n")


def report(study: Study, check_only: bool = False) -> bool:
    """Write (or, with `check_only`, compare) docs/studies/<name>.md; returns whether it was current."""
    found = analyse(study)
    page = markdown(study, found)
    md = PAGES / f"{study.name}.md"
    current = md.is_file() and md.read_text() == page
    if not check_only:
        with atomic_path(md) as tmp:
            tmp.write_text(page)
        with atomic_path(md.with_suffix(".html")) as tmp:
            tmp.write_text(html(study, found, page))
    return current


VERDICTS = ("reproduced", "not reproduced", "inconclusive", "untested here")


def page_claims(study: Study) -> list[list[str]]:
    """The claims table of a study's page, cell by cell (claim, source, paper's effect, ours, Holm p, MDE, verdict)."""
    text = (PAGES / f"{study.name}.md").read_text()
    if "## Claims" not in text:
        return []
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in text.split("## Claims", 1)[1].splitlines()
            if line.startswith("| ") and not line.startswith("| claim ")]


def claims_of(paths: list[Path], source: str) -> str:
    """Every claim whose source starts with `source` (a paper), from the studies' pages: what a
    model page shows as its verdicts."""
    out = ["| claim | study | paper's effect | ours (A − B) | verdict |", "|---|---|---|---|---|"]
    for path in paths:
        study = load(path)
        out += [f"| {c[0]} ({c[1]}) | [{study.name}](../studies/{study.name}.md) | {c[2]} | {c[3]} | {c[6]} |"
                for c in page_claims(study) if c[1].startswith(source)]
    return "\n".join(out)


def index(paths: list[Path]) -> str:
    """A Markdown table of the studies: data, rows × seeds, and the verdicts on each page (read
    from the pages, which `report --check` keeps current)."""
    out = ["| study | data | rows × seeds | " + " | ".join(VERDICTS) + " |", "|---|---|---|" + "---|" * len(VERDICTS)]
    for path in paths:
        study = load(path)
        said = [c[-1] for c in page_claims(study)]
        counts = [sum(v.startswith(w) for v in said) for w in VERDICTS]
        out.append(f"| [{study.title}](studies/{study.name}.md) | `{study.dataset}` | {len(study.rows)} × "
                   f"{len(study.seeds)} | " + " | ".join(str(c or "") for c in counts) + " |")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["run", "status", "report", "index", "claims", "cell"])
    ap.add_argument("studies", nargs="+", type=Path)
    ap.add_argument("--add", action="append", default=[], help="a model spec to add as a row (your model)")
    ap.add_argument("--set", action="append", default=[], dest="settings", help="a shared setting, section.key=value")
    ap.add_argument("--cores", nargs="+", type=int, help="run: one cell per core (default: every core)")
    ap.add_argument("--source", default="", help="claims: the claims whose source starts with this (a paper)")
    ap.add_argument("--check", action="store_true", help="report: only check the pages are current (exit 1 if not)")
    ap.add_argument("--row", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    setup_logging()
    try:
        if args.command == "cell":
            return run_cell(args.studies[0], args.row, args.seed, args.add, args.settings)
        if args.command == "index":
            return print(index(args.studies))
        if args.command == "claims":
            return print(claims_of(args.studies, args.source))
        failed, stale = 0, []
        if args.command == "run":
            failed = run(args.studies, args.add, args.settings, args.cores or list(range(os.cpu_count() or 1)))
        for path in args.studies if args.command != "run" else []:
            if args.command == "status":
                print(status(load(path, args.add, args.settings)))
            elif not report(load(path, args.add, args.settings), args.check) and args.check:
                stale.append(str(path))
        if failed:
            raise SystemExit(f"{failed} cell(s) failed; their logs are under {RESULTS}/<study>/logs")
        if stale:
            raise SystemExit(f"stale study page(s): {stale}; run `python -m pipeline.study report` on them")
    except ConfigError as e:
        if os.environ.get("MMREC_DEBUG"):
            raise
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
