#!/usr/bin/env bash
# The paper-models table (docs/benchmarks.md): MSM4SR, its ablations, M2SR, MLPMixer, SASRec and pop
# on ML-100K with posters + overviews, 3 seeds, exact full ranking, every run capped at the same
# fine-tuning budget. The rows are split over two processes, each pinned to one core with one
# thread (this machine has two), then printed as one table.
#
#   bash bench/paper_models.sh            # ~90 min on 2 cores
#   EPOCHS=200 SEEDS="0 1 2 3 4" bash bench/paper_models.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-bench/results/paper-models-3seeds}
EPOCHS=${EPOCHS:-30}
SEEDS=${SEEDS:-"0 1 2"}
COMMON=(--dataset ml-100k --seeds $SEEDS --out "$OUT"
        --set "train.epochs=$EPOCHS" train.threads=1 pretrain.threads=1 features.threads=1)
mkdir -p "$OUT"
pin() { if command -v taskset >/dev/null; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }
(  # lane 0: MSM4SR + two loss ablations, then the baselines, reusing the lane's prepared data and features
    pin 0 "$PY" -m bench.baselines "${COMMON[@]}" --name half-a.json --work bench/.work/ml-100k --models \
        msm4sr "msm4sr:nip=false" "msm4sr:cmcl=false" > "$OUT/half-a.log" 2>&1
    pin 0 "$PY" -m bench.baselines "${COMMON[@]}" --name half-c.json --work bench/.work/ml-100k --models \
        m2sr mlpmixer sasrec pop > "$OUT/half-c.log" 2>&1
) &
A=$!
pin 1 "$PY" -m bench.baselines "${COMMON[@]}" --name half-b.json --models \
    "msm4sr:pretrained=false" "msm4sr:mixup=false" 'msm4sr:modalities=["text"]' 'msm4sr:modalities=["image"]' \
    "msm4sr:pretrained=false;e2e_weight=1" 'msm4sr:image_table="image"' > "$OUT/half-b.log" 2>&1 &
B=$!
wait $A; wait $B
"$PY" -m bench.baselines --combine "$OUT/half-a.json" "$OUT/half-c.json" "$OUT/half-b.json" | tee "$OUT/table.md"
