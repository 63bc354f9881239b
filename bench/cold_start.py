"""Benchmark: cold start as each paper defines it, on Amazon Scientific (text only).

    python -m bench.cold_start jobs > jobs.txt                 # one line per run, for pipeline/jobs.py
    python -m bench.cold_start jobs --missing                  # only the runs without a result yet
    python -m bench.cold_start cold-items                      # the prepared data's cold items, kept in results
    python -m bench.cold_start report mmsr                     # the MMSR study's table (§7.1, Table 8)
    python -m bench.cold_start report msm4sr                   # MSM4SR's table (§IV-G-1, Table V)

Cold items occur < 10 times among the training interactions (both papers' threshold). Amazon
Scientific is used because half of its users (4,152 of 8,442) have a cold test item; on ML-100K
only 33 do, too few to separate two models.

- **MMSR study (§7.1)**: ID-agnostic MMSR-T (concat fusion, the study's BCE with one negative)
  against SASRec under the same loss. Two cold query sets: *held out* — the test queries whose
  target is cold (with leave-one-out, the test part of each sequence is its last item), which no
  model trained on; and the study's *all positions* — every prefix of the complete sequences that
  ends in a cold item (`cold_seq`, labelled: most of its positions are training positions, so an
  ID model's score there partly reflects transitions it trained on).
- **MSM4SR (§IV-G-1)**: fine-tuned without ID embeddings (`use_ids: false`), without pre-training
  against pre-trained on warm items only (`pretrain.warm_only`: cold items never reach a
  pre-training pair), evaluated on the held-out cold queries; SASRec (IDs) under the same
  full-softmax CE for reference.

Every run: params.yaml's train settings (early stopping on validation NDCG@10, patience 570
steps, up to 200 epochs), one thread, seeds 0-2. Δ: paired over the cold queries (seeds averaged
per query), 95 % BCa bootstrap interval, * = interval excludes 0 and Wilcoxon p < 0.05.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench import transfer
from pipeline.results import has_rows, load_rows, mean_std, paired_diff, run_settings, table

ROOT = Path(__file__).resolve().parents[1]
DATASET = "amazon-scientific"
OUT = ROOT / "bench" / "results" / "cold-start"
SEEDS = [0, 1, 2]
COLD_ITEMS = OUT / f"cold-items-{DATASET}.json"
MMSR_T = transfer.spec(["text"])  # the transfer source's spec: its seed-0 run is shared
MSM4SR_NO_PRETRAIN = 'msm4sr:modalities=["text"];use_ids=false;pretrained=false'
MSM4SR_WARM = 'msm4sr:modalities=["text"];use_ids=false'  # pre-trained, with pretrain.warm_only=true
# Per table: its rows, each row's extra settings, the metrics shown (the paper's), and the paired
# differences (per query set) against each reference row.
TABLES = {
    "mmsr": {"references": ['sasrec:loss="bce"'], "rows": [MMSR_T, 'sasrec:loss="bce"'], "sets": {},
             "metrics": ["ndcg@10", "hr@10", "hr@50"], "deltas": {"test_cold": ["ndcg@10", "hr@50"],
                                                                 "cold_seq": ["hr@50"]}},
    "msm4sr": {"references": [MSM4SR_NO_PRETRAIN, "sasrec"],
               "rows": [MSM4SR_NO_PRETRAIN, MSM4SR_WARM, "sasrec"],
               "sets": {MSM4SR_WARM: ["pretrain.warm_only=true"]},
               "metrics": ["hr@10", "hr@20", "ndcg@10", "ndcg@20"],  # Table V's R@10, R@20, N@10, N@20
               "deltas": {"test_cold": ["ndcg@10", "hr@20"]}},
}


def result_files() -> list[Path]:
    """This bench's files plus the transfer bench's source run (MMSR-T seed 0 on the same folder)."""
    return sorted(f for f in OUT.glob("*.json") if f != COLD_ITEMS) + \
        [transfer.OUT / transfer.source_name(DATASET, ["text"])]


def jobs(missing: bool = False) -> None:
    """One line per (row, seed), so two cores share the hour-long fine-tuning runs. A pre-trained
    MSM4SR row's jobs each pre-train first: pre-training is seeded by `pretrain.seed`, not the
    fine-tuning seed, so every job makes the same weights (about 5 min of 10 epochs on Amazon,
    against about 50 min of fine-tuning). With `missing`, only the runs without a result file yet."""
    from pipeline.cells import run_slug

    for name, t in TABLES.items():
        for spec in t["rows"]:
            for seed in SEEDS:
                slug = run_slug(name, spec, seed)
                if (spec == MMSR_T and seed == 0) or (missing and has_rows(OUT / f"{slug}.json", [seed])):
                    continue  # MMSR-T seed 0 is bench/transfer.py's Amazon source run
                sets = " ".join(f"'{s}'" for s in ["train.threads=1", "features.threads=1", "pretrain.threads=1",
                                                    *t["sets"].get(spec, [])])
                print(f"{transfer.PY} -m bench.baselines --dataset {DATASET} --seeds {seed} "
                      f"--work {transfer.work(DATASET)} --out {OUT} --name {slug}.json "
                      f"--set {sets} --models '{spec}'")


def cold_queries(runs: list, cold) -> list:
    """Each run's test queries whose target is cold (`cold`: (num_items + 1,) bool), as query `test_cold`."""
    import polars as pl

    ids = pl.Series(cold.nonzero()[0].astype("int64"))
    return [r.filter((pl.col("query") == "test") & pl.col("target").cast(pl.Int64).is_in(ids.implode()))
            .with_columns(pl.lit("test_cold").alias("query")) for r in runs]


