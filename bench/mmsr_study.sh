#!/usr/bin/env bash
# The MMSR fusion study on ML-100K (posters + overviews), 3 seeds, exact full ranking: every fusion
# with the SASRec backbone, merge-attention with all three backbones, MMSR-T / MMSR-V, and the
# ID-based SASRec; the cold-item columns are the study's §7.1 comparison (docs/benchmarks.md).
# Split over two processes pinned to one core each.
#
#   bash bench/mmsr_study.sh              # EPOCHS=30 SEEDS="0 1 2" by default
#   SEEDS=1 TAG=-s1 WORK=bench/.work/ml-100k bash bench/mmsr_study.sh   # one seed, reusing prepared features
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-bench/results/mmsr-study}
EPOCHS=${EPOCHS:-30}
SEEDS=${SEEDS:-"0 1 2"}
TAG=${TAG:-}
COMMON=(--dataset ml-100k --seeds $SEEDS --out "$OUT" --set "train.epochs=$EPOCHS" train.threads=1 features.threads=1)
if [ -n "${WORK:-}" ]; then COMMON+=(--work "$WORK"); fi
mkdir -p "$OUT"
pin() { if command -v taskset >/dev/null; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }
pin 0 "$PY" bench/baselines.py "${COMMON[@]}" --name "half-a$TAG.json" --models \
    mmsr "mmsr:fusion=\"co_attention\"" "mmsr:fusion=\"gate\"" "mmsr:fusion=\"film\"" "mmsr:fusion=\"sum\"" \
    "mmsr:fusion=\"concat\"" 'mmsr:modalities=["text"]' sasrec > "$OUT/half-a$TAG.log" 2>&1 &
A=$!
pin 1 "$PY" bench/baselines.py "${COMMON[@]}" --name "half-b$TAG.json" --models \
    "mmsr:fusion=\"gate_dnn\"" "mmsr:fusion=\"film_dnn\"" "mmsr:fusion=\"sum_dnn\"" "mmsr:fusion=\"concat_dnn\"" \
    "mmsr:backbone=\"gru4rec\"" "mmsr:backbone=\"nextitnet\"" 'mmsr:modalities=["image"]' > "$OUT/half-b$TAG.log" 2>&1 &
B=$!
wait $A; wait $B
"$PY" bench/baselines.py --combine "$OUT"/half-*.json | tee "$OUT/table.md"
