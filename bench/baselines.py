"""Benchmark: models × seeds on one data set, exact full ranking, one table (cells of pipeline/cells.py).

    python -m bench.baselines --dataset ml-100k --models pop sasrec gru4rec nextitnet
    python -m bench.baselines --dataset ml-100k --models pop sasrec mlpmixer m2sr msm4sr \
        "msm4sr:pretrained=false" --seeds 0 1 2 --out bench/results/paper-models

A model may carry overrides of its params.yaml section, `name:key=value;key=value` (an ablation);
`--set section.key=value` overrides params.yaml (values are YAML: 5, 1e-3, true, [10], gate).
Each (model, seed) is one cell: download -> preprocess -> the features and pre-training the model
needs -> train -> evaluate, through the same library functions as the DVC stages, in --work (or a
scratch folder). Writes bench/results/baselines-<dataset>.json and prints a Markdown table for
docs/benchmarks.md (mean ± std over seeds when there are several).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import tempfile
from pathlib import Path

import numpy as np
from scipy.stats import ttest_ind

from pipeline.cells import extract, parse_spec, prepare, run_cell, with_settings
from pipeline.compare import compare, read_ranks
from pipeline.params import load_params, setup_logging
from pipeline.results import mean_std, paired_diff, save, table

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench.baselines")


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
                    "params!); each run trains in its runs/<name-model-seed>/ there, so a killed job resumes after its "
                    "last epoch when re-run (the row's `resumed_after_epochs` lists where; its wall_s and seconds then "
                    "count this process only, train_s_per_epoch and eval_s_per_epoch every epoch); default: a scratch "
                    "folder")
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
    params = with_settings(load_params(args.params), args.set) | {"dataset": args.dataset}
    seeds = args.seeds or [params["train"].get("seed", 42)]
    for spec in args.models:
        parse_spec(spec)  # every spec checked before hours of runs
    name = args.name or args.dataset
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work) if args.work else Path(scratch)
        stats = prepare(params, work)
        if args.prepare_only:
            return extract(params, work)
        rows, failed = [], []
        for model in args.models:
            for seed in seeds:
                try:
                    rows.append(run_cell(params, work, model, seed, Path(args.out), name,
                                         Path(args.keep_models) if args.keep_models else None))
                except Exception as e:  # one failing variant must not lose the hours of rows around it
                    log.exception("%s seed %d failed", model, seed)
                    failed.append({"model": model, "seed": seed, "error": f"{type(e).__name__}: {e}"})
                save(Path(args.out) / (args.name or f"baselines-{args.dataset}.json"), rows, failed=failed,
                     dataset=args.dataset, seeds=seeds,
                     stats={k: stats[k] for k in ("users", "items", "interactions", "density")},
                     peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print_table(rows, [m for m in args.models if any(r["model"] == m for r in rows)], args.dataset, stats, seeds)
    if failed:
        raise SystemExit(f"{len(failed)} run(s) failed: {failed}")


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
    def runs(m: str) -> list:
        return [read_ranks(Path(r["_dir"]) / r["ranks"]) for r in sorted((r for r in rows if r["model"] == m),
                                                                          key=lambda r: r["seed"]) if r.get("ranks")]

    a, b = runs(model), runs(vs)
    if model == vs:
        return "—"
    if not a or not b:  # runs that kept no per-user ranks: Welch's t-test over the seeds' values
        key = f"{query}/{metric}"
        va, vb = ([r[key] for r in rows if r["model"] == m and key in r] for m in (model, vs))
        if len(va) < 2 or len(vb) < 2:
            return "—"
        p = float(ttest_ind(va, vb, equal_var=False).pvalue)
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




if __name__ == "__main__":
    main()
