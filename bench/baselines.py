"""Benchmark: the spine's baselines on one dataset, exact full ranking, one table.

    python bench/baselines.py --dataset ml-100k --models pop sasrec gru4rec nextitnet
    python bench/baselines.py --dataset ml-100k --models pop sasrec mlpmixer m2sr msm4sr \
        "msm4sr:pretrained=false" --seeds 0 1 2 --out bench/results/paper-models

A model may carry overrides of its params.yaml section, `name:key=json;key=json` (an ablation).

Runs download -> preprocess -> (text + image features, when a model reads them) -> train ->
evaluate for each model and seed through the same library functions as the DVC stages, with params.yaml's settings (override with --set section.key=json),
in a scratch folder. Writes bench/results/baselines-<dataset>.json and prints a Markdown table
for docs/benchmarks.md (mean ± std over seeds when there are several).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import resource
import shutil
import sys
import tempfile
import logging
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.report import mean_std, paired_diff, prepare, save, table  # noqa: E402
from models import MODELS  # noqa: E402
from pipeline.evaluate import evaluate  # noqa: E402
from pipeline.params import load_params, setup_logging  # noqa: E402
from pipeline.tables import atomic_path  # noqa: E402
from pipeline.train import train  # noqa: E402

log = logging.getLogger("bench.baselines")


def override(params: dict, assignments: list[str]) -> dict:
    for a in assignments:
        key, value = a.split("=", 1)
        *path, last = key.split(".")
        node = params
        for p in path:
            node = node.setdefault(p, {})
        node[last] = json.loads(value)
    return params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--models", nargs="+", default=["pop", "sasrec", "gru4rec", "nextitnet"])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--set", nargs="*", default=[], help="overrides such as train.epochs=5")
    ap.add_argument("--seeds", nargs="+", type=int, help="train.seed values (default: params.yaml's)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--name", default=None, help="result file name (default baselines-<dataset>.json)")
    ap.add_argument("--work", help="keep prepared/ and features/ in this folder and reuse them when present (same "
                    "params!), e.g. bench/.work/ml-100k from model_cost.py; each run trains in its runs/<name-model-"
                    "seed>/ there, so a killed job resumes after its last epoch when re-run (the row's "
                    "`resumed_after_epochs` lists where; its wall_s and seconds then count this process only, "
                    "train_s_per_epoch and eval_s_per_epoch every epoch); default: a scratch folder")
    ap.add_argument("--combine", nargs="+", metavar="JSON", help="only print one table from these result files")
    ap.add_argument("--vs", help="with --combine: add each row's paired difference to this model (spec), with its "
                    "95 %% bootstrap interval and * where significant")
    ap.add_argument("--keep-models", metavar="DIR", help="copy each run's model.pt to DIR/<name>-<model>-s<seed>/ "
                    "(e.g. a transfer source: train.init_from)")
    ap.add_argument("--prepare-only", action="store_true", help="only build --work's prepared/ and features/ "
                    "(before several jobs share them)")
    args = ap.parse_args()
    if args.combine:
        return combine(args.combine, args.vs)
    if args.prepare_only and not args.work:
        raise SystemExit("--prepare-only needs --work (the folder the later jobs reuse)")
    setup_logging()
    params = override(load_params(args.params), args.set) | {"dataset": args.dataset}
    seeds = args.seeds or [params["train"].get("seed", 42)]
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        specs = {label: parse_spec(label) for label in args.models}
        needs_features = args.prepare_only or any(hasattr(MODELS[name], "FEATURES") for name, _ in specs.values())
        data = Path(args.work) if args.work else tmp  # prepared/ and features/ live here
        if not (data / "prepared" / "stats.json").is_file():
            prepare(params, data)
        else:
            log.info("reusing %s/prepared", data)
        stats = json.loads((data / "prepared" / "stats.json").read_text())
        if needs_features and not (data / "features" / "keywords").is_dir():
            extract_features(params, data)
        if args.prepare_only:
            return
        if data != tmp:
            for sub in ("prepared", "features"):
                if (data / sub).is_dir():
                    (tmp / sub).symlink_to((data / sub).resolve())
        rows, failed = [], []
        for model, (name, over) in specs.items():
            for seed in seeds:
                t0 = time.perf_counter()
                models = params["models"] | {name: (params["models"].get(name) or {}) | over}
                run_params = params | {"model": name, "models": models, "train": params["train"] | {"seed": seed}}
                # under --work a run's folder outlives the process: train saves its state after every epoch
                # there, so a killed job (a session's end) resumes where it stopped when run again
                out = data / "runs" / run_slug(args.name or args.dataset, model, seed) if data != tmp \
                    else tmp / f"run-{len(rows) + len(failed)}"
                pre = {}
                try:
                    if getattr(MODELS[name], "pretrain_loss", None) and models[name].get("pretrained", True) \
                            and not models[name].get("pretrained_path"):  # else: another data set's weights
                        pre = pretrain_once(run_params, tmp, data / "pretrain-cache")
                    info = train(run_params, tmp / "prepared", out, tmp / "features", tmp / "pretrain")
                    res = evaluate(run_params, tmp / "prepared", out / "model.pt", out / "metrics.json")
                except Exception as e:  # one failing variant must not lose the hours of rows around it
                    log.exception("%s seed %d failed", model, seed)
                    failed.append({"model": model, "seed": seed, "error": f"{type(e).__name__}: {e}"})
                else:
                    ranks = keep_ranks(out / "ranks.parquet", Path(args.out), args.name or args.dataset, model, seed)
                    if args.keep_models:
                        kept = Path(args.keep_models) / run_slug(args.name or args.dataset, model, seed)
                        with atomic_path(kept / "model.pt") as tmp_copy:  # a waiting transfer job never reads half a file
                            shutil.copyfile(out / "model.pt", tmp_copy)
                    rows.append({"seed": seed, "wall_s": time.perf_counter() - t0, **info, **res, "model": model,
                                 "ranks": ranks, **pre})
                    if data != tmp:
                        shutil.rmtree(out)  # what the row needs is copied out; a later run starts afresh
                save(Path(args.out) / (args.name or f"baselines-{args.dataset}.json"), rows, failed=failed,
                     dataset=args.dataset, seeds=seeds,
                     stats={k: stats[k] for k in ("users", "items", "interactions", "density")},
                     peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print_table(rows, [m for m in args.models if any(r["model"] == m for r in rows)], args.dataset, stats, seeds)
    if failed:
        raise SystemExit(f"{len(failed)} run(s) failed: {failed}")


def run_slug(name: str, model: str, seed: int) -> str:
    """A file-name-safe name for one (result file, model spec, seed) run."""
    return re.sub(r"[^A-Za-z0-9]+", "_", f"{Path(name).stem}-{model}-s{seed}").strip("_")


def keep_ranks(src: Path, out: Path, name: str, model: str, seed: int) -> str:
    """Copy a run's per-query ranks (evaluate stage) under out/ranks/; returns the path relative to out,
    which `python -m pipeline.compare` reads for paired statistics."""
    dst = out / "ranks" / f"{run_slug(name, model, seed)}.parquet"
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return str(dst.relative_to(out))


MIN_SEEDS = 3  # fewer seeds a side: the difference is printed, but never marked significant


def seed_count(rows: list[dict], model: str) -> int:
    return len({r["seed"] for r in rows if r["model"] == model})


def significance(rows: list[dict], model: str, vs: str, query: str, metric: str) -> str:
    """'+0.0123 [+0.0050, +0.0190] *': model − vs, paired over queries (seeds averaged per query), 95 %
    bootstrap CI, * = significant (CI excludes 0 and Wilcoxon p < 0.05). Runs without saved ranks:
    '+0.0123 (seeds, p 0.03) *', Welch's t-test over the seeds' values (weaker: 3 values a side).
    With fewer than MIN_SEEDS seeds on either side: no *, and '(n < 3 seeds)' (a smoke test)."""
    cell = _significance(rows, model, vs, query, metric)
    n = min(seed_count(rows, m) for m in (model, vs))
    return cell if n >= MIN_SEEDS or cell == "—" else f"{cell.removesuffix(' *')} (n < {MIN_SEEDS} seeds)"


def _significance(rows: list[dict], model: str, vs: str, query: str, metric: str) -> str:
    from pipeline.compare import compare, read_ranks

    def runs(m: str) -> list:
        return [read_ranks(Path(r["_dir"]) / r["ranks"]) for r in sorted((r for r in rows if r["model"] == m),
                                                                          key=lambda r: r["seed"]) if r.get("ranks")]

    a, b = runs(model), runs(vs)
    if model == vs:
        return "—"
    if not a or not b:  # runs that kept no per-user ranks: Welch's t-test over the seeds' values
        from scipy import stats

        key = f"{query}/{metric}"
        va, vb = ([r[key] for r in rows if r["model"] == m and key in r] for m in (model, vs))
        if len(va) < 2 or len(vb) < 2:
            return "—"
        p = float(stats.ttest_ind(va, vb, equal_var=False).pvalue)
        return f"{np.mean(va) - np.mean(vb):+.4f} (seeds, p {p:.2g}){' *' if p < 0.05 else ''}"
    (row,) = compare(a, b, [metric], query)
    return paired_diff(row)


def print_table(rows: list[dict], models: list[str], dataset: str, stats: dict, seeds: list[int],
                vs: str | None = None) -> None:
    print(f"\n{dataset}: {stats['users']} users, {stats['items']} items, {stats['interactions']} interactions, "
          f"seeds {seeds}\n")

    def stat(model: str, key: str) -> str:
        return mean_std([r[key] for r in rows if r["model"] == model and key in r])

    def label(model: str) -> str:  # a row short of seeds says so where it is read
        n = seed_count(rows, model)
        return model if n >= min(MIN_SEEDS, len(seeds)) else f"{model} ({n} of {len(seeds)} seeds)"

    metric_cols = {"test HR@10": "test/hr@10", "test NDCG@10": "test/ndcg@10", "test MRR@10": "test/mrr@10",
                   "valid NDCG@10": "valid/ndcg@10", "cold-item test NDCG@10": "test_cold/ndcg@10",
                   "cold-item test HR@50": "test_cold/hr@50", "cold sub-seq NDCG@10": "cold_seq/ndcg@10",
                   "cold sub-seq HR@50": "cold_seq/hr@50"}
    extra = {f"Δ test NDCG@10 vs {vs}": ("test", "ndcg@10"), f"Δ cold sub-seq HR@50 vs {vs}": ("cold_seq", "hr@50")} \
        if vs else {}
    print(table(["model", *metric_cols, *extra, "best epoch", "s/epoch", "wall s / run"],
                [[label(m), *(stat(m, key) for key in metric_cols.values()),
                  *(significance(rows, m, vs, q, k) for q, k in extra.values()),
                  "/".join(str(r["best_epoch"]) for r in rows if r["model"] == m),
                  f"{np.mean([r['train_s_per_epoch'] for r in rows if r['model'] == m]):.1f}",
                  wall_cell([r for r in rows if r["model"] == m])] for m in models]))


def wall_cell(runs: list[dict]) -> str:
    """Mean wall seconds of the runs trained in one process; a resumed run's wall_s counts only its last
    process, so it is left out and counted ('— (3 resumed)' when every run was)."""
    whole = [r["wall_s"] for r in runs if not r.get("resumed_after_epochs")]
    n = len(runs) - len(whole)
    mean = f"{np.mean(whole):.0f}" if whole else "—"
    return f"{mean} ({n} resumed, left out)" if n and whole else f"— ({n} resumed)" if n else mean


def combine(files: list[str], vs: str | None = None) -> None:
    """Print one table from several result files (e.g. the halves of a run split over two cores).
    A (model, seed) run present in several files counts once: the later file's row wins (a re-run).
    With `vs`, each row's paired difference to that model (pipeline.compare) is added."""
    payloads = [(Path(f).parent, json.loads(Path(f).read_text())) for f in files]
    # rows written before seeds were recorded per row ran params.yaml's default seed, 42
    rows = list({(r["model"], r.get("seed", 42)): {"seed": 42} | r | {"_dir": str(d)}
                 for d, p in payloads for r in p["rows"]}.values())
    models = list(dict.fromkeys(r["model"] for r in rows))
    seeds = sorted({r["seed"] for r in rows})
    print_table(rows, models, payloads[0][1]["dataset"], payloads[0][1]["stats"], seeds, vs)


