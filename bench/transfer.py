"""Benchmark: transfer across catalogues (MMSR study §7.2, Tables 9-10) — scratch vs transferred.

    python bench/transfer.py prepare                          # every data set / fraction folder, once
    python bench/transfer.py jobs --pairs demo:ml-100k > jobs.txt   # one line per run, for bench/run_queue.py
    python bench/transfer.py report                           # the table (docs/benchmarks.md)

Pairs (`PAIRS`): Amazon Scientific → ML-100K and ML-100K → Amazon Scientific on text alone (the
Amazon set has no images), and the demo → ML-100K with text and images. The model is ID-agnostic
MMSR (`mmsr`, concat fusion, the study's BCE with one negative); a source run trains on the whole
source (seed 0, `bench/baselines.py --keep-models`) and keeps its checkpoint. Each target is
prepared at 10 %, 30 % and 100 % of its users (`preprocess.user_fraction`, sample seed 0: the
study scales the target data set), and trained from scratch and from the source checkpoint
(`train.init_from`: every learned parameter copied, feature tables and statistics the target's
own), 3 seeds each, to early stopping (params.yaml's train settings, one thread). A transferred
job waits for its source checkpoint, so the source and target jobs can share one queue. The
report gives test NDCG@10 / HR@10 mean ± std per cell and the paired difference transferred −
scratch over the target's users with its 95 % bootstrap interval.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import load_rows, mean_std, paired_diff, table  # noqa: E402

PAIRS = [("amazon-scientific", "ml-100k", ["text"]), ("ml-100k", "amazon-scientific", ["text"]),
         ("demo", "ml-100k", ["text", "image"])]
FRACTIONS = [0.1, 0.3, 1.0]
SEEDS = [0, 1, 2]
WORK = ROOT / "bench" / ".work" / "transfer"
OUT = ROOT / "bench" / "results" / "transfer"
PY = ".venv/bin/python"


def spec(modalities: list[str]) -> str:
    return f'mmsr:fusion="concat";modalities={json.dumps(modalities, separators=(",", ":"))}'


def work(dataset: str, fraction: float = 1.0) -> Path:
    return WORK / (dataset if fraction == 1.0 else f"{dataset}-f{fraction:g}")


def source_name(src: str, modalities: list[str]) -> str:
    return f"{src}-source-{'-'.join(modalities)}.json"


def source_ckpt(src: str, modalities: list[str]) -> Path:
    from bench.baselines import run_slug

    return WORK / "sources" / run_slug(source_name(src, modalities), spec(modalities), 0) / "model.pt"


def selected(pairs: list[str] | None) -> list[tuple[str, str, list[str]]]:
    chosen = [p for p in PAIRS if pairs is None or f"{p[0]}:{p[1]}" in pairs]
    if pairs and len(chosen) != len(pairs):
        raise SystemExit(f"--pairs {pairs}: known pairs are {[f'{s}:{t}' for s, t, _ in PAIRS]}")
    return chosen


def prepare(pairs: list[str] | None) -> None:
    """Prepare every data set / fraction folder once (download, preprocess, the feature stages)."""
    import subprocess

    for src, tgt, _ in selected(pairs):
        for dataset, fraction in [(src, 1.0)] + [(tgt, f) for f in FRACTIONS]:
            if not (work(dataset, fraction) / "features" / "keywords").is_dir():
                subprocess.run([PY, "bench/baselines.py", "--dataset", dataset, "--work", str(work(dataset, fraction)),
                                "--prepare-only", "--set", f"preprocess.user_fraction={fraction}", "features.threads=1"],
                               check=True, cwd=ROOT)


def run_line(dataset: str, fraction: float, seed: int, name: str, modalities: list[str], extra: list[str]) -> str:
    sets = " ".join(f"'{s}'" for s in [f"preprocess.user_fraction={fraction}", "train.threads=1", "features.threads=1",
                                        *extra])
    return (f"{PY} bench/baselines.py --dataset {dataset} --seeds {seed} --work {work(dataset, fraction)} "
            f"--out {OUT} --name {name} --set {sets} --models '{spec(modalities)}'")


def jobs(pairs: list[str] | None) -> None:
    """The source runs first, then one line per (pair, fraction, scratch | transfer, seed)."""
    for src, _, mods in selected(pairs):
        if not source_ckpt(src, mods).is_file():
            print(run_line(src, 1.0, 0, source_name(src, mods), mods, []) + f" --keep-models {WORK / 'sources'}")
    for src, tgt, mods in selected(pairs):
        for fraction in FRACTIONS:
            for seed in SEEDS:
                for mode in ("scratch", "transfer"):
                    name = f"{src}-to-{tgt}-f{fraction:g}-{mode}-s{seed}.json"
                    if mode == "scratch":
                        print(run_line(tgt, fraction, seed, name, mods, []))
                        continue
                    ckpt = source_ckpt(src, mods)
                    print(f"while [ ! -f {ckpt} ]; do sleep 30; done; "  # its source may still be training
                          + run_line(tgt, fraction, seed, name, mods, [f"train.init_from={json.dumps(str(ckpt))}"]))


def report() -> None:
    from pipeline.compare import compare, read_ranks

    lines = []
    for src, tgt, mods in PAIRS:
        for fraction in FRACTIONS:
            runs = {}
            for mode in ("scratch", "transfer"):
                rows = [r for f in sorted(OUT.glob(f"{src}-to-{tgt}-f{fraction:g}-{mode}-s*.json"))
                        for r in load_rows(f)]
                if rows:
                    runs[mode] = sorted(rows, key=lambda r: r["seed"])
            if len(runs) < 2 or {r["seed"] for r in runs["scratch"]} != {r["seed"] for r in runs["transfer"]}:
                continue  # a cell is reported once both sides have the same seeds
            (d,) = compare([read_ranks(OUT / r["ranks"]) for r in runs["transfer"]],
                           [read_ranks(OUT / r["ranks"]) for r in runs["scratch"]], ["ndcg@10"])
            users = runs["scratch"][0]["users"]
            lines.append([f"{src} → {tgt}", "+".join(mods), f"{fraction:.0%} ({users:,} users)",
                          mean_std([r["test/ndcg@10"] for r in runs["scratch"]]),
                          mean_std([r["test/ndcg@10"] for r in runs["transfer"]]),
                          paired_diff(d),
                          mean_std([r["test/hr@10"] for r in runs["scratch"]]),
                          mean_std([r["test/hr@10"] for r in runs["transfer"]]),
                          "/".join(str(r["best_epoch"]) for r in runs["scratch"]),
                          "/".join(str(r["best_epoch"]) for r in runs["transfer"])])
    print(table(["source → target", "modalities", "target size", "scratch test NDCG@10", "transferred test NDCG@10",
                 "Δ transferred − scratch [95 % CI]", "scratch HR@10", "transferred HR@10", "scratch best epochs",
                 "transferred best epochs"], lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["prepare", "jobs", "report"])
    ap.add_argument("--pairs", nargs="+", metavar="SRC:TGT", help="only these pairs (default: all of PAIRS)")
    args = ap.parse_args()
    if args.what == "report":
        return report()
    {"prepare": prepare, "jobs": jobs}[args.what](args.pairs)


if __name__ == "__main__":
    main()
