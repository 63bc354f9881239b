"""One training loop for every registered model: batches of windows, early stopping on validation.

The loop knows nothing about model kinds. A model owns its loss — `model.loss(inputs, targets,
negatives, users)` (RecBole's `calculate_loss` shape) — and may declare one hook, `prepare(train, lr)`,
called once before the first step with the training view: it may compute statistics from the
training interactions (popularity's counts) and may return its optimizer parameter groups (MMSR's
per-part learning rates). A model with no trainable parameters is fitted by `prepare` alone.

`Loop` is what every training procedure here shares (this loop, AutoMLP's search, MSM4SR's
pre-training): seeding, threads and device, shuffled mini-batches, negative sampling, and the
per-epoch resumable state.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from models.common import LOSSES
from pipeline import distributed
from pipeline.checkpoint import save_tensors
from pipeline.data import TrainView, train_windows
from pipeline.device import PRECISIONS, cpu_threads, resolve_device, to_device, use_bf16  # noqa: F401
from pipeline.evaluation import ProtocolConfig, evaluate_queries
from pipeline.params import ConfigError
from pipeline.progress import progress

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 200  # upper bound; early stopping usually ends sooner
    batch_size: int = 128  # windows per step
    lr: float = 1e-3  # Adam
    weight_decay: float = 0.0
    loss: str = "ce"  # ce: full softmax over all items | bce: sampled negatives (a model's own `loss` wins)
    negatives: int = 1  # negatives per position for bce / bpr; negatives shared by the batch for sampled_softmax
    negatives_by: str = "uniform"  # uniform | popularity (∝ training counts; sampled_softmax subtracts log q)
    patience: int = 10  # stop after this many validations (epochs) without improvement ...
    patience_steps: int = 0  # ... or, when > 0, once the best validation is this many optimizer steps old
    window_stride: int = 0  # 0 = max_len (disjoint windows); smaller: overlapping windows, more context per target
    device: str = "auto"  # auto: cuda when present, else cpu
    sparse_embeddings: bool = False  # embedding tables take sparse gradients + SparseAdam (with a sampled loss)
    precision: str = "auto"  # auto: bf16 autocast on a CUDA device that has it, else fp32 | fp32 | bf16
    threads: int = 0  # CPU threads for torch; 0 = the cores / the pipeline processes running now
    seed: int = 42
    nproc: int = 1  # DDP processes on this node (pipeline.train relaunches itself under torch.distributed.run)
    init_from: str | None = None  # transfer: a source run's model.pt (or its folder); see pipeline.train.transfer

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"train.loss={self.loss!r}: use one of {LOSSES}")
        if self.negatives_by not in ("uniform", "popularity"):
            raise ConfigError(f"train.negatives_by={self.negatives_by!r}: use 'uniform' or 'popularity'")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"train.precision={self.precision!r}: use one of {PRECISIONS}")
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1 or self.patience_steps < 0 or self.nproc < 1:
            raise ConfigError("train.epochs, train.batch_size, train.patience and train.nproc must be >= 1, "
                              "train.patience_steps >= 0")

    def stop(self, stale_epochs: int, stale_steps: int) -> bool:
        """Early stopping: patience in optimizer steps when `patience_steps` is set, else in epochs."""
        return stale_steps >= self.patience_steps if self.patience_steps else stale_epochs >= self.patience


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Negatives:
    """Negative item ids for one batch's targets, drawn from the loop's generator on first call and
    the same on every later call. A loss that needs none never calls it, so its random stream is
    untouched. Per target (*targets.shape, per_target) ids, or with `shared` (sampled softmax)
    per_target ids for the whole batch; uniform over the items, or from `proposal` (N+1,)
    probabilities — then `log_q` (their logs, on the device) is handed to the loss's correction."""

    def __init__(self, targets: torch.Tensor, num_items: int, per_target: int, generator: torch.Generator,
                 device: torch.device | None = None, shared: bool = False, proposal: torch.Tensor | None = None,
                 log_q: torch.Tensor | None = None):
        self.shape = (per_target,) if shared else (*targets.shape, per_target)
        self.num_items, self.gen, self.shared, self.proposal = num_items, generator, shared, proposal
        self.device, self._drawn, self.log_q = device or targets.device, None, log_q

    def __call__(self) -> torch.Tensor:
        if self._drawn is None:
            if self.proposal is None:
                drawn = torch.randint(1, self.num_items + 1, self.shape, generator=self.gen)
            else:
                drawn = torch.multinomial(self.proposal, int(np.prod(self.shape)), replacement=True,
                                          generator=self.gen).view(self.shape)
            self._drawn = drawn.to(self.device)
        return self._drawn


