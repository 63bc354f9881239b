#!/usr/bin/env bash
# Render the report page in headless Chromium (Debian's `chromium`) and save a screenshot: the check
# that the page opens offline in a real browser, and the picture in the README.
#
#   python -m pipeline.report && bash bench/screenshot_report.sh docs/report/index.html docs/report/screenshot.png
set -euo pipefail
PAGE=${1:-docs/report/index.html}
SHOT=${2:-docs/report/screenshot.png}
BROWSER=$(command -v chromium || command -v chromium-browser || true)
[ -n "$BROWSER" ] || { echo "no chromium: apt-get install chromium" >&2; exit 2; }
PROFILE=$(mktemp -d)
trap 'rm -rf "$PROFILE"' EXIT
# the flags keep a root, offline, GPU-less browser from trying the network or a sandbox it cannot have
"$BROWSER" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$PROFILE" --hide-scrollbars \
    --window-size=1150,${HEIGHT:-2600} --screenshot="$(realpath -m "$SHOT")" "file://$(realpath "$PAGE")" 2>/dev/null
test -s "$SHOT" && echo "screenshot: $SHOT"
