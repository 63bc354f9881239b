"""Compare two groups of runs query by query: is the difference signal or noise, counting every source of noise?

    python -m pipeline.compare RUN_A RUN_B                               # two runs
    python -m pipeline.compare --a A_s0 A_s1 A_s2 --b B_s0 B_s1 B_s2     # two groups of seeds
    python -m pipeline.compare A B --query cold_seq --metrics ndcg@10 hr@50 --json out.json

A run is a `ranks.parquet` written by the evaluate stage (or a folder holding one); its queries are
paired across runs by (user, target, occurrence). The difference A − B of a metric is the mean over
queries of (A's mean over its seeds − B's). Its 95 % interval is a **two-level bootstrap**
(`two_level`): each resample draws the users with replacement — as clusters, so a user with several
queries (cold_seq: every prefix ending in a cold item) brings all of them, correlated as they are —
and, independently for A and B, their seeds with replacement, so the interval carries both the
test users' noise and the training noise between seeds (a collapsed or lucky seed widens it). The
p-value is the bootstrap's two-sided one; several comparisons in one table are corrected with
Holm's method (`holm`). `mde` is the minimum detectable effect at 80 % power, 2.8 × the
bootstrap standard error: an effect smaller than it is unlikely to be confirmed by these runs, and
when the interval holds both 0 and the paper's effect `verdict` says "inconclusive (underpowered)",
never "not reproduced" (that needs an interval which rules the paper's effect out).

`seed_averaged` is the earlier interval (seeds averaged per query, queries resampled, BCa), kept for
comparison: it is conditional on the trained models and ignores query clusters, so it is too narrow.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats

from pipeline.tables import read_table

METRICS = ("hr@10", "ndcg@10", "mrr@10")
RESAMPLES = 10_000
BOOTSTRAP_BATCH = 1000  # resamples held in memory at once (a (batch, users) weight matrix)
ALPHA = 0.05
POWER_Z = 2.8  # z_{0.975} + z_{0.80}: the effect a two-sided 5 % test detects with 80 % power, in standard errors


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


RANK_METRICS = ("hr", "ndcg", "mrr")  # per query from the rank; others (pop@K, tail@K) are columns of the ranks table


def column_of(metric: str) -> str:
    """The ranks-table column a metric's per-query value comes from."""
    return "rank" if metric.split("@")[0] in RANK_METRICS else metric


def metric_values(values: np.ndarray, metric: str) -> np.ndarray:
    """Per-query values of `metric` from its column's values (ranks → hr/ndcg/mrr; a value column as is)."""
    return per_query(values, metric) if column_of(metric) == "rank" else np.asarray(values, np.float64)


