"""What every stage command shares: its required path arguments, logging, the stale outputs it
removes, and errors of one line.

A stage (pipeline/stages/<stage>.py) is `parser(...)` + one library call inside `main(...)`. The
project's own errors (a bad parameter, a bad source file, a table of another run, a model that
breaks its contract, a missing input) print as one line saying what to fix, exit status 1;
`MMREC_DEBUG=1` shows the traceback as well.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Callable

from pipeline.params import setup_logging


def is_ours(e: BaseException) -> bool:
    """An error the project raises on purpose, with a message that says what to fix: an exception
    class defined in the project (ConfigError, SourceError, TableError, ContractError, ...) or a
    missing input file."""
    return type(e).__module__.split(".")[0] in ("pipeline", "models") or isinstance(e, FileNotFoundError)


def parser(doc: str, *paths: str, optional: tuple[str, ...] = (), invalidates: bool = False,
           params: bool = True) -> argparse.ArgumentParser:
    """--params and every path in `paths` required (dvc.yaml states them; no defaults repeat it),
    `optional` paths, and with `invalidates` the later stages' outputs this stage makes stale."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if params:
        ap.add_argument("--params", required=True, type=Path, help="params.yaml")
    for name in paths:
        ap.add_argument(f"--{name}", required=True, type=Path)
    for name in optional:
        ap.add_argument(f"--{name}", type=Path)
    if invalidates:
        ap.add_argument("--invalidates", nargs="*", default=[], help="later stages' outputs this stage makes stale "
                        "(removed before it writes its own)")
    return ap


def invalidate(paths: list[str] | None) -> None:
    """Remove the outputs of later stages that this stage's new output makes stale (`--invalidates`
    in dvc.yaml): running only part of the graph (`dvc exp run download preprocess`) must not leave
    the previous run's metrics in the new experiment. A torchrun worker other than rank 0 leaves
    files alone."""
    if int(os.environ.get("RANK", "0")):
        return
    for p in paths or []:
        path = Path(p)
        if path.is_file():
            path.unlink()
            logging.getLogger("pipeline").info("removed %s: made stale by this stage (a later stage writes it again)",
                                               path)


def main(body: Callable[[], object]) -> None:
    """Run a stage's body with logging set up and the project's errors as one line."""
    setup_logging()
    try:
        body()
    except Exception as e:
        if not is_ours(e) or os.environ.get("MMREC_DEBUG"):
            raise
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
