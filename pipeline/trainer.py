"""One training loop for every registered model: batches of windows, early stopping on validation."""

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
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from models.common import LOSSES, sequence_loss
from pipeline.data import Sequences, train_windows
from pipeline.device import resolve_device  # noqa: F401  (re-exported for stages and benches)
from pipeline.evaluation import ProtocolConfig, evaluate_split
from pipeline.params import ConfigError
from pipeline.tables import atomic_path

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 200  # upper bound; early stopping usually ends sooner
    batch_size: int = 128  # windows per step
    lr: float = 1e-3  # Adam
    weight_decay: float = 0.0
    loss: str = "ce"  # ce: full softmax over all items | bce: sampled negatives
    negatives: int = 1  # negatives per position for bce
    patience: int = 10  # stop after this many validations without improvement
    window_stride: int = 0  # 0 = max_len (disjoint windows); smaller: overlapping windows, more context per target
    device: str = "auto"  # auto: cuda when present, else cpu
    threads: int = 0  # CPU threads for torch; 0 = all cores
    seed: int = 42

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"train.loss={self.loss!r}: use one of {LOSSES}")
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ConfigError("train.epochs, train.batch_size and train.patience must be >= 1")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _resume_key(model: nn.Module, cfg: TrainConfig, n_windows: int, num_items: int) -> str:
    cfg_model = {k: v for k, v in vars(model.cfg).items() if k != "features"} if hasattr(model, "cfg") else {}
    return json.dumps({"model": type(model).__name__, "cfg": cfg_model, "train": vars(cfg), "windows": n_windows,
                       "items": num_items}, sort_keys=True, default=str)