class Loop:
    """Seeding, threads, device, shuffled batches, negatives and resumable state for one training run."""

    def __init__(self, *, seed: int, threads: int, device: str, batch_size: int, num_items: int,
                 negatives: int = 1, where: str = "train"):
        seed_everything(seed)
        self.threads, self.where = threads, f"{where}.threads"
        torch.set_num_threads(cpu_threads(threads, self.where))
        self.device = resolve_device(device, f"{where}.device")
        self.batch_size, self.num_items, self.per_target = batch_size, num_items, negatives
        self.gen = torch.Generator().manual_seed(seed)
        self.shared, self.proposal, self.log_q = False, None, None  # sampled softmax: one set per batch;
        # popularity proposal and its log (computed once per run, not per batch)

    def sample_like(self, loss: str, by: str, counts: np.ndarray | None) -> None:
        """How `negatives` draws: shared by the batch for `loss` sampled_softmax; ∝ `counts` (the
        training view's item counts, (N+1,)) when `by` is popularity."""
        self.shared = loss == "sampled_softmax"
        if by == "popularity":
            c = torch.as_tensor(counts, dtype=torch.float64)
            c[0] = 0.0
            self.proposal = c / c.sum()
            self.log_q = self.proposal.clamp_min(1e-30).log().to(self.device)

    @classmethod
    def for_training(cls, cfg: TrainConfig, num_items: int) -> "Loop":
        return cls(seed=cfg.seed, threads=cfg.threads, device=cfg.device, batch_size=cfg.batch_size,
                   num_items=num_items, negatives=cfg.negatives)

    def batches(self, n: int, desc: str, limit: int = 0) -> Iterator[torch.Tensor]:
        """Index tensors of one epoch: a fresh permutation of range(n) (its first `limit` if > 0) in batches.
        (With `threads: 0` the share of the cores is looked at again: runs may have started or ended.)"""
        if not self.threads:
            torch.set_num_threads(cpu_threads(0, self.where))
        perm = torch.randperm(n, generator=self.gen)
        if limit:
            perm = perm[:limit]
        for s in progress(range(0, len(perm), self.batch_size), desc=desc, unit="batch", leave=False, mininterval=2.0,
                      disable=None):
            yield perm[s:s + self.batch_size]

    def negatives(self, targets: torch.Tensor) -> Negatives:
        return Negatives(targets, self.num_items, self.per_target, self.gen, self.device, self.shared, self.proposal,
                         self.log_q)

    # ------------------------------------------------------------------ resumable state
    def resume(self, path: Path | None, key: str, model: nn.Module, optimizers: list) -> dict | None:
        """Restore a state saved by `save` with the same `key`; returns its `progress` dict (None: start fresh)."""
        if path is None or not path.is_file():
            return None
        try:
            saved = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as e:  # noqa: BLE001 - truncated, corrupt or pickled files raise several types
            # (torch's own message may invite weights_only=False, i.e. unpickling code: not repeated)
            log.warning("ignoring %s: not a readable resume state (%s: truncated, corrupt, or not tensors only); "
                        "starting over", path, type(e).__name__)
            return None
        if not isinstance(saved, dict) or saved.get("key") != key:
            log.warning("ignoring %s: it was saved by a run with other settings; starting over", path)
            return None
        model.load_state_dict(saved["model"])
        for opt, state in zip(optimizers, saved["optimizers"]):
            opt.load_state_dict(state)
        self.gen.set_state(saved["gen"])
        torch.set_rng_state(saved["torch_rng"])
        return saved["progress"]

    def save(self, path: Path | None, key: str, epoch: int, model: nn.Module, optimizers: list, progress: dict) -> None:
        """Write the whole state atomically after an epoch (`MMREC_KILL_AFTER_EPOCHS=n` SIGKILLs the
        process once epoch n is saved: the interruption tests). In a distributed run rank 0 writes it."""
        if path is None or not distributed.is_main():
            return
        state = {"key": key, "model": model.state_dict(), "optimizers": [o.state_dict() for o in optimizers],
                 "gen": self.gen.get_state(), "torch_rng": torch.get_rng_state(), "progress": progress}
        save_tensors(state, path)
        kill_after = int(os.environ.get("MMREC_KILL_AFTER_EPOCHS", "0") or 0)
        if kill_after and epoch >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)


