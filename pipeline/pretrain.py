"""MSM4SR-style pre-training (the `pretrain` stage's library): a PRETRAINING model's own losses
(MSM4SR: NIP + CMCL, §III-C) on the training view, then its `pretrained_state()` saved.

Reads `pretrain` (epochs, batch size, lr, seed, device) and `models.<pretrain.model>` (the
architecture and loss switches); the selected `model` only decides whether to run at all
(pipeline.builder.pretraining_skipped): a model that reads no pre-trained weights gets a marker
file instead (seconds), so `dvc repro` of SASRec never waits for pre-training, and DVC's run cache
restores the real weights when the pre-training model is selected again. The epochs run in
pipeline.loop's epoch loop, so a killed run resumes from its last completed epoch (`resume.pt`
beside the outputs). Examples are every training (prefix, next item) pair: each training target
with its last `max_len` items of history (or, with `one_pass_windows`, every prefix of whole
windows from one causal pass). Writes `weights.pt` (the pre-trained state + the config it fits)
and `pretrain.json` (loss per epoch, by term).

Cross-domain (the paper's MSM4SR_Cross): pre-train on the source data set, then fine-tune on the
target with `models.msm4sr.pretrained_path` set to that weights file and `freeze_transformer: true`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import torch

from pipeline import builder
from pipeline.checkpoint import save_tensors
from pipeline.config import PreprocessConfig, PretrainConfig, load_params
from pipeline.data import load_training_view, train_windows
from pipeline.device import host, use_bf16
from pipeline.layout import needed
from pipeline.loop import Batch, Epoch, Loop, Step, finished, resume_key, run_epochs
from pipeline.params import from_dict
from pipeline.tables import write_json

log = logging.getLogger("pipeline.pretrain")


def pretrain_pairs(view, max_len: int, warm_only: bool = False, threshold: int = 10
                   ) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Every training (prefix, next item) pair: each training target with its last `max_len` items.
    With `warm_only`, cold items (< `threshold` training occurrences) are removed from every prefix
    (the rest re-left-padded, order kept) and pairs whose target is cold are dropped, so pre-training
    never sees a cold item."""
    inputs, targets, _ = train_windows(view.train, max_len, stride=1)  # one window per training target
    x, y = inputs, targets[:, -1]
    keep = y > 0
    stats = {}
    if warm_only:
        cold = view.train.counts() < threshold
        cold[0] = False
        keep &= ~cold[y]
        stats = {"warm_only": True, "cold_items": int(cold[1:].sum()), "pairs_with_cold_target": int((cold[y] & (y > 0)).sum())}
        x = remove_items(x, cold)
        keep &= (x > 0).any(1)
    return torch.as_tensor(x[keep]), torch.as_tensor(y[keep]), stats


