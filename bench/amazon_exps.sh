#!/usr/bin/env bash
# Amazon "Industrial and Scientific" (UniSRec's files, text only) through DVC experiments: SASRec,
# MSM4SR-T and MMSR-T, each seed one `dvc exp run` of the whole graph (download → preprocess →
# features → pretrain → train → evaluate; stages the change does not touch are skipped), then one
# table from `dvc exp show` (docs/benchmarks.md).
#
# The experiments run in a scratch clone of the committed project (WORK) that shares this
# project's DVC cache, so the workspace here is never touched; see them with
# `cd bench/.work/exps && dvc exp show -A`. (`dvc exp run --queue` would work too, but each queued run
# starts from an empty scratch copy and recomputes the features and the pre-training.)
#
#   bash bench/amazon_exps.sh             # EPOCHS=30 SEEDS="0 1 2"
#   CORE=1 bash bench/amazon_exps.sh      # pinned to core 1 (beside another benchmark on core 0)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$ROOT/.venv/bin:$PATH"
OUT=$ROOT/${OUT:-bench/results/amazon-scientific}
WORK=${WORK:-bench/.work/exps}
EPOCHS=${EPOCHS:-30}
SEEDS=${SEEDS:-"0 1 2"}
PREFIX=${PREFIX:-sci}
CORE=${CORE:-}  # e.g. CORE=1 pins every run to one core (leave empty to use any)
MODELS=${MODELS:-"msm4sr sasrec mmsr"}
SRC=$(cd "${SRC:-../shared/datasets/amazon-scientific-unisrec}" && pwd)  # absolute: the clone lives elsewhere
if [ ! -d "$WORK/.git" ]; then
    git clone -q "$ROOT" "$WORK"
    (cd "$WORK" && dvc cache dir --local "$ROOT/.dvc/cache" && ln -s "$ROOT/.venv" .venv)
fi
pin() { if [ -n "$CORE" ] && command -v taskset >/dev/null; then taskset -c "$CORE" "$@"; else "$@"; fi; }
cd "$WORK"
git checkout -q -- .  # the last experiment left its params and lock here
git pull -q --ff-only  # run the committed code of the project
COMMON=(-S dataset=amazon-scientific -S "datasets.amazon-scientific.source=$SRC" -S "train.epochs=$EPOCHS"
        -S train.threads=1 -S pretrain.threads=1 -S features.threads=1
        -S 'models.msm4sr.modalities=[text]' -S 'models.mmsr.modalities=[text]')
for seed in $SEEDS; do
    for model in $MODELS; do
        name="$PREFIX-$model-s$seed"
        dvc exp remove "$name" >/dev/null 2>&1 || true  # a re-run replaces the old one
        # no -f: `dvc exp run -f` reruns every stage, features included; without it unchanged stages are skipped
        pin dvc exp run -n "$name" "${COMMON[@]}" -S "model=$model" -S "train.seed=$seed"
    done
done
mkdir -p "$OUT"
dvc exp show --all-commits --csv > "$OUT/dvc-exps.csv"  # every seed, whichever commit it ran on
(cd "$ROOT" && python -m bench.exp_table "$OUT/dvc-exps.csv" --prefix "$PREFIX") | tee "$OUT/table.md"
