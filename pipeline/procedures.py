"""The training procedures a model names with its PROCEDURE flag (models/contract.py).

Every procedure ends in `trainer.fit`; what differs is what happens before it. `fit`: nothing.
`search_then_fit` (AutoMLP): the architecture search (pipeline/search.py) over the model's
candidates, then the model is rebuilt with the choice (`search_result()`'s config overrides) and
fitted. A finished search is kept in `<out>/search.pt` (its choice, record and the random state
after it) until the run ends, so a run killed during fitting does not search again, and a search
killed mid-way resumes after its last epoch (`search_state.pt`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from pipeline.checkpoint import load_tensors, save_tensors
from pipeline.config import TrainConfig
from pipeline.data import TrainView
from pipeline.loop import finished, resume_key
from pipeline.search import search

log = logging.getLogger("pipeline.procedures")


@dataclass
class Run:
    """What a procedure may use: the training view and settings, the run folder, and `rebuild`,
    which builds the model again from its params section plus overrides."""

    view: TrainView
    cfg: TrainConfig
    max_len: int
    out: Path
    rebuild: Callable[[dict], nn.Module]


@dataclass
class Prepared:
    """The model to fit and what the procedure adds to the run's records."""

    model: nn.Module
    overrides: dict  # params-section overrides the model was rebuilt with
    info: dict  # train.json fields
    metrics: dict  # flat metric keys the evaluate stage copies into metrics.json
    timing: dict  # timing-file fields


def fit_only(model: nn.Module, run: Run) -> Prepared:
    return Prepared(model, {}, {}, {}, {})


def search_first(model: nn.Module, run: Run) -> Prepared:
    """AutoMLP: search, then rebuild with the chosen candidate (a single candidate: no search)."""
    if len(model.search_space()["candidates"]) < 2:
        return fit_only(model, run)
    done_path, key = run.out / "search.pt", resume_key(model, run.cfg, data=run.view.fingerprint())
    done = load_tensors(done_path, "finished search", "delete it to search again") if done_path.is_file() else None
    if done is not None and done.get("key") == key:
        log.info("the search finished before this run was stopped: reusing its choice %s (%s)", done["overrides"],
                 done_path)
        torch.set_rng_state(done["rng"])  # where an uninterrupted run would be
    else:
        run.out.mkdir(parents=True, exist_ok=True)
        found = search(model, run.view, run.cfg, run.max_len, run.out / "search_state.pt")
        done = {"key": key, "rng": torch.get_rng_state(), **found}
        save_tensors(done, done_path)
        finished(run.out / "search_state.pt")
    model = run.rebuild(done["overrides"])
    log.info("retraining with %s only", done["overrides"])
    report = done["report"]
    metrics = {}  # search/k, search/p@<k>, search/alpha@<k>: a value, or one key per candidate
    for k, v in report.items():
        metrics |= {f"search/{k}@{c}": x for c, x in v.items()} if isinstance(v, dict) else {f"search/{k}": v}
    info = {"rebuilt_with": done["overrides"], **{f"search_{k}": v for k, v in report.items() if k != "alpha"},
            "search_history": [{k: v for k, v in r.items() if k != "seconds"} for r in done["history"]]}
    timing = {"search_s": done["seconds"], "search_s_per_epoch": [r["seconds"] for r in done["history"]]}
    return Prepared(model, done["overrides"], info, metrics, timing)


PROCEDURES: dict[str, Callable[[nn.Module, Run], Prepared]] = {"fit": fit_only, "search_then_fit": search_first}
