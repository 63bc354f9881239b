#!/usr/bin/env bash
# Amazon "Industrial and Scientific" (UniSRec's files, text only) through DVC experiments: SASRec,
# MSM4SR-T and MMSR-T, each seed one `dvc exp run` of the whole graph (download → preprocess →
# features → pretrain → train → evaluate; unchanged stages come from DVC's run cache), queued and
# run JOBS at a time, then one table from `dvc exp show` (docs/benchmarks.md).
#
#   bash bench/amazon_exps.sh             # EPOCHS=30 SEEDS="0 1 2" JOBS=1
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
OUT=${OUT:-bench/results/amazon-scientific}
EPOCHS=${EPOCHS:-30}
SEEDS=${SEEDS:-"0 1 2"}
JOBS=${JOBS:-1}
PREFIX=${PREFIX:-sci}
MODELS=${MODELS:-"msm4sr sasrec mmsr"}
# queued experiments run in a scratch copy of the project, so the source path must be absolute
SRC=$(cd "${SRC:-../shared/datasets/amazon-scientific-unisrec}" && pwd)
COMMON=(-S dataset=amazon-scientific -S "datasets.amazon-scientific.source=$SRC" -S "train.epochs=$EPOCHS"
        -S train.threads=1 -S pretrain.threads=1 -S features.threads=1
        -S 'models.msm4sr.modalities=[text]' -S 'models.mmsr.modalities=[text]')
for seed in $SEEDS; do
    for model in $MODELS; do
        dvc exp run --queue -f -n "$PREFIX-$model-s$seed" "${COMMON[@]}" -S "model=$model" -S "train.seed=$seed"
    done
done
dvc queue start -j "$JOBS"
while dvc queue status | grep -qE 'Queued|Running'; do sleep 60; done
dvc queue status
mkdir -p "$OUT"
dvc exp show --csv > "$OUT/dvc-exps.csv"
python bench/exp_table.py "$OUT/dvc-exps.csv" --prefix "$PREFIX" | tee "$OUT/table.md"
