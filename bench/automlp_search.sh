#!/usr/bin/env bash
# AutoMLP (DARTS search of the short-term length, then retraining) vs AutoMLP-s (one model per
# candidate length, picked by validation) vs SASRec on ML-100K, 3 seeds, exact full ranking; prints
# the metrics, the chosen k and the search time of each (docs/benchmarks.md). All runs of one call
# share one process, one core and one thread, so their times compare.
#
#   bash bench/automlp_search.sh          # EPOCHS=30 SEEDS="0 1 2" by default
#   SEEDS=1 TAG=-s1 CORE=1 WORK=bench/.work/ml-100k bash bench/automlp_search.sh   # one seed, reusing features
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-bench/results/automlp-search}
EPOCHS=${EPOCHS:-30}
SEEDS=${SEEDS:-"0 1 2"}
TAG=${TAG:-}
CORE=${CORE:-0}
ARGS=(--dataset ml-100k --seeds $SEEDS --out "$OUT" --name "runs$TAG.json"
      --set "train.epochs=$EPOCHS" train.threads=1 features.threads=1)
if [ -n "${WORK:-}" ]; then ARGS+=(--work "$WORK"); fi
mkdir -p "$OUT"
pin() { if command -v taskset >/dev/null; then taskset -c "$CORE" "$@"; else "$@"; fi; }
pin "$PY" bench/baselines.py "${ARGS[@]}" --models automlp "automlp:short_lengths=[2]" "automlp:short_lengths=[5]" \
    "automlp:short_lengths=[10]" "automlp:short_lengths=[20]" "automlp:short_lengths=[30]" sasrec \
    | tee "$OUT/runs$TAG.md"
"$PY" bench/automlp_report.py "$OUT"/runs*.json | tee "$OUT/table.md"