def aligned(runs: list[pl.DataFrame], query: str, column: str = "rank") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user_id (Q,), target (Q,), values (Q, runs)) of one query set — `column` of each run, the rank
    by default — rows aligned on (user_id, target, occurrence) across the runs; runs that rank other
    queries are refused, and so are runs whose table lacks the column."""
    keyed = []
    for r in runs:
        q = r.filter(pl.col("query") == query)
        if q.height == 0:
            raise ValueError(f"no {query!r} queries in a ranks table (queries there: {r['query'].unique().to_list()})")
        if column not in q.columns:
            raise ValueError(f"a ranks table has no per-query {column!r} (written before the evaluate stage kept it): "
                             "re-run that run's evaluation")
        keyed.append(q.with_columns(pl.int_range(pl.len()).over("user_id", "target").alias("_n")))
    key = ["user_id", "target", "_n"]
    joined = keyed[0].select(*key, pl.col(column).alias("r0"))
    for i, q in enumerate(keyed[1:], 1):
        joined = joined.join(q.select(*key, pl.col(column).alias(f"r{i}")), on=key, how="inner")
    if joined.height != keyed[0].height or any(q.height != joined.height for q in keyed):
        raise ValueError(f"the runs rank different {query!r} queries (other data or split); compare runs on the "
                         "same prepared data")
    joined = joined.sort(key)
    return (joined["user_id"].to_numpy(), joined["target"].to_numpy(),
            joined.select(f"r{i}" for i in range(len(keyed))).to_numpy())


@dataclass(frozen=True)
class Interval:
    """A difference A − B with its two-level bootstrap interval."""

    diff: float
    low: float
    high: float
    p_value: float
    se: float
    queries: int
    clusters: int
    seeds_a: int
    seeds_b: int

    @property
    def mde(self) -> float:
        """Minimum detectable effect at 80 % power (two-sided 5 %): 2.8 standard errors."""
        return POWER_Z * self.se

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def two_level(va: np.ndarray, vb: np.ndarray, clusters: np.ndarray, resamples: int = RESAMPLES, seed: int = 0,
              level: float = 0.95) -> Interval:
    """A − B for per-query values va (Q, Sa) and vb (Q, Sb) of the same queries, `clusters` (Q,) the
    user of each query. Each resample draws the clusters with replacement (paired: the same users
    for A and B) and, independently for A and B, their seeds with replacement; the statistic is the
    query-weighted mean difference. Percentile interval; p = two-sided bootstrap p-value."""
    va, vb = np.asarray(va, np.float64), np.asarray(vb, np.float64)
    _, c = np.unique(clusters, return_inverse=True)
    n_clusters = int(c.max()) + 1 if len(c) else 0
    ca = np.zeros((n_clusters, va.shape[1]))
    cb = np.zeros((n_clusters, vb.shape[1]))
    np.add.at(ca, c, va)
    np.add.at(cb, c, vb)
    sizes = np.bincount(c, minlength=n_clusters).astype(np.float64)
    diff = float(va.mean(1).mean() - vb.mean(1).mean())
    rng = np.random.default_rng(seed)
    draws = []
    batch = max(1, min(BOOTSTRAP_BATCH or resamples, 4_000_000 // max(n_clusters, 1)))  # ≤ 4M draws in memory
    for start in range(0, resamples, batch):
        n = min(batch, resamples - start)
        users = rng.integers(0, n_clusters, (n, n_clusters))  # (n, U): each resample's users, with replacement
        pick_a = seed_weights(rng, va.shape[1], n)  # (n, Sa): how often each seed is drawn, / Sa
        pick_b = seed_weights(rng, vb.shape[1], n)
        per_user = (ca @ pick_a.T - cb @ pick_b.T).T  # (n, U): each user's summed A − B under the seed draw
        draws.append(np.take_along_axis(per_user, users, 1).sum(1) / sizes[users].sum(1))
    d = np.concatenate(draws)
    tail = (1 - level) / 2
    low, high = np.quantile(d, [tail, 1 - tail])
    below, above = (d <= 0).sum(), (d >= 0).sum()
    p = 1.0 if np.all(d == 0) else min(1.0, 2 * (min(below, above) + 1) / (len(d) + 1))
    return Interval(diff, float(low), float(high), float(p), float(d.std(ddof=1)), len(c), n_clusters, va.shape[1],
                    vb.shape[1])


def seed_weights(rng: np.random.Generator, seeds: int, n: int) -> np.ndarray:
    """(n, seeds): each resample's draw of `seeds` seeds with replacement, as weights summing to 1."""
    picks = rng.integers(0, seeds, (n, seeds))
    return np.eye(seeds)[picks].sum(1) / seeds


