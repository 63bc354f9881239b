#!/usr/bin/env bash
# AutoMLP (DARTS search of the short-term length, then retraining) vs AutoMLP-s (one model per
# candidate length, picked by validation) vs SASRec on ML-100K, 3 seeds, exact full ranking; prints
# the metrics, the chosen k and the search time of each (docs/benchmarks.md).
#
#   bash bench/automlp_search.sh          # EPOCHS=30 SEEDS="0 1 2" by default
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-bench/results/automlp-search}
EPOCHS=${EPOCHS:-30}
SEEDS=${SEEDS:-"0 1 2"}
mkdir -p "$OUT"
"$PY" bench/baselines.py --dataset ml-100k --seeds $SEEDS --out "$OUT" --name runs.json \
    --set "train.epochs=$EPOCHS" --models automlp "automlp:short_lengths=[2]" "automlp:short_lengths=[5]" \
    "automlp:short_lengths=[10]" "automlp:short_lengths=[20]" "automlp:short_lengths=[30]" sasrec | tee "$OUT/runs.md"
"$PY" bench/automlp_report.py "$OUT/runs.json" | tee "$OUT/table.md"
