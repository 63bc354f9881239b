"""Where the pipeline's tables live: which feature stage writes which table, and a run's folders.

`dvc.yaml` names the folders of the DVC graph (`data/raw`, `data/prepared`, `data/features/<stage>`,
`data/pretrain`, `data/model`); the stages receive them as arguments. Library code that needs a
feature table by name (the model builder, the query tool) finds it here, and `RunDirs` lays out
the same folders under any root (the cell runner's work folders, tests).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

# feature stage -> the tables it writes (pipeline/features/<stage>.py), each <table>.parquet in its folder
FEATURE_TABLES: dict[str, tuple[str, ...]] = {
    "text": ("text", "text_sentences", "text_tokens"),
    "image": ("image", "image_grid"),
    "keywords": ("keywords", "keyword_vectors"),
}
FEATURE_STAGES = tuple(FEATURE_TABLES)
TABLE_STAGE = {table: stage for stage, tables in FEATURE_TABLES.items() for table in tables}
ITEM_MATRICES = tuple(t for t in TABLE_STAGE if t != "keywords")  # tables a model can read as per-item vectors


def feature_stage(table: str, key: str = "table") -> str:
    """The feature stage that writes `table` (an error naming the choices otherwise)."""
    if table not in ITEM_MATRICES:
        raise ValueError(f"{key}={table!r}: use one of {sorted(ITEM_MATRICES)}")
    return TABLE_STAGE[table]


def feature_path(features: Path, table: str, key: str = "table") -> Path:
    """<features>/<stage>/<table>.parquet."""
    return features / feature_stage(table, key) / f"{table}.parquet"


@dataclass(frozen=True)
class RunDirs:
    """The graph's folders under one root (`data/` in the DVC project)."""

    root: Path
    raw: Path = field(init=False)
    prepared: Path = field(init=False)
    features: Path = field(init=False)
    pretrain: Path = field(init=False)
    model: Path = field(init=False)
    metrics: Path = field(init=False)
    timing: Path = field(init=False)

    def __post_init__(self) -> None:
        parts = {"raw": "raw", "prepared": "prepared", "features": "features", "pretrain": "pretrain",
                 "model": "model", "metrics": "metrics.json", "timing": "timing"}
        for name, part in parts.items():
            object.__setattr__(self, name, self.root / part)


PROJECT_DATA = RunDirs(Path("data"))  # the DVC project's folders, relative to its root (as dvc.yaml names them)


def needed(plan_file: Path | None) -> bool:
    """What an optional stage reads from its plan file (data/plan/<stage>.json, written by the plan
    stage): whether the selected model needs its output. No file given: run (a call from Python)."""
    return plan_file is None or bool(json.loads(plan_file.read_text())["needed"])