class _Loss(nn.Module):
    """`model.loss` as a forward pass, so DistributedDataParallel can wrap it (DDP syncs gradients
    of what its forward computes)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs, targets, negatives, users):
        return self.model.loss(inputs, targets, negatives, users)


class _RowsOf:
    """This rank's rows of the global batch's negatives: every rank draws the whole batch's (the
    same numbers one process draws), so the shared generator never diverges between ranks.
    Negatives shared by the batch (sampled softmax) are every rank's."""

    def __init__(self, negatives: Negatives, rows: slice):
        self.negatives, self.rows, self.log_q = negatives, rows, negatives.log_q

    def __call__(self) -> torch.Tensor:
        drawn = self.negatives()
        return drawn if self.negatives.shared else drawn[self.rows]


def make_optimizers(model: nn.Module, groups, trainable: list, cfg: TrainConfig) -> list:
    """Adam over the trainable parameters (or the model's own groups); with `sparse_embeddings`,
    every embedding table takes sparse gradients and its own SparseAdam (rows a step does not
    touch are not updated: the point at a million items)."""
    if not cfg.sparse_embeddings:
        return [torch.optim.Adam(groups if groups is not None else trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)]
    if groups is not None or cfg.weight_decay:
        raise ConfigError("train.sparse_embeddings: not with per-part learning rates (this model's prepare) or "
                          "weight_decay (SparseAdam has none); set sparse_embeddings: false")
    tables = [m for m in model.modules() if isinstance(m, nn.Embedding) and m.weight.requires_grad]
    for m in tables:
        m.sparse = True
    sparse = {id(m.weight) for m in tables}
    dense = [p for p in trainable if id(p) not in sparse]
    return ([torch.optim.Adam(dense, lr=cfg.lr)] if dense else []) + \
        [torch.optim.SparseAdam([m.weight for m in tables], lr=cfg.lr)]


def step_all(optimizers: list) -> None:
    try:
        for opt in optimizers:
            opt.step()
    except RuntimeError as e:
        if "dense gradients" not in str(e):
            raise
        raise ConfigError("train.sparse_embeddings: this model's loss reads its item table as a whole (full softmax, "
                          "or no `item_rows` lookup), so the table's gradient is dense; use a sampled loss "
                          "(train.loss: sampled_softmax / bce) with a model that has item_rows, or "
                          "sparse_embeddings: false") from e


def resume_key(model: nn.Module, cfg, **sizes) -> str:
    """What a saved state must match to be resumed: model class and config, run settings, data sizes."""
    cfg_model = {k: v for k, v in vars(model.cfg).items() if k != "features"} if hasattr(model, "cfg") else {}
    return json.dumps({"model": type(model).__name__, "cfg": cfg_model, "run": vars(cfg), **sizes}, sort_keys=True,
                      default=str)


