"""Deterministic synthetic data for the scaling benchmarks.

* `vectors` — user and item embedding matrices for evaluation scaling.
* `interactions` — a Zipf-popular interaction log (user, item, timestamp) for preprocessing and
  training scaling, generated in vectorised chunks so 10M rows fit in memory comfortably.
* `write_inter` — the log as a RecBole `.inter` file, the format our ingest reads.
* `write_inter_chunked` — the same for logs too large to build at once (100M rows), in chunks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl


def vectors(n_users: int, n_items: int, dim: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n_users, dim) and (n_items, dim) float32 Gaussian vectors, item norms varied so rankings differ."""
    rng = np.random.default_rng(seed)
    users = rng.standard_normal((n_users, dim), dtype=np.float32)
    items = rng.standard_normal((n_items, dim), dtype=np.float32)
    items *= rng.uniform(0.5, 1.5, (n_items, 1)).astype(np.float32)
    return users, items


def interactions(n_users: int, n_items: int, n_interactions: int, seed: int = 0, zipf: float = 0.8) -> pl.DataFrame:
    """Interaction log with Zipf item popularity, every user active, timestamps increasing per user.

    Columns: user (int64, 0..n_users-1), item (int64, 0..n_items-1), timestamp (int64 seconds).
    """
    rng = np.random.default_rng(seed)
    # users: every user gets at least one event, the rest spread log-normally
    weights = rng.lognormal(0.0, 1.0, n_users)
    extra = rng.multinomial(n_interactions - n_users, weights / weights.sum())
    counts = extra + 1
    user = np.repeat(np.arange(n_users, dtype=np.int64), counts)
    p = (1.0 + np.arange(n_items)) ** -zipf
    cdf = np.cumsum(p / p.sum())
    perm = rng.permutation(n_items)  # popularity is not tied to the id
    item = perm[np.minimum(np.searchsorted(cdf, rng.random(n_interactions)), n_items - 1)]
    gaps = rng.exponential(3600.0, n_interactions).astype(np.int64) + 1
    start = np.repeat(rng.integers(1_500_000_000, 1_600_000_000, n_users), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    csum = np.cumsum(gaps)
    ts = start + csum - np.repeat(csum[np.cumsum(counts) - counts], counts) + gaps[first]
    return pl.DataFrame({"user": user, "item": item, "timestamp": ts})


def write_inter(df: pl.DataFrame, folder: Path, name: str) -> Path:
    """Write `df` (user, item, timestamp) as `<folder>/<name>.inter` with RecBole's typed header."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.inter"
    df.select(
        pl.format("u{}", "user").alias("user_id:token"), pl.format("i{}", "item").alias("item_id:token"),
        pl.col("timestamp").alias("timestamp:float"),
    ).write_csv(path, separator="\t", quote_style="never")
    return path


def write_inter_chunked(n_users: int, n_items: int, n_interactions: int, folder: Path, name: str,
                        chunk: int = 10_000_000, seed: int = 0) -> Path:
    """A log of `n_interactions` written in chunks of at most `chunk` rows over disjoint users (chunk c
    draws with seed + c and its own share of the users, all items), appended to one `.inter` file, so
    a 100M-row log never sits in memory. With one chunk it is exactly `write_inter(interactions(...))`."""
    parts = max(1, -(-n_interactions // chunk))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.inter"
    with open(path, "wb") as f:
        for c in range(parts):
            users = n_users // parts + (n_users % parts if c == parts - 1 else 0)
            rows = n_interactions // parts + (n_interactions % parts if c == parts - 1 else 0)
            df = interactions(users, n_items, rows, seed=seed + c).with_columns(pl.col("user") + c * (n_users // parts))
            df.select(
                pl.format("u{}", "user").alias("user_id:token"), pl.format("i{}", "item").alias("item_id:token"),
                pl.col("timestamp").alias("timestamp:float"),
            ).write_csv(f, separator="\t", quote_style="never", include_header=c == 0)
    return path
