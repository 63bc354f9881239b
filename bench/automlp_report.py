"""AutoMLP vs AutoMLP-s vs SASRec from `bench/automlp_search.sh` result files (one, or one per seed).

AutoMLP-s for a seed = the single-length run (`automlp:short_lengths=[k]`) with the best validation
NDCG@10 among all candidate k; its search time = the sum of those runs' wall times (every
candidate trained to early stopping). AutoMLP's search time = its search phase; its total = search
+ retraining.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from pipeline.results import mean_std, table


def single_length(model: str) -> int | None:
    """k of an AutoMLP-s run (`automlp:short_lengths=[k]`), None for any other model."""
    m = re.fullmatch(r"automlp:short_lengths=\[(\d+)\]", model)
    return int(m.group(1)) if m else None


def summarise(rows: list[dict]) -> list[list[str]]:
    seeds = sorted({r["seed"] for r in rows})
    out: dict[str, list[dict]] = {"AutoMLP": [], "AutoMLP, first-order search (`automlp:xi=0`)": [], "AutoMLP-s": [],
                                  "SASRec": []}
    for s in seeds:
        mine = [r for r in rows if r["seed"] == s]
        for name, spec in (("AutoMLP", "automlp"), ("AutoMLP, first-order search (`automlp:xi=0`)", "automlp:xi=0")):
            auto = next((r for r in mine if r["model"] == spec), None)
            if auto is not None:
                out[name].append(auto | {"k": auto["search_k"], "search": auto["search_s"], "total": auto["wall_s"]})
        singles = [r for r in mine if single_length(r["model"]) is not None]
        best = max(singles, key=lambda r: r["valid/ndcg@10"])
        total = sum(r["wall_s"] for r in singles)
        out["AutoMLP-s"].append(best | {"k": single_length(best["model"]), "search": total, "total": total})
        out["SASRec"].append(next(r for r in mine if r["model"] == "sasrec"))

    def stat(rs: list[dict], key: str, fmt: str = "{:.4f}") -> str:
        return mean_std([r[key] for r in rs], fmt)

    lines = []
    for name, rs in out.items():
        if not rs:
            continue
        lines.append([name, stat(rs, "test/hr@10"), stat(rs, "test/ndcg@10"), stat(rs, "test/mrr@10"),
                      "/".join(str(r["k"]) for r in rs) if "k" in rs[0] else "—",
                      stat(rs, "search", "{:.0f}") if "search" in rs[0] else "—",
                      stat(rs, "total" if "total" in rs[0] else "wall_s", "{:.0f}")])
    return lines


def per_length(rows: list[dict]) -> list[list[str]]:
    """One line per candidate k: the single-length model's validation / test NDCG@10 and wall time
    (AutoMLP-s's whole grid) beside AutoMLP's final softmax(α) share for k, mean ± std over seeds."""
    searched = [r for r in rows if r["model"] == "automlp"]
    lines = []
    for k in sorted({single_length(r["model"]) for r in rows} - {None}):
        mine = [r for r in rows if single_length(r["model"]) == k]
        lines.append([str(k), mean_std([r["valid/ndcg@10"] for r in mine]), mean_std([r["test/ndcg@10"] for r in mine]),
                      mean_std([r["wall_s"] for r in mine], "{:.0f}"),
                      mean_std([r["search_p"][str(k)] for r in searched], "{:.3f}")])
    return lines


def main() -> None:
    rows = [r for f in sys.argv[1:] for r in json.loads(Path(f).read_text())["rows"]]  # one file per seed is fine
    print(table(["model", "test HR@10", "test NDCG@10", "test MRR@10", "chosen k (per seed)", "search s",
                 "total s"], summarise(rows)))
    print()
    print(table(["k", "single-length valid NDCG@10", "single-length test NDCG@10", "single-length wall s",
                 "AutoMLP softmax(α) after search"], per_length(rows)))


if __name__ == "__main__":
    main()
