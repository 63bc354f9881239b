#!/usr/bin/env bash
# AutoMLP (DARTS search of the short-term length, α on the validation items, then retraining) vs
# AutoMLP with the first-order step (ξ = 0) vs AutoMLP-s (one model per candidate length, picked by
# validation) vs SASRec on ML-100K, exact full ranking, every run to early stopping (params.yaml's
# train: patience 10, up to 200 epochs). One seed = one job = one process on one core with one
# thread, so every time inside a seed compares; seeds run side by side, one per core.
#
#   bash bench/automlp_search.sh                 # SEEDS="0 1 2", then the table
#   LIST=1 SEEDS="0 1 2" bash bench/automlp_search.sh   # only print the jobs (for pipeline/jobs.py)
#   python -m bench.automlp_report bench/results/automlp-search/runs-s*.json   # the table again
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-bench/results/automlp-search}
SEEDS=${SEEDS:-"0 1 2"}
WORK=${WORK:-bench/.work/ml-100k}
MODELS=(automlp 'automlp:xi=0' 'automlp:short_lengths=[2]' 'automlp:short_lengths=[5]' 'automlp:short_lengths=[10]'
        'automlp:short_lengths=[20]' 'automlp:short_lengths=[30]' sasrec)
jobs() {
    for seed in $SEEDS; do
        printf '%s -m bench.baselines --dataset ml-100k --seeds %s --work %s --out %s --name runs-s%s.json --set train.threads=1 features.threads=1 --models' \
            "$PY" "$seed" "$WORK" "$OUT" "$seed"
        printf " '%s'" "${MODELS[@]}"
        echo
    done
}
if [ -n "${LIST:-}" ]; then jobs; exit 0; fi
"$PY" -m bench.baselines --dataset ml-100k --work "$WORK" --prepare-only
"$PY" -m pipeline.jobs --logs "$OUT/logs" <(jobs)
"$PY" -m bench.automlp_report "$OUT"/runs-s*.json | tee "$OUT/table.md"