def fit(model: nn.Module, view: TrainView, cfg: TrainConfig, protocol: ProtocolConfig, max_len: int,
        on_epoch: Callable[[dict], None] | None = None, state_path: Path | None = None) -> dict:
    """Train `model` in place on the training view (ending on its best validation state) and return
    the run summary.

    With `state_path`, the full training state (model, optimizer, RNGs, early-stopping state,
    history) is written atomically after every epoch; a later call with the same settings resumes
    after the last completed epoch and ends exactly where an uninterrupted run would. The file is
    removed when training finishes.
    """
    loop = Loop.for_training(cfg, view.num_items)
    device = loop.device
    rank, world = distributed.rank(), distributed.world()
    bf16 = use_bf16(cfg.precision, device)
    model.to(device)
    valid = view.valid_queries(max_len)
    key = f"valid/{protocol.select_metric}"
    t0 = time.perf_counter()
    prepare = getattr(model, "prepare", None)  # the one declared hook (see the module docstring)
    groups = prepare(view.train, cfg.lr) if prepare is not None else None
    trainable = [p for p in model.parameters() if p.requires_grad]

    def validate(epoch: int, step: int, loss: float, train_s: float) -> dict:
        tv = time.perf_counter()
        metrics, _, _ = evaluate_queries(model, valid, protocol, device)
        row = {"epoch": epoch, "step": step, "loss": loss, "train_s": train_s, "eval_s": time.perf_counter() - tv,
               **{f"valid/{k}": v for k, v in metrics.items()}}
        if on_epoch and rank == 0:
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
    loop.sample_like(getattr(getattr(model, "cfg", None), "loss", cfg.loss), cfg.negatives_by,
                     view.train.counts() if cfg.negatives_by == "popularity" else None)
    optimizers = make_optimizers(model, groups, trainable, cfg)
    state_key = resume_key(model, cfg, windows=len(x_all), items=view.num_items)
    step_loss = model.loss
    if world > 1:  # DDP: every rank takes its rows of each global batch; gradients all-reduced (mean)
        from torch.nn.parallel import DistributedDataParallel

        step_loss = DistributedDataParallel(_Loss(model), find_unused_parameters=True,
                                            device_ids=[torch.cuda.current_device()] if device.type == "cuda" else None)
        torch.manual_seed(cfg.seed + rank)  # dropout masks differ per rank (rank 0 draws one process's)
        log.info("distributed training: rank %d of %d, global batch %d windows", rank, world, cfg.batch_size)
    progress = loop.resume(state_path, state_key, model, optimizers)
    if progress is not None:
        log.info("resuming from %s after epoch %d (best %s %.4f at epoch %d)", state_path, progress["epoch"], key,
                 progress["best"], progress["best_epoch"])
        # kept in the state, so a run resumed twice reports both (states saved before this field: from now on)
        progress["resumed_after"] = progress.get("resumed_after", []) + [progress["epoch"]]
    else:
        progress = {"epoch": 0, "steps": 0, "best": -1.0, "best_epoch": 0, "best_step": 0, "best_state": None,
                    "stale": 0, "history": [], "resumed_after": []}
    p = progress
    stopped = cfg.stop(p["stale"], p["steps"] - p["best_step"]) and p["epoch"] > 0  # a saved run may have stopped
    start = cfg.epochs + 1 if stopped else p["epoch"] + 1
    for epoch in range(start, cfg.epochs + 1):
        model.train()
        te = time.perf_counter()
        total, steps = 0.0, 0
        for idx in loop.batches(len(x_all), f"epoch {epoch}"):
            negatives, weight = loop.negatives(y_all[idx]), 1.0
            if world > 1:  # rows rank, rank + world, ... of the global batch; the same draws on every rank
                rows = slice(rank, None, world)
                negatives, n_all = _RowsOf(negatives, rows), int((y_all[idx] > 0).sum())
                idx = idx[rows]
                weight = int((y_all[idx] > 0).sum()) / max(n_all, 1)  # this rank's share of the batch's targets
            x, y = to_device(x_all[idx], device), to_device(y_all[idx], device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = step_loss(x, y, negatives, to_device(u_all[idx], device))
            if not weight:  # a rank with no targets in this batch (tiny last batch): 0, but still in the all-reduce
                loss = torch.nan_to_num(loss, nan=0.0)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            # a model's loss is a mean over its batch's targets: weighted by each rank's share, DDP's mean
            # of the ranks' gradients is the gradient of the global batch's mean
            (loss * (weight * world) if world > 1 else loss).backward()
            step_all(optimizers)
            total, steps = total + loss.item() * weight, steps + 1
        total = distributed.all_sum(total)
        p["steps"] += steps
        row = validate(epoch, p["steps"], total / max(steps, 1), time.perf_counter() - te)
        p["history"].append(row)
        log.info("epoch %d loss %.4f %s %.4f (train %.1fs, eval %.1fs)", epoch, row["loss"], key, row[key],
                 row["train_s"], row["eval_s"])
        if row[key] > p["best"]:
            p.update(best=row[key], best_epoch=epoch, best_step=p["steps"], stale=0,
                     best_state=copy.deepcopy(model.state_dict()))
        else:
            p["stale"] += 1
        p["epoch"] = epoch
        loop.save(state_path, state_key, epoch, model, optimizers, p)
        if distributed.broadcast(cfg.stop(p["stale"], p["steps"] - p["best_step"])):
            log.info("early stop: no %s improvement for %d epochs / %d steps (best %.4f at epoch %d)", key,
                     p["stale"], p["steps"] - p["best_step"], p["best"], p["best_epoch"])
            break
    model.load_state_dict(p["best_state"])
    distributed.barrier()  # no rank may still be reading the state rank 0 removes
    if state_path is not None and state_path.exists() and distributed.is_main():
        state_path.unlink()
    return {"history": p["history"], "best_epoch": p["best_epoch"], "best": p["best"],
            "resumed_after": p["resumed_after"], "seconds": time.perf_counter() - t0, "device": str(device),
            "windows": len(x_all), "precision": "bf16" if bf16 else "fp32"}
