"""Stage `download`: materialise the selected dataset's raw files under `--out` (data/raw).

Reads `dataset` and `datasets.<dataset>` from params.yaml. The folder is built under a temporary
name and renamed into place, so an interrupted download never leaves a raw folder that looks whole.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from pathlib import Path

from pipeline.params import ConfigError, choose, from_dict, load_params, setup_logging
from pipeline.sources import FETCHERS
from pipeline.tables import write_json

log = logging.getLogger("pipeline.download")


def download(params: dict, out: Path) -> dict:
    name, section = choose(params, "dataset", "datasets")
    section = dict(section)
    fmt = section.pop("format", None)
    if fmt not in FETCHERS:
        raise ConfigError(f"params.yaml `datasets.{name}.format` is {fmt!r}; known formats: {sorted(FETCHERS)}")
    cfg_cls, fetch = FETCHERS[fmt]
    cfg = from_dict(cfg_cls, section, f"datasets.{name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        meta = fetch(cfg, tmp)
        meta["dataset"] = name
        write_json(tmp / "source.json", meta)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log.info("dataset %s (%s) -> %s", name, meta.get("origin", fmt), out)
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="data/raw")
    args = ap.parse_args()
    setup_logging()
    download(load_params(args.params), Path(args.out))


if __name__ == "__main__":
    main()