def fit(model: nn.Module, seq: Sequences, cfg: TrainConfig, protocol: ProtocolConfig, max_len: int,
        on_epoch: Callable[[dict], None] | None = None, state_path: Path | None = None) -> dict:
    """Train `model` in place (ending on its best validation state) and return the run summary.

    With `state_path`, the full training state (model, optimizer, RNGs, early-stopping state,
    history) is written atomically after every epoch; a later call with the same settings resumes
    after the last completed epoch and ends exactly where an uninterrupted run would. The file is
    removed when training finishes. (`MMREC_KILL_AFTER_EPOCHS=n` SIGKILLs the process after epoch
    n's state is saved: the interruption test.)
    """
    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    device = resolve_device(cfg.device)
    model.to(device)
    history: list[dict] = []
    t0 = time.perf_counter()
    if hasattr(model, "fit_counts"):  # statistics, not gradients
        model.fit_counts(torch.as_tensor(seq.train_items(), device=device))
        metrics, _ = evaluate_split(model, seq, "valid", max_len, protocol, device)
        row = {"epoch": 1, "loss": float("nan"), "train_s": time.perf_counter() - t0, "eval_s": 0.0,
               **{f"valid/{k}": v for k, v in metrics.items()}}
        history.append(row)
        if on_epoch:
            on_epoch(row)
        return {"history": history, "best_epoch": 1, "best": row[f"valid/{protocol.select_metric}"],
                "seconds": time.perf_counter() - t0, "device": str(device), "windows": 0}

    inputs, targets = train_windows(seq, max_len, stride=cfg.window_stride or max_len)
    if not (targets > 0).any():
        raise ConfigError("no training targets: every user has fewer than 4 interactions after preprocessing "
                          "(2 are held out); lower preprocess.user_core or use a larger data set")
    x_all, y_all = torch.as_tensor(inputs), torch.as_tensor(targets)
    groups = model.param_groups(cfg.lr) if hasattr(model, "param_groups") else model.parameters()  # e.g. MMSR §8.2
    opt = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_kind = getattr(model.cfg, "loss", None) or cfg.loss  # a model may fix its paper's loss (MMSR: bce)
    if loss_kind != cfg.loss:
        log.info("loss: %s from the model's own `loss` setting (train.loss=%s does not apply to it)", loss_kind,
                 cfg.loss)
    gen = torch.Generator().manual_seed(cfg.seed)
    best, best_epoch, best_state, stale = -1.0, 0, None, 0
    key = f"valid/{protocol.select_metric}"
    start = 1
    resume_key = _resume_key(model, cfg, len(x_all), seq.num_items)
    if state_path is not None and state_path.is_file():
        saved = torch.load(state_path, map_location=device, weights_only=True)
        if saved.get("key") == resume_key:
            model.load_state_dict(saved["model"])
            opt.load_state_dict(saved["opt"])
            gen.set_state(saved["gen"])
            torch.set_rng_state(saved["torch_rng"])
            best, best_epoch, best_state, stale = saved["best"], saved["best_epoch"], saved["best_state"], saved["stale"]
            history, start = saved["history"], saved["epoch"] + 1
            log.info("resuming from %s after epoch %d (best %s %.4f at epoch %d)", state_path, saved["epoch"], key,
                     best, best_epoch)
        else:
            log.warning("ignoring %s: it was saved by a run with other settings", state_path)
    kill_after = int(os.environ.get("MMREC_KILL_AFTER_EPOCHS", "0") or 0)
    if start > 1 and stale >= cfg.patience:
        start = cfg.epochs + 1  # the saved run had already stopped early
    for epoch in range(start, cfg.epochs + 1):
        model.train()
        te = time.perf_counter()
        perm = torch.randperm(len(x_all), generator=gen)
        total, steps = 0.0, 0
        for s in tqdm(range(0, len(perm), cfg.batch_size), desc=f"epoch {epoch}", unit="batch", leave=False,
                      mininterval=2.0, disable=None):
            idx = perm[s:s + cfg.batch_size]
            x, y = x_all[idx].to(device), y_all[idx].to(device)
            neg = (torch.randint(1, seq.num_items + 1, (*y.shape, cfg.negatives), generator=gen).to(device)
                   if loss_kind == "bce" else None)
            if hasattr(model, "run_backbone"):  # content models (MMSR): fuse each needed item once per step
                if neg is None:  # full softmax: every item is needed anyway
                    vecs = model.item_vectors()
                    h = model.run_backbone(vecs[x], x)
                    loss = sequence_loss(h, y, vecs, loss_kind)
                else:
                    ids, inv = torch.unique(torch.cat([y.new_zeros(1), x.flatten(), y.flatten(), neg.flatten()]),
                                            return_inverse=True)
                    n_x, n_y = x.numel(), y.numel()
                    vecs = model.item_vectors_for(ids)
                    h = model.run_backbone(vecs[inv[1:1 + n_x].view_as(x)], x)
                    loss = sequence_loss(h, inv[1 + n_x:1 + n_x + n_y].view_as(y), vecs, "bce",
                                         inv[1 + n_x + n_y:].view_as(neg))
            else:
                loss = sequence_loss(model.encode(x), y, model.item_vectors(), loss_kind, neg)
            extra = model.extra_loss(x, y) if hasattr(model, "extra_loss") else None  # e.g. MSM4SR_E2E
            if extra is not None:
                loss = loss + extra
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, steps = total + loss.item(), steps + 1
        train_s = time.perf_counter() - te
        tv = time.perf_counter()
        metrics, _ = evaluate_split(model, seq, "valid", max_len, protocol, device)
        row = {"epoch": epoch, "loss": total / max(steps, 1), "train_s": train_s, "eval_s": time.perf_counter() - tv,
               **{f"valid/{k}": v for k, v in metrics.items()}}
        history.append(row)
        if on_epoch:
            on_epoch(row)
        log.info("epoch %d loss %.4f %s %.4f (train %.1fs, eval %.1fs)", epoch, row["loss"], key, row[key],
                 train_s, row["eval_s"])
        if row[key] > best:
            best, best_epoch, stale = row[key], epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        if state_path is not None:
            state = {"key": resume_key, "epoch": epoch, "model": model.state_dict(), "opt": opt.state_dict(),
                     "gen": gen.get_state(), "torch_rng": torch.get_rng_state(), "best": best,
                     "best_epoch": best_epoch, "best_state": best_state, "stale": stale, "history": history}
            with atomic_path(state_path) as tmp:
                torch.save(state, tmp)
            if kill_after and epoch >= kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
        if stale >= cfg.patience:
            log.info("early stop: no %s improvement for %d epochs (best %.4f at epoch %d)", key, stale, best,
                     best_epoch)
            break
    model.load_state_dict(best_state)
    if state_path is not None and state_path.exists():
        state_path.unlink()
    return {"history": history, "best_epoch": best_epoch, "best": best, "seconds": time.perf_counter() - t0,
            "device": str(device), "windows": len(x_all)}
