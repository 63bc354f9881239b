"""Benchmark: MSM4SR pre-training throughput, one Transformer pass per (prefix, next item) pair vs
every prefix of a window in one causal pass (`pretrain.one_pass_windows`), same machine, one run.

    python -m bench.pretrain_throughput --work bench/.work/ml-100k --threads 1 --seconds 60
    python -m bench.pretrain_throughput --report bench/results/pretrain-throughput.json

Uses the prepared data and feature tables under --work (as bench/model_cost.py leaves them) and
params.yaml's models.msm4sr and pretrain sections. Each mode trains for about --seconds seconds of
optimizer steps (after 2 warm-up steps) from the same initial weights and reports pairs visited
per second, steps per second and the mean loss of its steps. "pairs" are training
(prefix, next item) examples: a per-pair step visits `pretrain.batch_size` of them; a one-pass
step visits every target in `--windows` windows, in contrastive groups of `pretrain.batch_size`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pipeline.results import load_rows, save, table

ROOT = Path(__file__).resolve().parents[1]

def measure(mode: str, params: dict, work: Path, windows: int, seconds: float) -> dict:
    import torch

    from pipeline import builder
    from pipeline.config import PreprocessConfig, PretrainConfig
    from pipeline.data import load_training_view
    from pipeline.loop import Loop
    from pipeline.params import from_dict
    from pipeline.pretrain import (
        pretrain_pairs,
        pretrain_windows,
        pretrained_parameters,
    )

    cfg = from_dict(PretrainConfig, params.get("pretrain"), "pretrain")
    pre = from_dict(PreprocessConfig, params.get("preprocess"), "preprocess")
    view = load_training_view(work / "prepared")
    loop = Loop(seed=cfg.seed, threads=1, device="cpu", batch_size=windows if mode == "one_pass" else cfg.batch_size,
                num_items=view.num_items, where="pretrain")
    model, _ = builder.build_for_run("msm4sr", params["models"]["msm4sr"], view, pre.max_len, "ce", work / "features",
                                     work / "prepared")
    model.train()
    x, y, _ = (pretrain_windows if mode == "one_pass" else pretrain_pairs)(view, pre.max_len)
    opt = torch.optim.Adam(pretrained_parameters(model), lr=cfg.lr)
    pairs = steps = 0
    losses, t0 = [], None
    while True:
        for idx in loop.batches(len(x), mode):
            if mode == "one_pass":
                out = model.pretrain_loss_windows(x[idx], y[idx], loop.gen, cfg.batch_size)
                visited = int((y[idx] > 0).sum())
            else:
                out = model.pretrain_loss(x[idx], y[idx], loop.gen)
                visited = len(idx)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            opt.step()
            steps += 1
            if steps == 2:  # warm-up done: start the clock
                t0, pairs, losses = time.perf_counter(), 0, []
            elif steps > 2:
                pairs += visited
                losses.append(float(out["loss"].detach()))
            if t0 is not None and time.perf_counter() - t0 >= seconds:
                wall = time.perf_counter() - t0
                return {"mode": mode, "pairs_per_s": pairs / wall, "steps_per_s": (steps - 2) / wall,
                        "pairs_per_step": pairs / max(steps - 2, 1), "seconds": wall, "steps": steps - 2,
                        "mean_loss": sum(losses) / max(len(losses), 1), "training_pairs": int((y > 0).sum()),
                        "windows_per_step": windows if mode == "one_pass" else None}


def print_table(rows: list[dict]) -> None:
    base = next((r for r in rows if r["mode"] == "per_pair"), None)
    print(table(["mode", "pairs per step", "steps/s", "pairs/s", "vs per-pair", "timed s", "mean loss"],
                [[r["mode"] + (f" ({r['windows_per_step']} windows)" if r["windows_per_step"] else ""),
                  f"{r['pairs_per_step']:.0f}", f"{r['steps_per_s']:.2f}", f"{r['pairs_per_s']:.0f}",
                  f"{r['pairs_per_s'] / base['pairs_per_s']:.1f}×" if base else "—", f"{r['seconds']:.0f}",
                  f"{r['mean_loss']:.3f}"] for r in rows]))


PAPER_EPOCHS = 300  # MSM4SR §IV-B: 300 pre-training epochs over every (prefix, next item) pair


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=str(ROOT / "bench" / ".work" / "ml-100k"), help="folder with prepared/, features/")
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--windows", type=int, nargs="+", default=[16, 64], help="windows per one-pass step")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "pretrain-throughput.json"))
    ap.add_argument("--report", metavar="JSON", help="only print the table from this file")
    args = ap.parse_args()
    if args.report:
        return print_table(load_rows(args.report))
    import torch

    from pipeline.params import load_params, setup_logging

    setup_logging()
    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    rows = [measure("per_pair", params, Path(args.work), 0, args.seconds)]
    for w in args.windows:
        rows.append(measure("one_pass", params, Path(args.work), w, args.seconds))
    save(args.out, rows, threads=args.threads, work=str(args.work))
    print_table(rows)


if __name__ == "__main__":
    main()