def parse_spec(spec: str) -> tuple[str, dict]:
    """'msm4sr:pretrained=false;nip=false' -> ('msm4sr', {'pretrained': False, 'nip': False})."""
    name, _, rest = spec.partition(":")
    if name not in MODELS:
        raise SystemExit(f"unknown model {name!r} in {spec!r}; registered: {sorted(MODELS)}")
    over = {}
    for part in filter(None, rest.split(";")):
        key, value = part.split("=", 1)
        over[key] = json.loads(value)
    return name, over


def pretrain_once(params: dict, folder: Path, cache: Path) -> dict:
    """The pretrain stage for these msm4sr + pretrain settings, once per setting in `cache` (--work's
    pretrain-cache/ outlives the job: jobs on other cores wait for the one pre-training and reuse its
    weights; a killed pre-training resumes after its last epoch); links folder/pretrain to it and
    returns the row fields: `pretrain`, its summary (settings, pair visits, seconds of pre-training
    epochs, pairs/s, the first and last epochs' losses), and this job's share of its wall_s:
    `pretrain_wait_s` (waiting for another job's pre-training) and `pretrain_here_s` (pre-training
    in this process; 0 when reused)."""
    import fcntl

    from pipeline.pretrain import pretrain

    section = params["models"]["msm4sr"]
    fine_tune_only = ("modalities", "use_ids", "pretrained", "pretrained_path", "freeze_transformer", "e2e_weight")
    key = json.dumps({"models.msm4sr": {k: v for k, v in section.items() if k not in fine_tune_only},
                      "pretrain": params.get("pretrain") or {}}, sort_keys=True)
    target = cache / hashlib.sha256(key.encode()).hexdigest()[:16]
    target.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    here = 0.0
    with open(target / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another job pre-training these settings: wait for its weights
        waited = time.perf_counter() - t0
        if not (target / "summary.json").is_file():
            info = pretrain(params, folder / "prepared", folder / "features", target)
            history = info["history"]
            summary = {"settings": params.get("pretrain") or {}, "pairs": info["pairs"], "epochs": len(history),
                       "pair_visits": sum(r.get("pair_visits", 0) for r in history),
                       "seconds": sum(info["epoch_seconds"]),  # every epoch, also those before a resume
                       "pairs_per_s": info["pairs_per_s"], "first_epoch": history[0] if history else {},
                       "last_epoch": history[-1] if history else {}}
            with atomic_path(target / "summary.json") as tmp:
                tmp.write_text(json.dumps(summary, indent=1))
            here = time.perf_counter() - t0 - waited
        else:
            log.info("reusing the pre-trained weights in %s", target)
    if (folder / "pretrain").is_symlink() or (folder / "pretrain").exists():
        (folder / "pretrain").unlink()
    (folder / "pretrain").symlink_to(target.resolve())
    return {"pretrain": json.loads((target / "summary.json").read_text()), "pretrain_wait_s": round(waited, 1),
            "pretrain_here_s": round(here, 1)}


def extract_features(params: dict, folder: Path) -> None:
    """The feature stages, as `dvc repro` would run them, into folder/features."""
    from pipeline.features import image, keywords, text
    from pipeline.features.common import open_stage

    for name, module in (("text", text), ("image", image), ("keywords", keywords)):
        module.run(open_stage(name, params, folder / "prepared", folder / "raw", folder / "features" / name))

if __name__ == "__main__":
    main()
