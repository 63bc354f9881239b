"""The one epoch loop: every training procedure here (fit, AutoMLP's search, MSM4SR's pre-training)
passes its step function to `run_epochs`.

The loop owns what the procedures share: seeding, threads and device (`Loop`), shuffled
mini-batches, sampled negatives, train mode, timing, zero_grad / backward / optimizer step, bf16
autocast, DistributedDataParallel (each rank its rows of the global batch), the resumable state
written after every epoch, early stopping (`EarlyStopping`, its state in that file) and the
per-epoch log line. A procedure supplies `step(batch, forward) -> Step` (the loss of one batch,
any terms to log, how many examples it visited) and `finish_epoch(Epoch) -> row` (validation, the
history row); it knows nothing of the loop's bookkeeping, and the loop nothing of model kinds.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from pipeline import distributed
from pipeline.checkpoint import save_tensors
from pipeline.device import cpu_threads, resolve_device
from pipeline.params import ConfigError
from pipeline.progress import progress

log = logging.getLogger("pipeline.loop")

STATE_VERSION = 2  # resume files of another layout are ignored ("other settings; starting over")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Negatives:
    """Negative item ids for one batch's targets, drawn from the loop's generator on first call and
    the same on every later call. A loss that needs none never calls it, so its random stream is
    untouched. `negatives()`: (*targets.shape, per_target) ids, one set per target (bce / bpr);
    `negatives.shared()`: (per_target,) ids for the whole batch (sampled softmax). Uniform over the
    items, or from `proposal` (N+1,) probabilities — then `log_q` (their logs, on the device) is
    handed to the loss's correction."""

    def __init__(self, targets: torch.Tensor, num_items: int, per_target: int, generator: torch.Generator,
                 device: torch.device | None = None, proposal: torch.Tensor | None = None,
                 log_q: torch.Tensor | None = None):
        self.target_shape, self.per_target = tuple(targets.shape), per_target
        self.num_items, self.gen, self.proposal = num_items, generator, proposal
        self.device, self._drawn, self.log_q = device or targets.device, {}, log_q

    def _draw(self, shape: tuple[int, ...]) -> torch.Tensor:
        if shape not in self._drawn:
            if self.proposal is None:
                drawn = torch.randint(1, self.num_items + 1, shape, generator=self.gen)
            else:
                drawn = torch.multinomial(self.proposal, int(np.prod(shape)), replacement=True,
                                          generator=self.gen).view(shape)
            self._drawn[shape] = drawn.to(self.device)
        return self._drawn[shape]

    def __call__(self) -> torch.Tensor:
        return self._draw((*self.target_shape, self.per_target))

    def shared(self) -> torch.Tensor:
        return self._draw((self.per_target,))


class RowsOf:
    """This rank's rows of the global batch's negatives: every rank draws the whole batch's (the
    same numbers one process draws), so the shared generator never diverges between ranks.
    Negatives shared by the batch (sampled softmax) are every rank's."""

    def __init__(self, negatives: Negatives, rows: slice):
        self.negatives, self.rows, self.log_q = negatives, rows, negatives.log_q

    def __call__(self) -> torch.Tensor:
        return self.negatives()[self.rows]

    def shared(self) -> torch.Tensor:
        return self.negatives.shared()


class Loop:
    """Seeding, threads, device, shuffled batches, negatives and resumable state for one training run."""

    def __init__(self, *, seed: int, threads: int, device: str, batch_size: int, num_items: int,
                 negatives: int = 1, where: str = "train"):
        seed_everything(seed)
        self.seed, self.threads, self.where = seed, threads, f"{where}.threads"
        torch.set_num_threads(cpu_threads(threads, self.where))
        self.device = resolve_device(device, f"{where}.device")
        self.batch_size, self.num_items, self.per_target = batch_size, num_items, negatives
        self.gen = torch.Generator().manual_seed(seed)
        self.proposal, self.log_q = None, None  # popularity proposal and its log (computed once per run)

    def sample_by(self, by: str, counts: np.ndarray | None) -> None:
        """Negatives ∝ `counts` (the training view's item counts, (N+1,)) when `by` is popularity."""
        if by == "popularity":
            c = torch.as_tensor(counts, dtype=torch.float64)
            c[0] = 0.0
            self.proposal = c / c.sum()
            self.log_q = self.proposal.clamp_min(1e-30).log().to(self.device)

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
        return Negatives(targets, self.num_items, self.per_target, self.gen, self.device, self.proposal, self.log_q)

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


