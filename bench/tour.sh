#!/usr/bin/env bash
# The README's "researcher's tour", run for real in a fresh clone on MovieLens-100K: one workspace
# run with features (MMSR), a queued grid of ID models x 3 seeds on two workers, the comparison
# table, the report page (+ a Chromium screenshot) and a feature query. Every command's output is
# kept under bench/results/tour/ (the README quotes it); the page goes to docs/report/.
#
#   bash bench/tour.sh [/scratch/clone]        # ~30 min on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CLONE=${1:-/tmp/mmrec-tour}
OUT=$ROOT/bench/results/tour
export PATH="$ROOT/.venv/bin:$PATH"
rm -rf "$CLONE" && git clone -q "$ROOT" "$CLONE" && mkdir -p "$OUT"
cd "$CLONE"
log() { echo "\$ $*" | tee -a "$OUT/commands.txt"; }
step() {  # step NAME CMD...: run, keep stdout+stderr in $OUT/NAME.txt, time it
    local name=$1; shift; log "$@"
    local t0=$SECONDS
    "$@" > "$OUT/$name.txt" 2>&1 || { tail -50 "$OUT/$name.txt"; exit 1; }
    echo "  ($((SECONDS - t0)) s)" | tee -a "$OUT/commands.txt"
}
: > "$OUT/commands.txt"
step 01-mmsr dvc exp run -S dataset=ml-100k -S model=mmsr -n mmsr-s42
step 02-queue dvc exp run --queue -S dataset=ml-100k -S model=sasrec,gru4rec -S train.seed=0,1,2
step 03-start dvc queue start -j 2
t0=$SECONDS
# (status captured first: `dvc … | grep -q` under pipefail ends the loop when grep closes the pipe)
while st=$(dvc queue status 2>/dev/null) && grep -qE "Queued|Running" <<< "$st"; do sleep 10; done
echo "  (queue drained in $((SECONDS - t0)) s)" | tee -a "$OUT/commands.txt"
step 04-status dvc queue status
step 05-table python -m pipeline.report --table
step 07-report python -m pipeline.report --out "$ROOT/docs/report"
step 08-query python -m pipeline.query sql "SELECT i.title, count(*) AS plays FROM interactions x JOIN items i USING (item_id) GROUP BY i.title ORDER BY plays DESC LIMIT 5"
step 09-item python -m pipeline.query item 50 --k 3
HEIGHT=2880 bash "$ROOT/bench/screenshot_report.sh" "$ROOT/docs/report/index.html" "$ROOT/docs/report/screenshot.png"
echo "tour done: $OUT, $ROOT/docs/report/"
