"""Check benchmark result rows against the current code: is each row's model still the model the
code builds for its spec?

    python -m bench.stale_rows --work bench/.work/ml-100k-fine bench/results/mmsr-study/row*-s*.json

A result row records the spec it ran (`mmsr:fusion="co_attention"`), the `--set` overrides of its
command and its trainable parameter count. This rebuilds every (spec, overrides) on the current
code and params.yaml, with --work's prepared data and feature tables (the data set the rows ran
on), and compares parameter counts: a module added to or removed from a model since the row ran
(co-attention's per-modality blocks, 2026-12-05) shows as `STALE`. Equal counts do not prove equal
models (a changed forward pass keeps them); they catch structure drift. Files of another data size
than --work's, files run with another params file and AutoMLP rows without their searched length
are listed as skipped, with why. Exits 1 when a row is stale.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.cells import trainable_parameters, with_settings
from pipeline.data import load_training_view
from pipeline.params import load_params
from pipeline.results import run_settings, table

ROOT = Path(__file__).resolve().parents[1]

def current_parameters(spec: str, sets: set[str], work: Path, params: dict, search_k: int | None,
                       view=None) -> int:
    """Trainable parameters of `spec` built now, as the train stage builds it (after AutoMLP's search:
    with the searched length); `view`: --work's training view, when the caller has it loaded."""
    return trainable_parameters(with_settings(params, sorted(sets)), work, spec,
                                {"short_lengths": [search_k]} if search_k else None, view)


def check(files: list[str], work: Path, params: dict) -> list[list[str]]:
    """One line per (file, model): file, model, recorded, now, verdict."""
    built: dict[tuple, int] = {}
    lines = []
    view = load_training_view(work / "prepared")  # once: every rebuild uses it
    items = view.num_items
    for f in files:
        payload = json.loads(Path(f).read_text())
        ran_on = (payload.get("stats") or {}).get("items")
        if ran_on is not None and ran_on != items:
            lines += [[f, spec, "—", "—", f"skipped: other data ({ran_on:,} items; --work has {items:,})"]
                      for spec in dict.fromkeys(r["model"] for r in payload["rows"])]
            continue
        sets, note = run_settings(payload), ""
        if ran_on is None:
            note = f" (the file records no data size: --work's {items:,} items assumed)"
        other_params = "--params" in payload.get("argv", []) or " --params " in payload.get("command", "")
        if sets is None and not other_params:
            sets, note = set(), note + " (its command cannot be read: checked without --set overrides)"
        for spec in dict.fromkeys(r["model"] for r in payload["rows"]):
            rows = [r for r in payload["rows"] if r["model"] == spec]
            recorded = {r.get("parameters") for r in rows}
            k = rows[0].get("search_k")
            if sets is None:
                lines.append([f, spec, "—", "—", "skipped: ran with another params file"])
                continue
            if spec.startswith("automlp") and k is None and "short_lengths" not in spec:
                lines.append([f, spec, "—", "—", "skipped: AutoMLP row without its searched length"])
                continue
            if None in recorded:
                lines.append([f, spec, "—", "—", "skipped: the row has no parameter count"])
                continue
            key = (spec, tuple(sorted(sets)), k)
            if key not in built:
                try:
                    built[key] = current_parameters(spec, sets, work, params, k, view)
                except Exception as e:  # noqa: BLE001 - a spec the code no longer accepts is a finding too
                    built[key] = f"{type(e).__name__}: {e}"
            now = built[key]
            if isinstance(now, str):
                lines.append([f, spec, "/".join(f"{n:,}" for n in sorted(recorded)), "—",
                              f"STALE: the current code cannot build it ({now[:200]})"])
                continue
            ok = recorded == {now}
            lines.append([f, spec, "/".join(f"{n:,}" for n in sorted(recorded)), f"{now:,}",
                          ("ok" if ok else "STALE: the code builds another model for this spec") + note])
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", help="result files of bench/baselines.py")
    ap.add_argument("--work", required=True, help="a --work folder (prepared/ and features/) of the rows' data set")
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    args = ap.parse_args()
    lines = check(args.files, Path(args.work), load_params(Path(args.params)))
    print(table(["file", "model", "parameters then", "now", "verdict"], lines))
    stale = [ln for ln in lines if ln[4].startswith("STALE")]
    if stale:
        sys.exit(f"{len(stale)} stale row(s): re-run them or move them out of the tables (e.g. a withdrawn/ folder)")


if __name__ == "__main__":
    main()
