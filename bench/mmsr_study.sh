#!/usr/bin/env bash
# The MMSR fusion study's headline rows on ML-100K (posters + overviews), 3 seeds, exact full
# ranking, every run to early stopping (patience 10, up to 200 epochs): the four coarse fusions,
# merge- and co-attention, MMSR-T / MMSR-V, merge-attention on the GRU4Rec backbone, and the ID
# baselines SASRec and GRU4Rec under MMSR's loss (BCE, one uniform negative per position) beside
# SASRec under full-softmax CE. One job per (row, seed), one core and one thread each.
#
#   bash bench/mmsr_study.sh                  # SEEDS="0 1 2", then the table
#   LIST=1 bash bench/mmsr_study.sh           # only print the jobs (for pipeline/jobs.py)
#   python -m bench.baselines --combine bench/results/mmsr-study/*.json   # the table again
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-bench/results/mmsr-study}
SEEDS=${SEEDS:-"0 1 2"}
WORK=${WORK:-bench/.work/ml-100k}
ROWS=(mmsr 'mmsr:fusion="co_attention"' 'mmsr:fusion="sum"' 'mmsr:fusion="concat"' 'mmsr:fusion="gate"'
      'mmsr:fusion="film"' 'mmsr:modalities=["text"]' 'mmsr:modalities=["image"]' 'mmsr:backbone="gru4rec"'
      'sasrec:loss="bce"' 'gru4rec:loss="bce"' sasrec)
jobs() {
    for seed in $SEEDS; do
        for i in "${!ROWS[@]}"; do
            echo "$PY -m bench.baselines --dataset ml-100k --seeds $seed --work $WORK --out $OUT --name row$i-s$seed.json --set train.threads=1 features.threads=1 --models '${ROWS[$i]}'"
        done
    done
}
if [ -n "${LIST:-}" ]; then jobs; exit 0; fi
"$PY" -m bench.baselines --dataset ml-100k --work "$WORK" --prepare-only
"$PY" -m pipeline.jobs --logs "$OUT/logs" <(jobs)
"$PY" -m bench.baselines --combine "$OUT"/row*.json | tee "$OUT/table.md"
