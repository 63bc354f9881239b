"""The 2026-11-23 RecBole comparison tables, printed from their result files (the format
`bench/recbole_compare.py` wrote before it kept per-user ranks and several seeds).

    python -m bench.recbole_legacy "RecBole 1.2.1=bench/results/recbole-compare-run1.json:recbole" \\
        "ours=bench/results/recbole-compare-run1.json:ours"

Each argument is LABEL=FILE:SIDE (SIDE = ours | recbole); one table row each: test HR / NDCG /
MRR@10, best validation NDCG@10 (its epoch), wall seconds to that epoch, epochs run, s/epoch,
peak RSS.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipeline.results import table

ROOT = Path(__file__).resolve().parents[1]

def row(label: str, spec: str) -> list[str]:
    path, _, side = spec.rpartition(":")
    run = json.loads((ROOT / path).read_text())["rows"][0][side]
    best = max(run["curve"], key=lambda r: r["valid/ndcg@10"])
    test = run["test"]
    return [label, f"{test.get('hr@10', test.get('hit@10')):.4f}", f"{test['ndcg@10']:.4f}", f"{test['mrr@10']:.4f}",
            f"{best['valid/ndcg@10']:.4f} ({best['epoch']})", f"{best['wall_s']:,.0f} s", str(run["epochs_run"]),
            f"{run['s_per_epoch']:.1f}", f"{run['peak_rss_mb'] / 1024:.2f} GB"]


def main() -> None:
    if len(sys.argv) < 2 or any("=" not in a for a in sys.argv[1:]):
        raise SystemExit(__doc__)
    print(table(["library", "test HR@10", "test NDCG@10", "test MRR@10", "best valid NDCG@10 (epoch)",
                 "time to its best", "epochs run", "s/epoch", "peak RSS"],
                [row(*a.split("=", 1)) for a in sys.argv[1:]]))


if __name__ == "__main__":
    main()
