"""Benchmark: time per epoch and peak memory of every model on one dataset, one fresh process each.

    python -m bench.model_cost --dataset ml-100k --threads 1 --epochs 3

Prepares the data and the three feature tables once under --work (kept between runs), then for
each model spec starts a new Python process that builds the model from the cached tables, trains
`--epochs` epochs (early stopping off) and reports its training seconds per epoch, validation
seconds per epoch and its own peak RSS (VmHWM, bench.peak_rss_mb: interpreter + torch + tables + model +
activations; a fresh process, so nothing carries over from another model). `pretrain` measures
one MSM4SR pre-training epoch the same way. Each trained model's row also states its FLOPs per
epoch (torch's FlopCounterMode on one batch's forward + backward, times the batches), the float32
matmul rate of this machine at the step's shape on the same threads, and the ratio of the measured
epoch time to that FLOP time (issue 34: within 1.5x is the target for SASRec). Writes bench/results/model-cost-<dataset>.json (rows
of models not named this time are kept, so one model can be re-measured) and prints the Markdown
table for docs/benchmarks.md. `--profile DIR` also runs each model's epochs under torch.profiler
and writes DIR/<model>.txt: operators by self CPU time, once by name and once by name and input
shapes (which tensors the time goes to); profiled rows are printed, not saved.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from bench import answer, measure, peak_rss_mb
from pipeline import builder
from pipeline.cells import extract, parse_spec, prepare, with_settings
from pipeline.config import load_params
from pipeline.data import load_training_view
from pipeline.params import setup_logging
from pipeline.results import load_rows, save, table
from pipeline.tables import atomic_path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["pop", "sasrec", "gru4rec", "nextitnet", "mlpmixer", "m2sr", "msm4sr:pretrained=false", "mmsr",
           "automlp:short_lengths=[10]", "automlp", "pretrain"]


def profiled(fn, out: Path | None, label: str):
    """fn() under torch.profiler when `out` is set; its operator tables go to out/<label>.txt."""
    if out is None:
        return fn()
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        result = fn()
    out.mkdir(parents=True, exist_ok=True)
    by_name = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20)
    by_shape = prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=25,
                                                                   max_shapes_column_width=80)
    with atomic_path(out / f"{re.sub(r'[^A-Za-z0-9_.=-]+', '_', label)}.txt") as tmp:
        tmp.write_text(f"{label}: operators by self CPU time\n{by_name}\n\nby name and input shapes\n{by_shape}\n")
    return result


def step_flops(params: dict, work: Path) -> dict:
    """FLOPs of the selected model's training epoch, counted by torch's FlopCounterMode on one full
    batch (forward + backward of the model's own loss; matmuls, convolutions and attention — the
    arithmetic, not elementwise work) times the epoch's batches."""
    import math

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pipeline.config import PreprocessConfig, TrainConfig
    from pipeline.data import train_windows
    from pipeline.loop import Negatives
    from pipeline.params import from_dict

    name = params["model"]
    pre = from_dict(PreprocessConfig, params.get("preprocess"), "preprocess")
    cfg = from_dict(TrainConfig, params.get("train"), "train")
    view = load_training_view(work / "prepared")
    model, _ = builder.build_for_run(name, params["models"][name], view, pre.max_len, cfg.loss, work / "features",
                                     work / "prepared")
    x, y, users = train_windows(view.train, pre.max_len, cfg.window_stride or None)
    xb, yb, ub = (torch.as_tensor(a[:cfg.batch_size]) for a in (x, y, users))
    neg = Negatives(yb, view.num_items, cfg.negatives, torch.Generator().manual_seed(0))
    model.train()
    with FlopCounterMode(display=False) as counter:
        model.loss(xb, yb, neg, ub).backward()
    per_step = counter.get_total_flops()
    return {"flops_per_step": per_step, "steps_per_epoch": math.ceil(len(x) / cfg.batch_size),
            "flops_per_epoch": per_step * math.ceil(len(x) / cfg.batch_size)}


