"""Compare two runs, or two groups of seeds, user by user: is the difference signal or noise?

    python -m pipeline.compare RUN_A RUN_B                       # two runs
    python -m pipeline.compare --a A_s0 A_s1 A_s2 --b B_s0 B_s1 B_s2   # two groups of seeds
    python -m pipeline.compare A B --query test --metrics ndcg@10 hr@10 --json out.json

A run is a `ranks.parquet` written by the evaluate stage (or a folder holding one). For each
metric, each user's value under A (the mean over A's seeds) is paired with the same user's value
under B; the report gives mean(A), mean(B), the difference A − B, a 95 % paired bootstrap
confidence interval of that difference over users (scipy.stats.bootstrap, BCa, 10,000
resamples), and the two-sided Wilcoxon signed-rank test of the paired values (scipy). With
several seeds per group it also gives each group's per-seed mean ± std. A difference is marked
significant when the interval excludes 0 and p < 0.05; anything else is "no detectable
difference", not "equal".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats

from pipeline.tables import read_table

METRICS = ("hr@10", "ndcg@10", "mrr@10")


def read_ranks(path: str | Path) -> pl.DataFrame:
    path = Path(path)
    return read_table(path / "ranks.parquet" if path.is_dir() else path, "ranks")


def per_query(ranks: np.ndarray, metric: str) -> np.ndarray:
    """Each query's value of `hr@K`, `ndcg@K` or `mrr@K` from its rank (inf = not in the top list)."""
    name, k = metric.split("@")
    hit = ranks <= int(k)
    if name == "hr":
        return hit.astype(np.float64)
    if name == "ndcg":
        return np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0)
    if name == "mrr":
        return np.where(hit, 1.0 / ranks, 0.0)
    raise ValueError(f"metric {metric!r}: use hr@K, ndcg@K or mrr@K")


def _matrix(runs: list[pl.DataFrame], query: str) -> tuple[np.ndarray, np.ndarray]:
    """(users, seeds) ranks of one query set, rows aligned on (user_id, target) across the runs."""
    keyed = []
    for r in runs:
        q = r.filter(pl.col("query") == query)
        if q.height == 0:
            raise ValueError(f"no {query!r} queries in a ranks table (queries there: {r['query'].unique().to_list()})")
        keyed.append(q.with_columns(pl.int_range(pl.len()).over("user_id", "target").alias("_n")))
    key = ["user_id", "target", "_n"]
    joined = keyed[0].select(*key, pl.col("rank").alias("r0"))
    for i, q in enumerate(keyed[1:], 1):
        joined = joined.join(q.select(*key, pl.col("rank").alias(f"r{i}")), on=key, how="inner")
    if joined.height != keyed[0].height or any(q.height != joined.height for q in keyed):
        raise ValueError(f"the runs rank different {query!r} queries (other data or split); compare runs on the "
                         "same prepared data")
    joined = joined.sort(key)
    return joined["user_id"].to_numpy(), joined.select(f"r{i}" for i in range(len(keyed))).to_numpy()


BOOTSTRAP_BATCH = 1000


def compare(a: list[pl.DataFrame], b: list[pl.DataFrame], metrics=METRICS, query: str = "test",
            resamples: int = 10_000, seed: int = 0) -> list[dict]:
    """One dict per metric: means, difference A − B, its paired bootstrap 95 % CI over queries, the
    Wilcoxon p-value, per-seed mean ± std of each group and `significant`."""
    _, ra = _matrix(a + b, query)
    ra, rb = ra[:, :len(a)], ra[:, len(a):]
    out = []
    for m in metrics:
        va, vb = per_query(ra, m), per_query(rb, m)  # (Q, seeds)
        d = va.mean(1) - vb.mean(1)
        row = {"metric": m, "query": query, "queries": len(d), "seeds_a": len(a), "seeds_b": len(b),
               "mean_a": float(va.mean()), "mean_b": float(vb.mean()), "diff": float(d.mean())}
        if np.all(d == d[0]):  # no variation: the interval is the point, and no test applies
            row |= {"ci_low": float(d[0]), "ci_high": float(d[0]), "p_value": 1.0 if d[0] == 0 else 0.0}
        else:
            # batch: at most BOOTSTRAP_BATCH resamples (and BCa jackknife samples) in memory at once. Unbatched,
            # BCa's jackknife alone is a (Q, Q-1) matrix: 21,061 cold sub-sequence queries took > 8 GB. The
            # interval is the same (one generator, drawn in order; tests/test_compare.py)
            ci = stats.bootstrap((d,), np.mean, n_resamples=resamples, confidence_level=0.95, method="BCa",
                                 random_state=np.random.default_rng(seed), batch=BOOTSTRAP_BATCH).confidence_interval
            row |= {"ci_low": float(ci.low), "ci_high": float(ci.high),
                    "p_value": float(stats.wilcoxon(va.mean(1), vb.mean(1), zero_method="zsplit").pvalue)}
        row["significant"] = bool((row["ci_low"] > 0 or row["ci_high"] < 0) and row["p_value"] < 0.05)
        for side, v in (("a", va), ("b", vb)):
            per_seed = v.mean(0)
            row[f"seed_means_{side}"] = per_seed.tolist()
            row[f"std_{side}"] = float(per_seed.std(ddof=1)) if len(per_seed) > 1 else None
        out.append(row)
    return out


def describe(row: dict, digits: int = 4) -> str:
    """'ndcg@10: 0.1051 vs 0.0855, Δ +0.0196 [+0.0120, +0.0271], p 3e-06 — significant'."""
    f = f"{{:.{digits}f}}"
    verdict = "significant" if row["significant"] else "no detectable difference"
    return (f"{row['metric']}: {f.format(row['mean_a'])} vs {f.format(row['mean_b'])}, Δ {row['diff']:+.{digits}f} "
            f"[{row['ci_low']:+.{digits}f}, {row['ci_high']:+.{digits}f}], p {row['p_value']:.2g} — {verdict}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", help="RUN_A RUN_B (ranks.parquet files or folders holding one)")
    ap.add_argument("--a", nargs="+", help="group A: one run per seed")
    ap.add_argument("--b", nargs="+", help="group B: one run per seed")
    ap.add_argument("--query", default="test", help="valid | test | cold_seq")
    ap.add_argument("--metrics", nargs="+", default=list(METRICS))
    ap.add_argument("--resamples", type=int, default=10_000)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    if args.a or args.b:
        if not (args.a and args.b) or args.runs:
            ap.error("give either two runs or --a ... --b ...")
        a, b = args.a, args.b
    elif len(args.runs) == 2:
        a, b = [args.runs[0]], [args.runs[1]]
    else:
        ap.error("give two runs (A B) or two groups (--a ... --b ...)")
    rows = compare([read_ranks(p) for p in a], [read_ranks(p) for p in b], args.metrics, args.query, args.resamples)
    print(f"A = {' '.join(a)}\nB = {' '.join(b)}\n{args.query}: {rows[0]['queries']} paired queries, "
          f"{len(a)} vs {len(b)} seed(s); 95 % paired bootstrap CI over queries, Wilcoxon signed-rank p")
    for row in rows:
        print("  " + describe(row))
        if row["std_a"] is not None or row["std_b"] is not None:
            print(f"    per seed: A {np.mean(row['seed_means_a']):.4f} ± {row['std_a'] or 0:.4f}, "
                  f"B {np.mean(row['seed_means_b']):.4f} ± {row['std_b'] or 0:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
