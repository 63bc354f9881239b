"""Benchmark: is a 2-worker `dvc queue` on 2 cores slower per run than one run alone with 1 thread?

    python -m bench.queue_threads --clone /work/qbench        # needs the committed HEAD; ~10 min on 2 cores

In a fresh clone of the project (default relative `source` paths), SASRec on ML-100K for a fixed
budget (`--epochs`, no early stopping so every run does the same work):

1. alone:       one `dvc exp run`, `train.threads=1`, the other core idle;
2. queue, auto: two runs queued, `dvc queue start -j 2`, `train.threads=0` (the default: each
                process takes the cores / the pipeline processes running now);
3. queue, 2+2:  the same with `train.threads=2` forced (what every stage did before `threads: 0`
                meant a share of the cores): two 2-thread processes on 2 cores.

Reports train s/epoch per run (data/timing/train.json, a `cache: false` metric) and the threads
each run ended with; writes bench/results/queue-threads.json. The machine must be otherwise idle.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from pipeline.results import load_rows, save, table

ROOT = Path(__file__).resolve().parents[1]

def sh(args: list[str], cwd: Path) -> str:
    env = os.environ | {"PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}
    res = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res.stdout


def timings(repo: Path, names: list[str]) -> list[dict]:
    data = json.loads(sh(["dvc", "exp", "show", "--json"], repo))
    out = []
    for node in data:
        for exp in (node.get("experiments") or []):
            for rev in exp.get("revs", []):
                if rev.get("name") in names:
                    metrics = (rev["data"].get("metrics") or {}).get("data/timing/train.json", {}).get("data", {})
                    out.append({"name": rev["name"], **{k: metrics.get(k) for k in
                                                        ("train_s_per_epoch", "eval_s_per_epoch", "threads", "seconds")}})
    return sorted(out, key=lambda r: r["name"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clone", help="scratch folder (removed first) for the project clone")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "queue-threads.json"))
    ap.add_argument("--report", metavar="JSON", help="only print the table of this result file")
    args = ap.parse_args()
    if args.report:
        return print_table(load_rows(args.report))
    if not args.clone:
        raise SystemExit("--clone DIR is required (a scratch folder for the project clone)")
    repo = Path(args.clone)
    shutil.rmtree(repo, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    common = ["-S", "dataset=ml-100k", "-S", "model=sasrec", "-S", f"train.epochs={args.epochs}",
              "-S", "train.patience=1000"]
    t = time.perf_counter()
    sh(["dvc", "exp", "run", *common, "-S", "train.threads=1", "-n", "alone"], repo)
    rows = [r | {"setting": "alone, 1 thread"} for r in timings(repo, ["alone"])]
    for label, threads in (("queue -j 2, threads 0 (auto)", 0), ("queue -j 2, threads 2 each", 2)):
        names = [f"q{threads}-s{s}" for s in (0, 1)]
        for s, name in zip((0, 1), names):
            sh(["dvc", "exp", "run", "--queue", *common, "-S", f"train.threads={threads}", "-S", f"train.seed={s}",
                "-n", name], repo)
        sh(["dvc", "queue", "start", "-j", "2"], repo)
        while "Queued" in (st := sh(["dvc", "queue", "status"], repo)) or "Running" in st:
            time.sleep(5)
        if "Failed" in st:
            raise SystemExit(f"a queued run failed:\n{st}\n{sh(['dvc', 'queue', 'logs', names[0]], repo)[-3000:]}")
        rows += [r | {"setting": label} for r in timings(repo, names)]
    save(args.out, rows, epochs=args.epochs, wall_s=time.perf_counter() - t)
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    print(table(["setting", "run", "threads at the end", "train s/epoch", "eval s/epoch"],
                [[r["setting"], r["name"], r["threads"], f"{r['train_s_per_epoch']:.2f}", f"{r['eval_s_per_epoch']:.2f}"]
                 for r in rows]))


if __name__ == "__main__":
    main()
