"""Result files of comparisons and benchmarks, and the Markdown tables made from them.

A result file is {command, argv, machine, ...extra, rows}: one row per measured run or cell,
rewritten after every row so an interrupted job keeps what it measured. The tables in docs/ are
generated from these files (bench/docs_tables.py), never typed.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np


def machine() -> dict:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor() or
            platform.machine(), "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}


def save(path: str | Path, rows: list[dict], **extra) -> None:
    """Write {command, machine, ...extra, rows} as JSON (rewritten after every row, so a long run
    that is interrupted keeps what it measured)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"command": " ".join(["python", *sys.orig_argv[1:]]), "argv": sys.argv[1:], "machine": machine(), **extra,
               "rows": rows}
    path.write_text(json.dumps(payload, indent=2))


def run_settings(payload: dict) -> set[str] | None:
    """The `--set` overrides a result file's runs were made with, thread counts left out (they do not
    change what is computed at one thread, and every bench run uses one); None when the file cannot
    tell (no recorded command) or ran on another params file, so it matches no settings. Read from
    the recorded argv; files written before argv was kept are read from the command line."""
    import shlex

    if "argv" in payload:
        words = payload["argv"]
    elif payload.get("command"):
        try:
            words = shlex.split(payload["command"])
        except ValueError:
            return None
    else:
        return None
    if "--params" in words:
        return None
    out, on = set(), False
    for w in words:
        if w.startswith("--"):
            on = w == "--set"
        elif on and not w.split("=", 1)[0].endswith(".threads"):
            out.add(w)
    return out


def load_rows(path: str | Path) -> list[dict]:
    """The rows of a result file written by `save` (what every bench's `--report JSON` prints)."""
    return json.loads(Path(path).read_text())["rows"]


def mean_std(values, fmt: str = "{:.4f}") -> str:
    """`mean ± sample std` of the values (only the mean for one value, "—" for none)."""
    v = np.asarray(values, dtype=float)
    if not len(v):
        return "—"
    return fmt.format(v.mean()) + (f" ± {fmt.format(v.std(ddof=1))}" if len(v) > 1 else "")


def table(header: list[str], lines: list[list]) -> str:
    """A Markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in line) + " |" for line in lines]
    return "\n".join(out)