def resume_key(model: nn.Module, run, **sizes) -> str:
    """What a saved state must match to be resumed: model class and config, the run's settings, data sizes."""
    return json.dumps({"version": STATE_VERSION, "model": type(model).__name__, "cfg": dataclasses.asdict(model.cfg),
                       "run": dataclasses.asdict(run), **sizes}, sort_keys=True, default=str)


@dataclass
class EarlyStopping:
    """Stop once every condition holds: validation has not improved for `patience` epochs; when
    `patience_steps` > 0, the best is at least that many optimizer steps old; when `patience_frac`
    > 0, the epochs since the best are at least that share of the best's epoch (a patience that
    grows with how long the model took to get there, the same on small and large data). `update`
    after every validation; the state rides in the resume file. `replay` runs the rule over a
    recorded curve."""

    patience: int = 10
    patience_steps: int = 0
    patience_frac: float = 0.0
    best: float = -1.0
    best_epoch: int = 0
    best_step: int = 0
    stale: int = 0  # validations since the best
    stopped_at: int = 0  # replay: the last epoch the rule saw

    def update(self, epoch: int, step: int, value: float) -> bool:
        """Record a validation; True when it is a new best (strictly greater)."""
        if value > self.best:
            self.best, self.best_epoch, self.best_step, self.stale = value, epoch, step, 0
            return True
        self.stale += 1
        return False

    def should_stop(self, step: int) -> bool:
        return (self.stale >= self.patience and step - self.best_step >= self.patience_steps
                and self.stale >= self.patience_frac * self.best_epoch)

    def describe(self, step: int) -> str:
        return f"{self.stale} epochs / {step - self.best_step} steps"

    def replay(self, curve: list[tuple[int, int, float]]) -> "EarlyStopping":
        """Run the rule over (epoch, step, value) rows in order, stopping where it would stop; the
        result holds the chosen epoch (`best_epoch`) and `stopped_at`, the last epoch it saw."""
        for epoch, step, value in curve:
            self.update(epoch, step, value)
            self.stopped_at = epoch
            if self.should_stop(step):
                break
        return self


@dataclass
class Step:
    """One batch's outcome: `loss` is backpropagated; `terms` (floats or scalar tensors, `loss`
    included by the loop) are averaged over the epoch; `examples` summed; `weight` is this rank's
    share of the global batch's targets (DDP: the loop scales the loss so the all-reduced gradient
    is the global batch's)."""

    loss: torch.Tensor
    terms: dict = field(default_factory=dict)
    examples: int = 0
    weight: float = 1.0


@dataclass
class Batch:
    idx: torch.Tensor  # the global batch's example indices
    rows: slice | None = None  # this rank's rows of it (DDP), None in one process


@dataclass
class Epoch:
    number: int
    steps: int  # optimizer steps so far, this epoch included
    seconds: float  # the epoch's batches (before `finish_epoch`'s validation)
    means: dict  # each term's mean over the epoch's steps (`loss` first)
    examples: int