def pretrain_windows(view, max_len: int, warm_only: bool = False, threshold: int = 10
                     ) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The one-pass examples: the training windows (inputs, targets) of fine-tuning; with
    `warm_only`, cold items are removed from each window (L + 1 items, re-left-padded) first, so
    no prefix and no target holds one."""
    inputs, targets, _ = train_windows(view.train, max_len)
    stats = {}
    if warm_only:
        cold = view.train.counts() < threshold
        cold[0] = False
        full = remove_items(np.concatenate([inputs, targets[:, -1:]], 1), cold)
        inputs, targets = full[:, :-1], np.where(full[:, :-1] > 0, full[:, 1:], 0)
        stats = {"warm_only": True, "cold_items": int(cold[1:].sum())}
    keep = (targets > 0).any(1)
    stats["windows"] = int(keep.sum())
    return torch.as_tensor(inputs[keep]), torch.as_tensor(targets[keep]), stats


def remove_items(windows: np.ndarray, flagged: np.ndarray) -> np.ndarray:
    """(W, L) left-padded windows without the flagged item ids, re-left-padded, order kept."""
    keep = (windows > 0) & ~flagged[windows]
    order = np.argsort(keep, axis=1, kind="stable")  # dropped (False) first, kept after, each in order
    return np.where(np.take_along_axis(keep, order, 1), np.take_along_axis(windows, order, 1), 0)


def pretrained_parameters(model) -> list:
    """What pre-training trains: every parameter of the model's `pretrained_state()`, whatever
    fine-tuning freezes (MSM4SR_Cross's Transformer is frozen by its config for fine-tuning only)."""
    names = set(model.pretrained_state())
    chosen = [p for n, p in model.named_parameters() if n in names]
    for p in chosen:
        p.requires_grad_(True)
    return chosen


def pretrain(params: dict, prepared: Path, features: Path, out: Path, timing: Path | None = None) -> dict:
    """Pre-train on the training view; resumable after a kill from the last completed epoch
    (`out/resume.pt`, removed at the end). `pretrain.json` holds the losses (the same for the same
    inputs); the timings go to `timing`. Returns both."""
    cfg = from_dict(PretrainConfig, params.get("pretrain"), "pretrain")
    pre = from_dict(PreprocessConfig, params.get("preprocess"), "preprocess")
    builder.pretrainable(cfg.model)
    view = load_training_view(prepared)
    loop = Loop(seed=cfg.seed, threads=cfg.threads, device=cfg.device, batch_size=cfg.batch_size,
                num_items=view.num_items, where="pretrain")
    device = loop.device
    section = (params.get("models") or {}).get(cfg.model) or {}
    model, inputs = builder.build_for_run(cfg.model, section, view, pre.max_len, "ce", features, prepared)
    model.to(device)
    one_pass = cfg.one_pass_windows > 0
    examples = pretrain_windows if one_pass else pretrain_pairs
    x_all, y_all, pair_stats = examples(view, pre.max_len, cfg.warm_only, cfg.warm_threshold)
    if one_pass:
        loop.batch_size = cfg.one_pass_windows
    opt = torch.optim.Adam(pretrained_parameters(model), lr=cfg.lr, weight_decay=cfg.weight_decay)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pairs = int((y_all > 0).sum()) if one_pass else len(x_all)
    log.info("pre-training %s on %d (prefix, next item) pairs%s, %d epochs, batch %d pairs, %s", cfg.model, pairs,
             f" in {len(x_all)} windows, {cfg.one_pass_windows} windows per causal pass" if one_pass else "",
             cfg.epochs, cfg.batch_size, device)

    def step(batch: Batch, forward) -> Step | None:
        x, y = x_all[batch.idx].to(device), y_all[batch.idx].to(device)
        if one_pass:
            losses = model.pretrain_loss_windows(x, y, loop.gen, cfg.batch_size)
            return Step(losses["loss"], losses, examples=int((y_all[batch.idx] > 0).sum()))
        if len(batch.idx) < 2:
            return None  # contrastive losses need in-batch negatives
        losses = model.pretrain_loss(x, y, loop.gen)
        return Step(losses["loss"], losses, examples=len(batch.idx))

    def finish(e: Epoch) -> dict:
        return {"epoch": e.number, **e.means, "pair_visits": e.examples, "seconds": e.seconds}

    progress = run_epochs(
        loop, model, [opt], step, len(x_all), cfg.epochs, finish, name="pre-training", desc="pretrain",
        limit=cfg.pairs_per_epoch, bf16=use_bf16(cfg.precision, device, "pretrain.precision"),
        state_path=out / "resume.pt", state_key=resume_key(model, cfg, pairs=len(x_all), items=view.num_items),
        log_row=lambda r: f"pretrain epoch {r['epoch']}: " + " ".join(f"{k} {v:.4f}" for k, v in r.items()
                                                                      if k != "epoch"))
    history = progress["history"]
    payload = {"model": cfg.model, "config": builder.model_config(model), "inputs": inputs.describe(),
               "state": {k: v.detach().cpu() for k, v in model.pretrained_state().items()},
               "meta": {"pretrain": dataclasses.asdict(cfg), "epochs": len(history), "prepared": str(prepared)}}
    save_tensors(payload, out / builder.PRETRAINED_WEIGHTS)
    info = {"model": cfg.model, "pairs": pairs, **pair_stats,
            "history": [{k: v for k, v in r.items() if k != "seconds"} for r in history]}
    write_json(out / "pretrain.json", info)
    run = {"seconds": time.perf_counter() - t0, "device": str(device),
           "s_per_epoch": float(np.mean([r["seconds"] for r in history])) if history else 0.0,
           "epoch_seconds": [r["seconds"] for r in history],
           "pairs_per_s": float(sum(r["pair_visits"] for r in history) / max(sum(r["seconds"] for r in history), 1e-9))
           if history else 0.0, **host()}
    if timing is not None:
        write_json(timing, run)
    finished(out / "resume.pt")
    return info | run


def write_skipped(out: Path, reason: str) -> None:
    """The stage's outputs when the selected model reads no pre-trained weights: a marker (the same
    whatever the model, so nothing downstream changes), so DVC's graph is complete without the
    pre-training; the real weights come back from the run cache when a model that needs them is
    selected again."""
    out.mkdir(parents=True, exist_ok=True)
    save_tensors({"skipped": reason}, out / builder.PRETRAINED_WEIGHTS)
    write_json(out / "pretrain.json", {"skipped": reason})
    log.info("pre-training skipped: %s", reason)


def run_stage(params_file: Path, prepared: Path, features: Path, out: Path, plan: Path | None = None,
              timing: Path | None = None, always: bool = False) -> dict | None:
    """The pretrain stage: pre-train when the plan stage's file (or, without one, the selected
    model) says so or `always`; otherwise write the marker."""
    params = load_params(params_file)
    if always or (needed(plan) if plan else builder.pretraining_skipped(params) is None):
        return pretrain(params, prepared, features, out, timing)
    write_skipped(out, "the selected model reads no pre-trained weights" if plan else
                  builder.pretraining_skipped(params))
    return None
