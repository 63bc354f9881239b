"""Benchmark: transfer across catalogues (MMSR study §7.2, Tables 9-10) — scratch vs transferred.

    python bench/transfer.py source                # phase 1: each source data set's run (seed 0), kept
    python bench/transfer.py jobs > jobs.txt       # phase 2: the target runs, for bench/run_queue.py
    python bench/transfer.py report                # the table (docs/benchmarks.md)

Pairs (`PAIRS`): Amazon Scientific → ML-100K and ML-100K → Amazon Scientific on text alone (the
Amazon set has no images), and the demo → ML-100K with text and images. The model is ID-agnostic
MMSR (`mmsr`, concat fusion, the study's BCE with one negative); a source run trains on the whole
source (seed 0) and keeps its checkpoint. Each target is prepared at 10 %, 30 % and 100 % of its
users (`preprocess.user_fraction`, seed 0: the study scales the target data set), and trained
from scratch and from the source checkpoint (`train.init_from`: every learned parameter copied,
feature tables and statistics the target's own), 3 seeds each, to early stopping (params.yaml's
train settings, one thread). The report gives test NDCG@10 / HR@10 mean ± std per cell and the
paired difference transferred − scratch over the target's users with its 95 % bootstrap interval.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import mean_std, table  # noqa: E402

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


def source_ckpt(src: str, modalities: list[str]) -> Path:
    return WORK / "sources" / f"{src}-{'-'.join(modalities)}" / "model.pt"


def sources() -> None:
    """Prepare every data set / fraction folder once and train each pair's source run."""
    import shutil
    import subprocess

    for src, tgt, mods in PAIRS:
        for dataset, fraction in [(src, 1.0)] + [(tgt, f) for f in FRACTIONS]:
            if not (work(dataset, fraction) / "features" / "keywords").is_dir():
                subprocess.run([PY, "bench/baselines.py", "--dataset", dataset, "--work", str(work(dataset, fraction)),
                                "--prepare-only", "--set", f"preprocess.user_fraction={fraction}", "features.threads=1"],
                               check=True, cwd=ROOT)
        ckpt = source_ckpt(src, mods)
        if ckpt.is_file():
            continue
        from bench.baselines import override, parse_spec
        from pipeline.params import load_params, setup_logging
        from pipeline.train import train

        setup_logging()
        name, over = parse_spec(spec(mods))
        params = override(load_params(ROOT / "params.yaml"), ["train.threads=1", "train.seed=0"]) | {"dataset": src}
        params["models"][name] = params["models"][name] | over
        train(params | {"model": name}, work(src) / "prepared", ckpt.parent / "run", work(src) / "features",
              ckpt.parent / "no-pretrain")
        shutil.copyfile(ckpt.parent / "run" / "model.pt", ckpt)


def jobs() -> None:
    for src, tgt, mods in PAIRS:
        for fraction in FRACTIONS:
            for mode in ("scratch", "transfer"):
                name = f"{src}-to-{tgt}-f{fraction:g}-{mode}.json"
                extra = [f"train.init_from={json.dumps(str(source_ckpt(src, mods)))}"] if mode == "transfer" else []
                sets = " ".join(f"'{s}'" for s in [f"preprocess.user_fraction={fraction}", "train.threads=1",
                                                    "features.threads=1", *extra])
                print(f"{PY} bench/baselines.py --dataset {tgt} --seeds {' '.join(map(str, SEEDS))} --work "
                      f"{work(tgt, fraction)} --out {OUT} --name {name} --set {sets} --models '{spec(mods)}'")


def report() -> None:
    from pipeline.compare import compare, read_ranks

    lines = []
    for src, tgt, mods in PAIRS:
        for fraction in FRACTIONS:
            runs = {}
            for mode in ("scratch", "transfer"):
                path = OUT / f"{src}-to-{tgt}-f{fraction:g}-{mode}.json"
                if path.is_file():
                    runs[mode] = sorted(json.loads(path.read_text())["rows"], key=lambda r: r["seed"])
            if len(runs) < 2:
                continue
            (d,) = compare([read_ranks(OUT / r["ranks"]) for r in runs["transfer"]],
                           [read_ranks(OUT / r["ranks"]) for r in runs["scratch"]], ["ndcg@10"])
            users = runs["scratch"][0]["users"]
            lines.append([f"{src} → {tgt}", "+".join(mods), f"{fraction:.0%} ({users:,} users)",
                          mean_std([r["test/ndcg@10"] for r in runs["scratch"]]),
                          mean_std([r["test/ndcg@10"] for r in runs["transfer"]]),
                          f"{d['diff']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]{' *' if d['significant'] else ''}",
                          mean_std([r["test/hr@10"] for r in runs["scratch"]]),
                          mean_std([r["test/hr@10"] for r in runs["transfer"]]),
                          "/".join(str(r["best_epoch"]) for r in runs["scratch"]),
                          "/".join(str(r["best_epoch"]) for r in runs["transfer"])])
    print(table(["source → target", "modalities", "target size", "scratch test NDCG@10", "transferred test NDCG@10",
                 "Δ transferred − scratch [95 % CI]", "scratch HR@10", "transferred HR@10", "scratch best epochs",
                 "transferred best epochs"], lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["source", "jobs", "report"])
    args = ap.parse_args()
    {"source": sources, "jobs": jobs, "report": report}[args.what]()


if __name__ == "__main__":
    main()
