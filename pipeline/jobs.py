"""Run benchmark jobs from one queue, one worker per core, each job pinned to its worker's core.

    python -m pipeline.jobs --cores 0 1 --logs bench/results/x/logs jobs.txt [more.txt ...]
    python -m pipeline.jobs --cores 0 1 <(LIST=1 bash bench/automlp_search.sh) <(LIST=1 bash bench/mmsr_study.sh)

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
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("jobs", nargs="+", help="files with one shell command per line")
    ap.add_argument("--cores", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--logs", default="bench/.work/queue-logs")
    args = ap.parse_args()
    lines = [ln.strip() for f in args.jobs for ln in Path(f).read_text().splitlines()]
    jobs: queue.Queue = queue.Queue()
    for n, cmd in enumerate(ln for ln in lines if ln and not ln.startswith("#")):
        jobs.put((n, cmd))
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    pin = shutil.which("taskset")
    results: list[tuple[int, int, float, str]] = []
    lock = threading.Lock()

    def worker(core: int) -> None:
        while True:
            try:
                n, cmd = jobs.get_nowait()
            except queue.Empty:
                return
            t0 = time.time()
            print(f"[core {core}] start {n}: {cmd}", flush=True)
            with open(logs / f"{n}.log", "w") as log:
                argv = ([pin, "-c", str(core)] if pin else []) + ["bash", "-c", cmd]
                rc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT).returncode
            with lock:
                results.append((n, rc, time.time() - t0, cmd))
            print(f"[core {core}] done {n} rc={rc} in {time.time() - t0:.0f}s", flush=True)

    threads = [threading.Thread(target=worker, args=(c,)) for c in args.cores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failed = [r for r in results if r[1] != 0]
    for n, rc, secs, cmd in sorted(results):
        print(f"{n:3d} rc={rc} {secs:7.0f}s  {cmd}")
    if failed:
        sys.exit(f"{len(failed)} of {len(results)} jobs failed; see {logs}/<n>.log")


if __name__ == "__main__":
    main()
