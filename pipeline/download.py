"""Materialise the selected dataset's raw files in a folder (the `download` stage's library; data/raw).

Reads `dataset` and `datasets.<dataset>` from params.yaml. The folder is built under a temporary
name and renamed into place, so an interrupted download never leaves a raw folder that looks whole.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from pipeline.params import choose
from pipeline.sources import dataset_config
from pipeline.tables import output_folder, write_json

log = logging.getLogger("pipeline.download")


@contextlib.contextmanager
def in_project_root():
    """Relative `source` paths are relative to the project root. A queued or `--temp` experiment runs
    in a copy under .dvc/tmp/exps/, where DVC sets DVC_ROOT to the project it was queued from:
    the fetch runs there, so `../shared/datasets/...` means the same folder in both cases."""
    root = os.environ.get("DVC_ROOT")
    here = Path.cwd()
    if root and Path(root).resolve() != here.resolve():
        log.info("resolving relative source paths from the project root %s (this run: %s)", root, here)
        os.chdir(root)
    try:
        yield
    finally:
        os.chdir(here)


def download(params: dict, out: Path) -> dict:
    name, section = choose(params, "dataset", "datasets")
    source, cfg = dataset_config(name, section)
    fmt = section.get("format")
    with output_folder(out) as tmp, in_project_root():
        meta = source.fetch(cfg, tmp)
        meta["dataset"] = name
        write_json(tmp / "source.json", meta)
    log.info("dataset %s (%s) -> %s", name, meta.get("origin", fmt), out)
    return meta
