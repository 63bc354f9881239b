"""Benchmark commands (one script per benchmark) and their shared helpers."""

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class MeasureError(RuntimeError):
    """A measuring process failed; the message ends with its stderr tail."""


def peak_rss_mb() -> float:
    """This process's own peak resident memory in MB: Linux's VmHWM (the high-water mark of the
    process's current address space, so it starts afresh at exec). `ru_maxrss` does not: the kernel
    carries it over fork and exec, so a benchmark's fresh child reported at least its parent's RSS
    (a child of a 1.9 GB parent read 1.9 GB, its VmHWM 19 MB). Elsewhere, ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def answer(row: dict) -> None:
    """A measuring process's result, for `measure` in its parent: one line on stdout."""
    print("RESULT " + json.dumps(row), flush=True)


def measure(module: str, *args: str, env: dict | None = None, python: str | None = None) -> dict:
    """Run `python -m <module> <args>` in a fresh process from the project root — so its peak memory
    and its imports are its own, and `bench` imports as a user's run would — and return the row it
    printed with `answer`. A failure (an exit status, or no answer) raises MeasureError with the
    command and the tail of its stderr."""
    cmd = [python or sys.executable, "-m", module, *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=os.environ | (env or {}))
    line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        raise MeasureError(f"{' '.join(cmd[1:])}: exit {proc.returncode}{'' if line else ', no result'}\n"
                           f"{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])
