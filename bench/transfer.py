"""Benchmark: transfer across catalogues (MMSR study §7.2, Tables 9-10) — scratch vs transferred.

    python -m bench.transfer prepare                          # every data set / fraction folder, once
    python -m bench.transfer jobs --pairs demo:ml-100k > jobs.txt   # one line per run, for pipeline/jobs.py
    python -m bench.transfer report                           # the table (docs/benchmarks.md)
    python -m bench.transfer jobs --missing ...               # only the runs whose result is not there yet
    python -m bench.transfer cross-jobs > jobs.txt            # MSM4SR_Cross (Table VI): source pre-training + target runs
    python -m bench.transfer report cross                     # its table

Pairs (`PAIRS`): Amazon Scientific → ML-100K and ML-100K → Amazon Scientific on text alone (the
Amazon set has no images), and the demo → ML-100K with text and images. The model is ID-agnostic
MMSR (`mmsr`, concat fusion, the study's BCE with one negative); a source run trains on the whole
source (seed 0, `bench/baselines.py --keep-models`) and keeps its checkpoint. Each target is
prepared at 10 %, 30 % and 100 % of its users (`preprocess.user_fraction`, sample seed 0: the
study scales the target data set; Amazon Scientific whole only, `TARGET_FRACTIONS`), and trained from scratch and from the source checkpoint
(`train.init_from`: every learned parameter copied, feature tables and statistics the target's
own), 3 seeds each, to early stopping (params.yaml's train settings, one thread). A transferred
job waits for its source checkpoint, so the source and target jobs can share one queue. The
report gives test NDCG@10 / HR@10 mean ± std per cell and the paired difference transferred −
scratch over the target's users with its 95 % bootstrap interval. The scratch cell at 100 % of a
target is the same run as that target's own whole-data MMSR run (a transfer source, or a row of the
cold-start table, same spec, seed and settings), so it is read from there rather than run twice.

MSM4SR_Cross (MSM4SR Table VI, `CROSS`): MSM4SR is pre-trained (NIP + CMCL, the `pretrain` stage's
settings) on the source's training view only, then fine-tuned on the target with its Transformer
frozen (`freeze_transformer`: only the modality encoders and the target's ID embeddings learn), against
MSM4SR without pre-training on the target; text only (the Amazon set has no images), 3 seeds each.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.results import has_rows, load_rows, mean_std, paired_diff, run_settings, table

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [("amazon-scientific", "ml-100k", ["text"]), ("ml-100k", "amazon-scientific", ["text"]),
         ("demo", "ml-100k", ["text", "image"])]
FRACTIONS = [0.1, 0.3, 1.0]
# Amazon Scientific's sequences average 7 items: a 10 % user sample keeps 8 users after the 5-core
# rule (which runs after the sample), so as a target it is used whole.
TARGET_FRACTIONS = {"amazon-scientific": [1.0]}
SEEDS = [0, 1, 2]
WORK = ROOT / "bench" / ".work" / "transfer"
OUT = ROOT / "bench" / "results" / "transfer"
PY = ".venv/bin/python"
WHOLE_TARGET_DIRS = [OUT, ROOT / "bench" / "results" / "cold-start"]  # where whole-data runs of a target may be
CROSS = [("amazon-scientific", "ml-100k")]
CROSS_BASE = 'msm4sr:modalities=["text"]'
THREADS = ["train.threads=1", "features.threads=1", "pretrain.threads=1"]


def spec(modalities: list[str]) -> str:
    return f'mmsr:fusion="concat";modalities={json.dumps(modalities, separators=(",", ":"))}'


def fractions(target: str) -> list[float]:
    return TARGET_FRACTIONS.get(target, FRACTIONS)


def work(dataset: str, fraction: float = 1.0) -> Path:
    return WORK / (dataset if fraction == 1.0 else f"{dataset}-f{fraction:g}")


def source_name(src: str, modalities: list[str]) -> str:
    return f"{src}-source-{'-'.join(modalities)}.json"


def source_ckpt(src: str, modalities: list[str]) -> Path:
    from pipeline.cells import run_slug

    return WORK / "sources" / run_slug(source_name(src, modalities), spec(modalities), 0) / "model.pt"


def done(name: str, seeds: list[int]) -> bool:
    """A result file of that name already holds rows for these seeds (`--missing` skips the job)."""
    return has_rows(OUT / name, seeds)


def whole_target_rows(dataset: str, modalities: list[str]) -> dict[int, dict]:
    """{seed: row} of the MMSR runs (`spec(modalities)`) on the whole of `dataset` from scratch, in any
    bench folder that keeps them (its transfer source run, the cold-start table's rows): the scratch
    cell at 100 % is the same run. A row counts only if its command changed nothing but the user
    fraction (1) and threads; the report also checks that it ran on the same prepared data (stats)."""
    found = {}
    for folder in WHOLE_TARGET_DIRS:
        for f in sorted(folder.glob("*.json")):
            payload = json.loads(f.read_text())
            sets = run_settings(payload)
            if payload.get("dataset") != dataset or "rows" not in payload or sets is None or \
                    sets - {"preprocess.user_fraction=1.0"}:
                continue
            for r in payload["rows"]:
                if r["model"] == spec(modalities):
                    found.setdefault(r["seed"], r | {"_dir": str(f.parent), "_stats": payload.get("stats")})
    return found


def selected(pairs: list[str] | None) -> list[tuple[str, str, list[str]]]:
    chosen = [p for p in PAIRS if pairs is None or f"{p[0]}:{p[1]}" in pairs]
    if pairs and len(chosen) != len(pairs):
        raise SystemExit(f"--pairs {pairs}: known pairs are {[f'{s}:{t}' for s, t, _ in PAIRS]}")
    return chosen


def prepare(pairs: list[str] | None) -> None:
    """Prepare every data set / fraction folder once (download, preprocess, the feature stages)."""
    import subprocess

    for src, tgt, _ in selected(pairs):
        for dataset, fraction in [(src, 1.0)] + [(tgt, f) for f in fractions(tgt)]:
            if not (work(dataset, fraction) / "features" / "keywords").is_dir():
                subprocess.run([PY, "-m", "bench.baselines", "--dataset", dataset, "--work", str(work(dataset, fraction)),
                                "--prepare-only", "--set", f"preprocess.user_fraction={fraction}", "features.threads=1"],
                               check=True, cwd=ROOT)


def run_line(dataset: str, fraction: float, seed: int, name: str, modalities: list[str], extra: list[str]) -> str:
    sets = " ".join(f"'{s}'" for s in [f"preprocess.user_fraction={fraction}", "train.threads=1", "features.threads=1",
                                        *extra])
    return (f"{PY} -m bench.baselines --dataset {dataset} --seeds {seed} --work {work(dataset, fraction)} "
            f"--out {OUT} --name {name} --set {sets} --models '{spec(modalities)}'")


def jobs(pairs: list[str] | None, missing: bool = False) -> None:
    """The source runs first, then one line per (pair, fraction, scratch | transfer, seed); with
    `missing`, only the runs without a result yet (a scratch run on the whole target that exists
    elsewhere counts as done)."""
    for src, _, mods in selected(pairs):
        if not source_ckpt(src, mods).is_file():
            print(run_line(src, 1.0, 0, source_name(src, mods), mods, []) + f" --keep-models {WORK / 'sources'}")
    for src, tgt, mods in selected(pairs):
        whole = whole_target_rows(tgt, mods) if missing else {}
        for fraction in fractions(tgt):
            for seed in SEEDS:
                for mode in ("scratch", "transfer"):
                    name = f"{src}-to-{tgt}-f{fraction:g}-{mode}-s{seed}.json"
                    if missing and (done(name, [seed]) or (mode == "scratch" and fraction == 1.0 and seed in whole)):
                        continue
                    if mode == "scratch":
                        print(run_line(tgt, fraction, seed, name, mods, []))
                        continue
                    ckpt = source_ckpt(src, mods)
                    print(f"while [ ! -f {ckpt} ]; do sleep 30; done; "  # its source may still be training
                          + run_line(tgt, fraction, seed, name, mods, [f"train.init_from={json.dumps(str(ckpt))}"]))


def stats_of(src: str, tgt: str, fraction: float) -> dict | None:
    """The data statistics recorded by the transferred runs of a cell (what a reused scratch run must match)."""
    files = sorted(OUT.glob(f"{src}-to-{tgt}-f{fraction:g}-transfer-s*.json"))
    return json.loads(files[0].read_text()).get("stats") if files else None


def cell_rows(pattern: str) -> dict[int, dict]:
    return {r["seed"]: r | {"_dir": str(OUT)} for f in sorted(OUT.glob(pattern)) for r in load_rows(f)}


def ranks_of(rows: list[dict]) -> list:
    from pipeline.compare import read_ranks

    return [read_ranks(Path(r["_dir"]) / r["ranks"]) for r in rows]


def report() -> None:
    from pipeline.compare import compare

    lines = []
    for src, tgt, mods in PAIRS:
        whole = whole_target_rows(tgt, mods)
        for fraction in fractions(tgt):
            runs = {}
            for mode in ("scratch", "transfer"):
                rows = cell_rows(f"{src}-to-{tgt}-f{fraction:g}-{mode}-s*.json")
                if mode == "scratch" and fraction == 1.0:  # the same run wherever it was kept, on the same data
                    same = {s: r for s, r in whole.items() if r["_stats"] == stats_of(src, tgt, fraction)}
                    rows = same | rows
                if rows:
                    runs[mode] = [rows[s] for s in sorted(rows)]
            if len(runs) < 2 or {r["seed"] for r in runs["scratch"]} != {r["seed"] for r in runs["transfer"]}:
                continue  # a cell is reported once both sides have the same seeds
            (d,) = compare(ranks_of(runs["transfer"]), ranks_of(runs["scratch"]), ["ndcg@10"])
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


def cross_ckpt(src: str) -> Path:
    return WORK / "sources" / f"msm4sr-{src}" / "weights.pt"


def cross_specs(src: str) -> dict[str, str]:
    """MSM4SR without pre-training, MSM4SR_Cross (pre-trained on `src`, Transformer frozen: the
    paper's) and the same start with the Transformer fine-tuned too (the one-factor ablation)."""
    ckpt = cross_ckpt(src).relative_to(ROOT)
    return {"scratch": f"{CROSS_BASE};pretrained=false",
            "cross": f'{CROSS_BASE};pretrained_path="{ckpt}";freeze_transformer=true',
            "unfrozen": f'{CROSS_BASE};pretrained_path="{ckpt}";freeze_transformer=false'}


CROSS_LABELS = {"scratch": "MSM4SR w/o pre-training", "cross": "MSM4SR_Cross (pre-trained on {src}, Transformer frozen)",
                "unfrozen": "pre-trained on {src}, Transformer fine-tuned too (ablation)"}


def pretrain_source(src: str) -> None:
    """MSM4SR's pre-training on the whole source's training view (params.yaml's `pretrain` and
    `models.msm4sr` settings, one thread), written where the target's MSM4SR_Cross runs read it."""
    from pipeline.cells import with_settings
    from pipeline.params import load_params, setup_logging
    from pipeline.pretrain import pretrain

    setup_logging()
    params = with_settings(load_params(ROOT / "params.yaml"), ["pretrain.threads=1", 'models.msm4sr.modalities=["text"]']) \
        | {"dataset": src}  # the targets fine-tune MSM4SR-T
    out = cross_ckpt(src).parent
    info = pretrain(params, work(src) / "prepared", work(src) / "features", out)
    (OUT / f"{src}-msm4sr-pretrain.json").write_text(json.dumps(
        {"command": f"python -m bench.transfer pretrain-source {src}", "dataset": src,
         "pretrain": {k: v for k, v in info.items() if k != "history"}, "history": info["history"]}, indent=2))


def cross_jobs(missing: bool = False) -> None:
    """The source pre-training first, then one line per (pair, scratch | cross, seed); cross lines wait
    for the source checkpoint."""
    for src, tgt in CROSS:
        if not cross_ckpt(src).is_file():
            print(f"{PY} -m bench.transfer pretrain-source {src}")
        for seed in SEEDS:
            for mode, model in cross_specs(src).items():
                name = f"{src}-to-{tgt}-msm4sr-{mode}-s{seed}.json"
                if missing and done(name, [seed]):
                    continue
                sets = " ".join(f"'{s}'" for s in THREADS)
                line = (f"{PY} -m bench.baselines --dataset {tgt} --seeds {seed} --work {work(tgt)} --out {OUT} "
                        f"--name {name} --set {sets} --models '{model}'")
                print(f"while [ ! -f {cross_ckpt(src)} ]; do sleep 30; done; {line}" if mode != "scratch" else line)


def report_cross() -> None:
    """MSM4SR_Cross vs MSM4SR without pre-training on each target: the paper's R@10 / R@20 / N@10 / N@20
    (Table VI) as mean ± std over seeds, and the paired difference in NDCG@10 and HR@20."""
    from pipeline.compare import compare

    lines = []
    for src, tgt in CROSS:
        runs = {mode: cell_rows(f"{src}-to-{tgt}-msm4sr-{mode}-s*.json") for mode in CROSS_LABELS}
        if not runs["scratch"]:
            continue
        rows = {m: [v[s] for s in sorted(v)] for m, v in runs.items() if v and set(v) == set(runs["scratch"])}
        for mode, label in CROSS_LABELS.items():
            if mode not in rows:
                continue
            diffs = compare(ranks_of(rows[mode]), ranks_of(rows["scratch"]), ["ndcg@10", "hr@20"]) \
                if mode != "scratch" else None
            lines.append([f"{src} → {tgt}", label.format(src=src), "/".join(str(s) for s in sorted(runs[mode])),
                          *(mean_std([r[f"test/{k}"] for r in rows[mode]]) for k in ("hr@10", "hr@20", "ndcg@10", "ndcg@20")),
                          *((paired_diff(d) for d in diffs) if diffs else ("—", "—")),
                          "/".join(str(r["best_epoch"]) for r in rows[mode])])
    print(table(["source → target", "model", "seeds", "test R@10", "test R@20", "test N@10", "test N@20",
                 "Δ N@10 vs w/o pre-training", "Δ R@20 vs w/o pre-training", "best epochs"], lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["prepare", "jobs", "report", "cross-jobs", "pretrain-source"])
    ap.add_argument("table", nargs="?", help="report: `cross` for MSM4SR_Cross; pretrain-source: the source data set")
    ap.add_argument("--pairs", nargs="+", metavar="SRC:TGT", help="only these pairs (default: all of PAIRS)")
    ap.add_argument("--missing", action="store_true", help="jobs: only the runs whose result is not there yet")
    args = ap.parse_args()
    if args.what == "report":
        return report_cross() if args.table == "cross" else report()
    if args.what == "pretrain-source":
        return pretrain_source(args.table)
    if args.what == "cross-jobs":
        return cross_jobs(args.missing)
    if args.what == "prepare":
        return prepare(args.pairs)
    jobs(args.pairs, args.missing)


if __name__ == "__main__":
    main()
