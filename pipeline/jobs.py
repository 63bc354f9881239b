"""Run jobs from one queue (job lists, a study's cells), one worker per core, each job pinned to its worker's core.

    python -m pipeline.jobs --cores 0 1 --logs bench/results/x/logs jobs.txt [more.txt ...]

Each non-empty line of the job files is one shell command. A worker takes the next job when its
last one ends, so N cores stay busy until the queue is empty; two jobs never share a core, so the
times inside one job compare with each other (the rule for timing runs on this machine). Each
job's output goes to `<logs>/<n>.log`; the exit status of every job is printed at the end, and
the command fails if any job failed (the others still ran).
"""

from __future__ import annotations

import argparse
import queue
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass
class Job:
    name: str  # what the progress lines call it
    argv: list[str]  # the command (run as is; a str runs under `bash -c`)
    log: Path


def run_jobs(jobs: list[Job], cores: list[int], done: Callable[[Job, int, float], None] | None = None) -> list[int]:
    """Run `jobs`, one worker per core, each job pinned to its worker's core (taskset, when there is
    one) with its output in its log; returns their exit statuses (in order). `done(job, rc, seconds)`
    is called as each finishes."""
    todo: queue.Queue = queue.Queue()
    for i, job in enumerate(jobs):
        todo.put((i, job))
    pin = shutil.which("taskset")
    codes = [0] * len(jobs)
    lock = threading.Lock()

    def worker(core: int) -> None:
        while True:
            try:
                i, job = todo.get_nowait()
            except queue.Empty:
                return
            t0 = time.time()
            job.log.parent.mkdir(parents=True, exist_ok=True)
            with open(job.log, "w") as log:
                argv = job.argv if not isinstance(job.argv, str) else ["bash", "-c", job.argv]
                rc = subprocess.run(([pin, "-c", str(core)] if pin else []) + argv, stdout=log,
                                    stderr=subprocess.STDOUT).returncode
            with lock:
                codes[i] = rc
                if done is not None:
                    done(job, rc, time.time() - t0)

    threads = [threading.Thread(target=worker, args=(c,)) for c in cores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("jobs", nargs="+", help="files with one shell command per line")
    ap.add_argument("--cores", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--logs", default="bench/.work/queue-logs")
    args = ap.parse_args()
    lines = [ln.strip() for f in args.jobs for ln in Path(f).read_text().splitlines()]
    cmds = [ln for ln in lines if ln and not ln.startswith("#")]
    jobs = [Job(str(n), cmd, Path(args.logs) / f"{n}.log") for n, cmd in enumerate(cmds)]
    codes = run_jobs(jobs, args.cores, lambda job, rc, secs: print(f"done {job.name} rc={rc} in {secs:.0f}s: "
                                                                  f"{job.argv}", flush=True))
    for job, rc in zip(jobs, codes):
        print(f"{job.name:>3} rc={rc}  {job.argv}")
    failed = sum(rc != 0 for rc in codes)
    if failed:
        sys.exit(f"{failed} of {len(jobs)} jobs failed; see {args.logs}/<n>.log")


if __name__ == "__main__":
    main()