def sgemm_rate(threads: int, m: int = 6400, k: int = 64, n: int = 2048, repeats: int = 20) -> float:
    """FLOP/s of one float32 matmul of the training step's typical shape (positions x hidden times
    hidden x items) on `threads` threads: the rate the FLOP time is stated at."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(m, k), torch.randn(k, n)
    a @ b  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * m * k * n * repeats / (time.perf_counter() - t0)


def child(spec: str, params: dict, work: Path, epochs: int, profile_dir: Path | None = None) -> dict:
    """Runs inside the fresh process."""
    if spec == "pretrain":
        from pipeline.pretrain import pretrain

        p = params | {"pretrain": params["pretrain"] | {"epochs": 1}}
        info = pretrain(p, work / "prepared", work / "features", work / "pretrain-cost")
        out = {"train_s_per_epoch": info["s_per_epoch"], "eval_s_per_epoch": 0.0, "epochs": 1}
    else:
        from pipeline.train import train

        name, over = parse_spec(spec)
        models = params["models"] | {name: (params["models"].get(name) or {}) | over}
        if builder.traits(name).procedure == "search_then_fit":  # the search's epochs too, measured per epoch
            models[name] = models[name] | {"search_epochs": epochs}
        p = params | {"model": name, "models": models,
                      "train": params["train"] | {"epochs": epochs, "patience": epochs + 1}}
        t0 = time.perf_counter()
        info = profiled(lambda: train(p, work / "prepared", work / "cost-run", work / "features",
                                      work / "pretrain-cost"), profile_dir, spec)
        out = {"train_s_per_epoch": info["train_s_per_epoch"], "eval_s_per_epoch": info["eval_s_per_epoch"],
               "epochs": info["epochs_run"], "parameters": info["parameters"], "wall_s": time.perf_counter() - t0}
        if name != "pop":  # the arithmetic the epoch had to do, and how far the measured time is from it
            flops = step_flops(p, work)
            rate = sgemm_rate(int(p["train"].get("threads") or 1))
            out |= flops | {"sgemm_flop_per_s": rate, "flop_time_s": flops["flops_per_epoch"] / rate,
                            "time_over_flop_time": info["train_s_per_epoch"] / (flops["flops_per_epoch"] / rate)}
        if "search_s" in info:
            out["search_s_per_epoch"] = info["search_s"] / epochs
    return out | {"peak_rss_mb": peak_rss_mb()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--models", nargs="+", default=DEFAULT)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default=str(ROOT / "bench" / ".work"))
    ap.add_argument("--set", nargs="*", default=[])
    ap.add_argument("--profile", metavar="DIR", help="also write each model's torch.profiler operator tables "
                    "to DIR/<model>.txt (profiling slows the run: its times are printed, not saved; it keeps every "
                    "operator's record, so memory grows with the steps: one epoch of fine-grained MMSR took ~10 GB)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--report", metavar="JSON", help="only print the table of this result file")
    args = ap.parse_args()
    if args.report:
        return print_table(load_rows(args.report))
    setup_logging()
    params = with_settings(load_params(ROOT / "params.yaml"), args.set + [
        f"train.threads={args.threads}", f"pretrain.threads={args.threads}", f"features.threads={args.threads}"])
    params |= {"dataset": args.dataset}
    work = Path(args.work) / args.dataset
    if args.child:
        answer((child(args.child, params, work, args.epochs,
                                           Path(args.profile) if args.profile else None)))
        return
    if not (work / "features" / "keywords").is_dir():
        prepare(params, work)
        extract(params, work)
    items = load_training_view(work / "prepared").num_items  # which data the rows ran on (bench/stale_rows.py)
    out_file = ROOT / "bench" / "results" / f"model-cost-{args.dataset}.json"
    rows = [r for r in (json.loads(out_file.read_text())["rows"] if out_file.is_file() else [])
            if r["model"] not in args.models]  # earlier rows for other models stay; re-measured ones are replaced
    for spec in args.models:
        cmd = [sys.executable, "-m", "bench.model_cost", "--dataset", args.dataset, "--epochs", str(args.epochs), "--threads",
               str(args.threads), "--work", args.work, "--child", spec, "--set", *args.set,
               *(["--profile", args.profile] if args.profile else [])]
        rows.append({"model": spec, **measure(*cmd[2:])})
        if not args.profile:  # profiled times are slower: they never replace a measured row
            save(out_file, rows, dataset=args.dataset, epochs=args.epochs, threads=args.threads,
                 stats={"items": items})
        print(f"{spec}: {rows[-1]}", flush=True)
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    print(table(["model", "parameters", "train s/epoch", "GFLOP/epoch", "FLOP time (s)", "time / FLOP time",
                 "eval s/epoch", "peak RSS (MB)"],
                [[r["model"], r.get("parameters", "—"), f"{r['train_s_per_epoch']:.1f}"
                  + (f" (+ search {r['search_s_per_epoch']:.1f})" if "search_s_per_epoch" in r else ""),
                  f"{r['flops_per_epoch'] / 1e9:.0f}" if "flops_per_epoch" in r else "—",
                  f"{r['flop_time_s']:.1f}" if "flop_time_s" in r else "—",
                  f"{r['time_over_flop_time']:.2f}" if "time_over_flop_time" in r else "—",
                  f"{r['eval_s_per_epoch']:.2f}", f"{r['peak_rss_mb']:.0f}"] for r in rows]))


if __name__ == "__main__":
    main()