def write_cold_items(threshold: int = 10) -> None:
    """The cold items of the prepared data (training view), kept beside the results so the report
    needs only bench/results (the prepared folder is not committed)."""
    from pipeline.data import load_split
    from pipeline.evaluation import cold_items

    cold = cold_items(load_split(transfer.work(DATASET) / "prepared").training, threshold)
    COLD_ITEMS.parent.mkdir(parents=True, exist_ok=True)
    COLD_ITEMS.write_text(json.dumps({"dataset": DATASET, "threshold": threshold, "num_items": len(cold) - 1,
                                      "cold_items": cold.nonzero()[0].tolist()}))


def cold_mask():
    import numpy as np

    kept = json.loads(COLD_ITEMS.read_text())
    mask = np.zeros(kept["num_items"] + 1, bool)
    mask[kept["cold_items"]] = True
    return mask


def report(which: str) -> None:
    from pipeline.compare import compare, per_query, read_ranks

    t = TABLES[which]
    rows = {}
    for f in result_files():
        if f.is_file():
            sets = run_settings(json.loads(f.read_text()))
            for r in load_rows(f):  # a row is its spec *and* its settings (the warm-only row differs only there)
                if r["model"] in t["rows"] and sets is not None and \
                        sets - {"preprocess.user_fraction=1.0"} == set(t["sets"].get(r["model"], [])):
                    rows.setdefault(r["model"], {})[r["seed"]] = r | {"_dir": str(f.parent)}
    ranks = {m: [read_ranks(Path(r["_dir"]) / r["ranks"]) for _, r in sorted(v.items())] for m, v in rows.items()}
    mask = cold_mask()
    cold = {m: cold_queries(v, mask) for m, v in ranks.items()}
    queries = [("test_cold", cold, "held-out cold (test target cold)")]
    if which == "mmsr":
        queries.append(("cold_seq", ranks, "all positions (the study's; includes training positions)"))
    lines = []
    for m in t["rows"]:
        if m not in rows:
            continue
        line = [m + "".join(f" ({s})" for s in t["sets"].get(m, [])), "/".join(str(s) for s in sorted(rows[m]))]
        for q, source, _ in queries:
            per_seed = [r.filter(r["query"] == q)["rank"].to_numpy() for r in source[m]]
            line += [f"{len(per_seed[0]):,}"] + [mean_std([per_query(p, k).mean() for p in per_seed])
                                                   for k in t["metrics"]]
            for ref in t["references"]:
                for metric in t["deltas"][q]:
                    if m == ref or ref not in rows:
                        line.append("—")
                        continue
                    (d,) = compare(source[m], source[ref], [metric], q)
                    line.append(paired_diff(d))
        line += [mean_std([r["test/ndcg@10"] for r in rows[m].values()]),
                 "/".join(str(r["best_epoch"]) for _, r in sorted(rows[m].items()))]
        lines.append(line)
    header = ["model", "seeds"]
    for q, _, label in queries:
        header += [f"{label}: queries", *map(metric_label, t["metrics"]),
                   *(f"Δ {metric_label(k)} vs {ref}" for ref in t["references"] for k in t["deltas"][q])]
    print(table(header + ["all users test NDCG@10", "best epochs"], lines))


def metric_label(metric: str) -> str:
    return metric.replace("ndcg", "NDCG").replace("hr", "HR")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["jobs", "cold-items", "report"])
    ap.add_argument("table", nargs="?", choices=sorted(TABLES), default="mmsr")
    ap.add_argument("--missing", action="store_true", help="jobs: only the runs without a result file yet")
    args = ap.parse_args()
    {"jobs": lambda: jobs(args.missing), "cold-items": write_cold_items,
     "report": lambda: report(args.table)}[args.what]()


if __name__ == "__main__":
    main()
