"""Benchmark: SASRec training cost on large synthetic catalogues, full softmax vs sampled losses.

    python -m bench.train_scale                       # default grid
    python -m bench.train_scale --grid 100000:1000000:ce

Threads: $BENCH_THREADS for torch (default 2).
Each point "ITEMS:INTERACTIONS:LOSS[:full]" runs in a fresh subprocess: a Zipf-popular log
(`bench/synthetic.py`, 20 interactions per user on average) is cut into training windows exactly as
the trainer does, then SASRec (hidden 64, 2 layers, batch 128 × 50 positions) is trained: with
`:full`, one real epoch over every window is timed; otherwise `--steps` optimiser steps (after 2
warm-up steps) are timed and time per epoch = median step time × steps per epoch (an
extrapolation, marked as such). Peak RSS is the subprocess's. A point whose full-softmax logits
would not fit in memory is reported as skipped with the size it would need. The interaction sweep
at fixed items gives the growth exponent (least-squares slope in log-log). Losses: `ce` (full
softmax), `ce_chunked` (the same loss over item blocks, no logit matrix: `train.loss: ce_chunked`), `bce` (one uniform negative per position), `sampled_softmax` (SHARED_NEGATIVES items
shared by the batch, drawn ∝ popularity, logQ-corrected: `train.loss: sampled_softmax`,
`train.negatives_by: popularity`); a `+sparse` suffix (e.g. `sampled_softmax+sparse`) reads the
scored rows by embedding lookup and updates the embedding tables with SparseAdam
(`train.sparse_embeddings: true`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

from bench import answer, measure, peak_rss_mb
from pipeline.results import load_rows, save, table

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["100000:1000000:ce", "100000:1000000:bce", "1000000:1000000:ce", "1000000:1000000:bce",
           "100000:250000:bce:full", "100000:500000:bce:full", "100000:1000000:bce:full", "100000:2000000:bce:full",
           "100000:4000000:bce:full"]
BATCH, MAX_LEN, HIDDEN = 128, 50, 64
MEMORY_BUDGET_GB = 16.0  # leave room on a 24 GiB machine
SHARED_NEGATIVES = 1024


def logits_gb(n_items: int) -> float:
    # logits + their gradient (+ softmax workspace) for every position of a batch, float32
    return 3 * BATCH * MAX_LEN * (n_items + 1) * 4 / 2**30


def one(n_items: int, n_inter: int, loss: str, steps: int, full: bool) -> dict:
    import numpy as np
    import polars as pl
    import torch

    from bench.synthetic import interactions
    from models.common import sequence_loss
    from models.contract import ModelInputs
    from pipeline import builder
    from pipeline.config import TrainConfig
    from pipeline.data import Sequences, train_windows
    from pipeline.trainer import make_optimizers

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    torch.manual_seed(0)
    df = interactions(max(n_inter // 20, 1), n_items, n_inter, seed=0).sort(["user", "timestamp"])
    table = df.group_by("user", maintain_order=True).agg((pl.col("item") + 1).alias("item_ids"))
    seq = Sequences.from_table(table.rename({"user": "user_id"}), n_items)  # item ids 1..N, 0 = padding
    x, y, _ = train_windows(seq, MAX_LEN)
    model = builder.build("sasrec", {"hidden": HIDDEN, "layers": 2, "heads": 2, "inner": 256, "dropout": 0.2},
                          ModelInputs(n_items, max_len=MAX_LEN))

    loss, sparse = loss.removesuffix("+sparse"), loss.endswith("+sparse")
    opts = make_optimizers(model, None, list(model.parameters()), TrainConfig(loss=loss, sparse_embeddings=sparse))
    xs, ys = torch.as_tensor(x), torch.as_tensor(y)
    times = []
    order = torch.randperm(len(xs))
    q = torch.as_tensor(seq.counts(), dtype=torch.float64)
    q[0] = 0.0
    q /= q.sum()
    log_q = q.clamp_min(1e-30).log().float()
    n_steps = math.ceil(len(xs) / BATCH) + 2 if full else steps + 2
    t_epoch = time.perf_counter()
    for step in range(n_steps):
        idx = order[(step * BATCH) % len(xs):][:BATCH] if full else torch.randint(0, len(xs), (BATCH,))
        if step == 2:
            t_epoch = time.perf_counter()
        t = time.perf_counter()
        neg = (torch.randint(1, n_items + 1, (len(idx), MAX_LEN, 1)) if loss == "bce" else
               torch.multinomial(q, SHARED_NEGATIVES, replacement=True) if loss == "sampled_softmax" else None)
        value = sequence_loss(model.encode(xs[idx]), ys[idx], model.item_rows if sparse else model.item_vectors(),
                              loss, neg, log_q if loss == "sampled_softmax" else None)
        for opt in opts:
            opt.zero_grad()
        value.backward()
        for opt in opts:
            opt.step()
        if step >= 2:
            times.append(time.perf_counter() - t)
    per_step = float(np.median(times))
    steps_per_epoch = math.ceil(len(xs) / BATCH)
    epoch_s = time.perf_counter() - t_epoch if full else per_step * steps_per_epoch
    return {"items": n_items, "interactions": n_inter, "loss": loss + ("+sparse" if sparse else ""), "windows": len(xs),
            "full_epoch": full,
            "s_per_step": per_step, "steps_per_epoch": steps_per_epoch, "s_per_epoch": epoch_s,
            "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", nargs="+", default=DEFAULT)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "train-scale.json"))
    ap.add_argument("--report", metavar="JSON", help="only print the table of this result file")
    args = ap.parse_args()
    if args.report:
        return print_table(load_rows(args.report))
    if args.one:
        items, inter, loss, *full = args.one.split(":")
        answer(one(int(items), int(inter), loss, args.steps, full == ["full"]))
        return
    rows = []
    for point in args.grid:
        items, inter, loss, *_ = point.split(":")
        if loss == "ce" and logits_gb(int(items)) > MEMORY_BUDGET_GB:
            rows.append({"items": int(items), "interactions": int(inter), "loss": loss, "skipped":
                         f"full softmax needs ~{logits_gb(int(items)):.0f} GB for a batch of {BATCH}x{MAX_LEN} "
                         f"positions (> {MEMORY_BUDGET_GB:.0f} GB budget): use train.loss=ce_chunked (the same loss, "
                         "blockwise) or a sampled loss"})
        else:
            rows.append(measure("bench.train_scale", "--one", point, "--steps", args.steps))
        print(json.dumps(rows[-1]), flush=True)
        save(args.out, rows)
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    print("\n" + table(
        ["items", "interactions", "loss", "s/step", "steps/epoch", "s/epoch", "peak RSS MB"],
        [[f"{r['items']:,}", f"{r['interactions']:,}", r["loss"], "—", "—", f"skipped: {r['skipped']}", "—"]
         if "skipped" in r else
         [f"{r['items']:,}", f"{r['interactions']:,}", r["loss"], f"{r['s_per_step']:.3f}", r["steps_per_epoch"],
          f"{r['s_per_epoch']:.1f}" + ("" if r["full_epoch"] else " (extrapolated)"), f"{r['peak_rss_mb']:.0f}"]
         for r in rows]))
    sweep = [r for r in rows if r.get("full_epoch") and r["items"] == 100000 and r["loss"] == "bce"]
    if len(sweep) >= 3:
        import numpy as np

        slope = np.polyfit(np.log([r["interactions"] for r in sweep]),
                           np.log([r["s_per_epoch"] for r in sweep]), 1)[0]
        print(f"\nmeasured epoch time ~ interactions^{slope:.2f} (100k items, bce, {len(sweep)} full epochs)")


if __name__ == "__main__":
    main()