def seed_averaged(va: np.ndarray, vb: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """The earlier interval: seeds averaged per query, queries resampled (BCa). Too narrow: it is
    conditional on the trained models and treats a user's several queries as independent."""
    d = va.mean(1) - vb.mean(1)
    if np.all(d == d[0]):
        return float(d[0]), float(d[0])
    ci = stats.bootstrap((d,), np.mean, n_resamples=resamples, confidence_level=0.95, method="BCa",
                         random_state=np.random.default_rng(seed), batch=BOOTSTRAP_BATCH).confidence_interval
    return float(ci.low), float(ci.high)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given): a family of m comparisons keeps its
    familywise error below α when each adjusted p is compared with α."""
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    adjusted, running = np.empty(m), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted.tolist()


def verdict(interval: Interval, adjusted_p: float, direction: str, effect: float | None) -> str:
    """Reproduced / not reproduced / inconclusive (underpowered) for a claim "A − B is `direction`
    (`>`, `<`, or `=` within ±effect)" whose paper reports `effect` (absolute, on the claim's
    metric; None: not stated). A claimed difference is reproduced when the interval excludes 0 on
    its side and Holm's adjusted p < α; not reproduced when the interval rules out the paper's effect
    (or, with no stated effect, lies on the other side of 0); otherwise inconclusive — the interval
    holds both 0 and the paper's effect (underpowered: its half-width and the paper's effect said)."""
    half = (interval.high - interval.low) / 2
    power = f"underpowered: ±{half:.4f} half-width, MDE {interval.mde:.4f}"
    if direction == "=":
        if effect is None:
            raise ValueError("an equivalence claim needs its margin (effect)")
        if -effect <= interval.low and interval.high <= effect:
            return "reproduced"
        if interval.low > effect or interval.high < -effect:
            return "not reproduced"
        return f"inconclusive ({power}; margin ±{effect:.4f})"
    sign = 1 if direction == ">" else -1
    low, high = (interval.low, interval.high) if sign > 0 else (-interval.high, -interval.low)  # claim: Δ > 0
    if low > 0 and adjusted_p < ALPHA:
        return "reproduced"
    size = abs(effect) if effect is not None else None
    if (size is not None and high < size and low <= 0) or high < 0:
        return "not reproduced"
    paper = f"the paper's effect {sign * size:+.4f}" if size is not None else "the paper states no effect size"
    return f"inconclusive ({power}; {paper})"


def compare(a: list[pl.DataFrame], b: list[pl.DataFrame], metrics=METRICS, query: str = "test",
            resamples: int = RESAMPLES, seed: int = 0) -> list[dict]:
    """One dict per metric: means, A − B, its two-level interval (users as clusters and seeds both
    resampled), bootstrap p, MDE, the earlier seed-averaged interval, per-seed means of each group;
    `significant` = the interval excludes 0 (a table corrects its family with `holm`)."""
    out = []
    for m in metrics:
        users, _, values = aligned(a + b, query, column_of(m))
        va, vb = metric_values(values[:, :len(a)], m), metric_values(values[:, len(a):], m)  # (Q, seeds)
        iv = two_level(va, vb, users, resamples, seed)
        old = seed_averaged(va, vb, resamples, seed)
        row = {"metric": m, "query": query, "queries": iv.queries, "users": iv.clusters, "seeds_a": len(a),
               "seeds_b": len(b), "mean_a": float(va.mean()), "mean_b": float(vb.mean()), "diff": iv.diff,
               "ci_low": iv.low, "ci_high": iv.high, "p_value": iv.p_value, "se": iv.se, "mde": iv.mde,
               "seed_averaged_ci": list(old), "significant": iv.excludes_zero}
        for side, v in (("a", va), ("b", vb)):
            per_seed = v.mean(0)
            row[f"seed_means_{side}"] = per_seed.tolist()
            row[f"std_{side}"] = float(per_seed.std(ddof=1)) if len(per_seed) > 1 else None
        out.append(row)
    return out


def describe(row: dict, digits: int = 4) -> str:
    """'ndcg@10: 0.1051 vs 0.0855, Δ +0.0196 [+0.0120, +0.0271], p 3e-04 — significant'."""
    f = f"{{:.{digits}f}}"
    verdict_text = "significant" if row["significant"] else "no detectable difference"
    return (f"{row['metric']}: {f.format(row['mean_a'])} vs {f.format(row['mean_b'])}, Δ {row['diff']:+.{digits}f} "
            f"[{row['ci_low']:+.{digits}f}, {row['ci_high']:+.{digits}f}], p {row['p_value']:.2g}, "
            f"MDE {row['mde']:.{digits}f} — {verdict_text}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", help="RUN_A RUN_B (ranks.parquet files or folders holding one)")
    ap.add_argument("--a", nargs="+", help="group A: one run per seed")
    ap.add_argument("--b", nargs="+", help="group B: one run per seed")
    ap.add_argument("--query", default="test", help="valid | test | test_unmasked | test_sampled | cold_seq")
    ap.add_argument("--metrics", nargs="+", default=list(METRICS))
    ap.add_argument("--resamples", type=int, default=RESAMPLES)
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
    adjusted = holm([r["p_value"] for r in rows])
    print(f"A = {' '.join(a)}\nB = {' '.join(b)}\n{args.query}: {rows[0]['queries']} paired queries of "
          f"{rows[0]['users']} users, {len(a)} vs {len(b)} seed(s); 95 % two-level bootstrap (users as clusters × "
          f"seeds), Holm over the {len(rows)} metrics")
    for row, p in zip(rows, adjusted):
        row["significant"] = row["significant"] and p < ALPHA
        print("  " + describe(row) + f" (Holm p {p:.2g})")
        if row["std_a"] is not None or row["std_b"] is not None:
            print(f"    per seed: A {np.mean(row['seed_means_a']):.4f} ± {row['std_a'] or 0:.4f}, "
                  f"B {np.mean(row['seed_means_b']):.4f} ± {row['std_b'] or 0:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