class LossModule(nn.Module):
    """`model.loss` as a forward pass, so DistributedDataParallel can wrap it (DDP syncs gradients
    of what its forward computes)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs, targets, negatives, users):
        return self.model.loss(inputs, targets, negatives, users)


def step_all(optimizers: list) -> None:
    try:
        for opt in optimizers:
            opt.step()
    except RuntimeError as e:
        if "dense gradients" not in str(e):
            raise
        raise ConfigError("train.sparse_embeddings: this model's loss reads its item table as a whole (full softmax, "
                          "or no `rows` lookup in its next_item_loss), so the table's gradient is dense; use a sampled "
                          "loss (train.loss: sampled_softmax / bce) with a model that passes one, or "
                          "sparse_embeddings: false") from e


def finished(state_path: Path | None) -> None:
    """A run's outputs are written: its resume state goes (rank 0's job)."""
    if state_path is not None and distributed.is_main():
        state_path.unlink(missing_ok=True)


def run_epochs(loop: Loop, model: nn.Module, optimizers: list, step: Callable[[Batch, Callable], Step | None],
               examples: int, epochs: int, finish_epoch: Callable[[Epoch], dict], *, name: str, desc: str,
               state_path: Path | None = None, state_key: str = "", stopper: EarlyStopping | None = None,
               select: str = "", bf16: bool = False, limit: int = 0, loss_module: nn.Module | None = None,
               other_optimizers: tuple = (), log_row: Callable[[dict], str] | None = None) -> dict:
    """Train for up to `epochs` epochs over `examples` examples (`name` for the log, `desc` for the
    progress bar); returns the run's progress:
    `history` (finish_epoch's rows), `resumed_after` (epochs a killed run resumed after), and with
    a `stopper` the early-stopping state, its `best_state` loaded into `model` at the end.

    `optimizers` are stepped by the loop after every step; `other_optimizers` (the search's α) are
    the step's own, saved and restored with the rest. With `state_path` the whole state is written
    after every epoch and a later call with the same `state_key` resumes after the last completed
    epoch, ending exactly where an uninterrupted run would; the caller removes the file after it
    has written its outputs (`finished`), so a kill in between resumes instead of starting over. With
    `loss_module` (model.loss as a module) and several processes, it is wrapped in DDP and every
    step gets its rank's rows of each global batch (`Batch.rows`); `step(batch, forward)` then calls
    `forward` for the loss."""
    rank, world = distributed.rank(), distributed.world()
    ddp = loss_module is not None and world > 1  # else every rank (if several) runs the whole procedure alone
    forward = loss_module
    if ddp:  # every rank its rows of each global batch; gradients all-reduced
        from torch.nn.parallel import DistributedDataParallel

        device = loop.device
        forward = DistributedDataParallel(loss_module, find_unused_parameters=True,
                                          device_ids=[torch.cuda.current_device()] if device.type == "cuda" else None)
        torch.manual_seed(loop.seed + rank)  # dropout masks differ per rank (rank 0 draws one process's)
        log.info("distributed training: rank %d of %d, global batch %d", rank, world, loop.batch_size)
    saved = list(optimizers) + list(other_optimizers)
    p = loop.resume(state_path, state_key, model, saved)
    if p is not None:
        log.info("resuming %s from %s after epoch %d", name, state_path, p["epoch"])
        p["resumed_after"] = p["resumed_after"] + [p["epoch"]]  # kept: a run resumed twice reports both
    else:
        p = {"epoch": 0, "steps": 0, "history": [], "resumed_after": [], "stopper": None, "best_state": None}
    if stopper is not None and p["stopper"] is not None:
        stopper = dataclasses.replace(stopper, **p["stopper"])
    stopped = stopper is not None and p["epoch"] > 0 and stopper.should_stop(p["steps"])  # a saved run may have stopped
    for epoch in range(epochs + 1 if stopped else p["epoch"] + 1, epochs + 1):
        model.train()
        te = time.perf_counter()
        sums: dict[str, float] = {}
        steps = visited = 0
        for idx in loop.batches(examples, f"{desc} {epoch}", limit):
            batch = Batch(idx, slice(rank, None, world) if ddp else None)
            with torch.autocast(loop.device.type, dtype=torch.bfloat16, enabled=bf16):
                out = step(batch, forward)
            if out is None:  # a batch the procedure cannot use (e.g. one pair for a contrastive loss)
                continue
            loss = out.loss
            if not out.weight:  # a rank with no targets in this batch (tiny last batch): 0, but still in the all-reduce
                loss = torch.nan_to_num(loss, nan=0.0)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            # a loss is a mean over its batch's targets: weighted by each rank's share, DDP's mean of the
            # ranks' gradients is the gradient of the global batch's mean
            (loss * (out.weight * world) if ddp else loss).backward()
            step_all(optimizers)
            for k, v in (out.terms if "loss" in out.terms else {"loss": loss, **out.terms}).items():
                sums[k] = sums.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v) * out.weight
            steps, visited = steps + 1, visited + out.examples
        p["steps"] += steps
        means = {k: (distributed.all_sum(v) if ddp else v) / max(steps, 1) for k, v in sums.items()} \
            or {"loss": float("nan")}
        row = finish_epoch(Epoch(epoch, p["steps"], time.perf_counter() - te, means, visited))
        p["history"].append(row)
        if log_row is not None:
            log.info("%s", log_row(row))
        if stopper is not None and stopper.update(epoch, p["steps"], row[select]):
            p["best_state"] = copy.deepcopy(model.state_dict())
        p["epoch"] = epoch
        p["stopper"] = dataclasses.asdict(stopper) if stopper is not None else None
        loop.save(state_path, state_key, epoch, model, saved, p)
        if stopper is not None and distributed.broadcast(stopper.should_stop(p["steps"])):
            log.info("early stop: no %s improvement for %s (best %.4f at epoch %d)", select,
                     stopper.describe(p["steps"]), stopper.best, stopper.best_epoch)
            break
    if stopper is not None:
        model.load_state_dict(p["best_state"])
        p["stopper"] = dataclasses.asdict(stopper)
    distributed.barrier()  # every rank is done with the state; the caller removes it once its outputs are written
    return p
