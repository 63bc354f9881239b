"""`fit`: train one model on the training view, early-stopped on validation (the procedure most models use).

The training knows nothing about model kinds. A model owns its loss — `model.loss(inputs, targets,
negatives, users)` (RecBole's `calculate_loss` shape) — and may give its optimizer groups
(`param_groups`, read through pipeline.builder); a model with no trainable parameters is already
fitted by its constructor (popularity's counts) and is only validated. The epoch loop itself —
batches, negatives, bf16, DDP, resumable state, early stopping — is pipeline.loop's.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from pipeline import builder, distributed
from pipeline.config import ProtocolConfig, TrainConfig
from pipeline.data import TrainView, train_windows
from pipeline.device import to_device, use_bf16
from pipeline.evaluation import evaluate_queries
from pipeline.loop import (
    Batch,
    EarlyStopping,
    Epoch,
    Loop,
    LossModule,
    RowsOf,
    Step,
    resume_key,
    run_epochs,
)
from pipeline.params import ConfigError

log = logging.getLogger(__name__)


def training_loop(cfg: TrainConfig, num_items: int) -> Loop:
    return Loop(seed=cfg.seed, threads=cfg.threads, device=cfg.device, batch_size=cfg.batch_size, num_items=num_items,
                negatives=cfg.negatives)


def make_optimizers(model: nn.Module, groups, trainable: list, cfg: TrainConfig) -> list:
    """Adam over the trainable parameters (or the model's own groups); with `sparse_embeddings`,
    every embedding table takes sparse gradients and its own SparseAdam (rows a step does not
    touch are not updated: the point at a million items)."""
    if not cfg.sparse_embeddings:
        return [torch.optim.Adam(groups if groups is not None else trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)]
    if groups is not None or cfg.weight_decay:
        raise ConfigError("train.sparse_embeddings: not with per-part learning rates (this model's param_groups) or "
                          "weight_decay (SparseAdam has none); set sparse_embeddings: false")
    tables = [m for m in model.modules() if isinstance(m, nn.Embedding) and m.weight.requires_grad]
    for m in tables:
        m.sparse = True
    sparse = {id(m.weight) for m in tables}
    dense = [p for p in trainable if id(p) not in sparse]
    return ([torch.optim.Adam(dense, lr=cfg.lr)] if dense else []) + \
        [torch.optim.SparseAdam([m.weight for m in tables], lr=cfg.lr)]


def fit(model: nn.Module, view: TrainView, cfg: TrainConfig, protocol: ProtocolConfig, max_len: int,
        on_epoch: Callable[[dict], None] | None = None, state_path: Path | None = None) -> dict:
    """Train `model` in place on the training view (ending on its best validation state) and return
    the run summary.

    With `state_path`, the full training state (model, optimizer, RNGs, early-stopping state,
    history) is written atomically after every epoch; a later call with the same settings resumes
    after the last completed epoch and ends exactly where an uninterrupted run would. The file is
    removed by the caller (`loop.finished`) once the outputs are written.
    """
    loop = training_loop(cfg, view.num_items)
    device = loop.device
    bf16 = use_bf16(cfg.precision, device)
    model.to(device)
    valid = view.valid_queries(max_len)
    key = f"valid/{protocol.select_metric}"
    t0 = time.perf_counter()
    groups = builder.param_groups(model, cfg.lr)
    trainable = [p for p in model.parameters() if p.requires_grad]

    def validate(epoch: int, step: int, loss: float, train_s: float) -> dict:
        tv = time.perf_counter()
        metrics = evaluate_queries(model, valid, protocol, device).metrics
        row = {"epoch": epoch, "step": step, "loss": loss, "train_s": train_s, "eval_s": time.perf_counter() - tv,
               **{f"valid/{k}": v for k, v in metrics.items()}}
        if on_epoch and distributed.rank() == 0:
            on_epoch(row)
        return row

    if not trainable:  # statistics only (popularity): nothing to optimise, one validation
        row = validate(1, 0, float("nan"), time.perf_counter() - t0)
        return {"history": [row], "best_epoch": 1, "best": row[key], "seconds": time.perf_counter() - t0,
                "device": str(device), "windows": 0, "resumed_after": []}

    inputs, targets, users = train_windows(view.train, max_len, stride=cfg.window_stride or max_len)
    if not (targets > 0).any():
        raise ConfigError("no training targets: every user has fewer than 4 interactions after preprocessing "
                          "(2 are held out); lower preprocess.user_core or use a larger data set")
    x_all, y_all, u_all = torch.as_tensor(inputs), torch.as_tensor(targets), torch.as_tensor(users)
    loop.sample_by(cfg.negatives_by, view.train.counts() if cfg.negatives_by == "popularity" else None)
    optimizers = make_optimizers(model, groups, trainable, cfg)

    def step(batch: Batch, forward) -> Step:
        idx, negatives, weight = batch.idx, loop.negatives(y_all[batch.idx]), 1.0
        if batch.rows is not None:  # rows rank, rank + world, ... of the global batch; the same draws on every rank
            negatives, n_all = RowsOf(negatives, batch.rows), int((y_all[idx] > 0).sum())
            idx = idx[batch.rows]
            weight = int((y_all[idx] > 0).sum()) / max(n_all, 1)  # this rank's share of the batch's targets
        x, y = to_device(x_all[idx], device), to_device(y_all[idx], device)
        return Step(forward(x, y, negatives, to_device(u_all[idx], device)), weight=weight)

    def finish(e: Epoch) -> dict:
        return validate(e.number, e.steps, e.means["loss"], e.seconds)

    progress = run_epochs(
        loop, model, optimizers, step, len(x_all), cfg.epochs, finish, name="training", desc="epoch",
        state_path=state_path, state_key=resume_key(model, cfg, windows=len(x_all), items=view.num_items),
        stopper=EarlyStopping(cfg.patience, cfg.patience_steps, cfg.patience_frac), select=key, bf16=bf16, loss_module=LossModule(model),
        log_row=lambda r: f"epoch {r['epoch']} loss {r['loss']:.4f} {key} {r[key]:.4f} (train {r['train_s']:.1f}s, "
                          f"eval {r['eval_s']:.1f}s)")
    stop = progress["stopper"]
    return {"history": progress["history"], "best_epoch": stop["best_epoch"], "best": stop["best"],
            "resumed_after": progress["resumed_after"], "seconds": time.perf_counter() - t0, "device": str(device),
            "windows": len(x_all), "precision": "bf16" if bf16 else "fp32"}
