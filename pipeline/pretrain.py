"""Stage `pretrain`: MSM4SR's M²SE pre-trained with NIP + CMCL (§III-C) on the cached features.

    python -m pipeline.pretrain --params params.yaml --prepared data/prepared --features data/features --out data/pretrain

Reads `pretrain` (epochs, batch size, lr, seed, device) and `models.msm4sr` (the architecture and
loss switches); `model` only decides whether to run at all: a selected model that reads no
pre-trained weights (any but msm4sr with `pretrained: true` and no `pretrained_path`) gets a
marker file instead (seconds), so `dvc repro` of SASRec never waits for pre-training, and DVC's
run cache restores the real weights when msm4sr is selected again. A killed run resumes from its
last completed epoch (`resume.pt` beside the outputs). Examples are every training (prefix, next item) pair: each training
target with its last `max_len` items of history. Writes `msm4sr.pt` (the M²SE weights + the config
they fit) and `pretrain.json` (loss per epoch, by term).

Cross-domain (the paper's MSM4SR_Cross): run this command with `--prepared/--features` of the
source data set, then fine-tune on the target with `models.msm4sr.pretrained_path` set to the
checkpoint and `freeze_transformer: true`.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models import MODELS, model_config
from pipeline.checkpoint import save_tensors
from pipeline.data import train_windows
from pipeline.device import host
from pipeline.params import from_dict, load_params, setup_logging
from pipeline.preprocess import PreprocessConfig
from pipeline.tables import write_json
from pipeline.train import build_with_features, load_training_view
from pipeline.trainer import Loop, resume_key

log = logging.getLogger("pipeline.pretrain")


@dataclass
class PretrainConfig:
    model: str = "msm4sr"
    epochs: int = 10  # the paper pre-trains 300 epochs on GPU; see docs/models/msm4sr.md
    batch_size: int = 256
    pairs_per_epoch: int = 0  # 0 = every (prefix, next item) pair each epoch; n = a fresh random n of them
    lr: float = 0.001
    weight_decay: float = 0.0
    seed: int = 42
    device: str = "auto"
    threads: int = 0
    warm_only: bool = False  # MSM4SR §IV-G-1: pre-train on warm items only (cold items never seen)
    warm_threshold: int = 10  # an item is cold with fewer training occurrences (the paper's 10)
    one_pass_windows: int = 0  # > 0: each step encodes this many training windows in one causal pass and
    #                            trains on every prefix in them, in groups of batch_size pairs (pairs_per_epoch
    #                            then counts windows); 0 = one Transformer pass per (prefix, next item) pair

    def __post_init__(self) -> None:
        if self.one_pass_windows < 0:
            raise ValueError("pretrain.one_pass_windows must be >= 0")


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


def pretrain(params: dict, prepared: Path, features: Path, out: Path, timing: Path | None = None) -> dict:
    """Pre-train on the training view; resumable after a kill from the last completed epoch
    (`out/resume.pt`, removed at the end). `pretrain.json` holds the losses (the same for the same
    inputs); the timings go to `timing`. Returns both."""
    cfg = from_dict(PretrainConfig, params.get("pretrain"), "pretrain")
    pre = from_dict(PreprocessConfig, params.get("preprocess"), "preprocess")
    if cfg.model not in MODELS or not hasattr(MODELS[cfg.model], "pretrain_loss"):
        raise ValueError(f"pretrain.model={cfg.model!r}: only models with a pre-training loss can be pre-trained "
                         f"({[m for m, c in MODELS.items() if hasattr(c, 'pretrain_loss')]})")
    view = load_training_view(prepared)
    loop = Loop(seed=cfg.seed, threads=cfg.threads, device=cfg.device, batch_size=cfg.batch_size,
                num_items=view.num_items, where="pretrain")
    device = loop.device
    model_params = dict((params.get("models") or {}).get(cfg.model) or {}) | {"max_len": pre.max_len}
    model = build_with_features(cfg.model, model_params, features, prepared, view.num_items)
    model.to(device)
    one_pass = cfg.one_pass_windows > 0
    examples = pretrain_windows if one_pass else pretrain_pairs
    x_all, y_all, pair_stats = examples(view, pre.max_len, cfg.warm_only, cfg.warm_threshold)
    if one_pass:
        loop.batch_size = cfg.one_pass_windows
    params_to_train = [p for n, p in model.named_parameters() if not n.startswith("item_emb")]
    opt = torch.optim.Adam(params_to_train, lr=cfg.lr, weight_decay=cfg.weight_decay)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "resume.pt"
    key = resume_key(model, cfg, pairs=len(x_all), items=view.num_items)
    progress = loop.resume(state_path, key, model, [opt])
    if progress is not None:
        log.info("resuming pre-training from %s after epoch %d", state_path, progress["epoch"])
    else:
        progress = {"epoch": 0, "history": []}
    t0 = time.perf_counter()
    pairs = int((y_all > 0).sum()) if one_pass else len(x_all)
    log.info("pre-training %s on %d (prefix, next item) pairs%s, %d epochs, batch %d pairs, %s", cfg.model, pairs,
             f" in {len(x_all)} windows, {cfg.one_pass_windows} windows per causal pass" if one_pass else "",
             cfg.epochs, cfg.batch_size, device)
    for epoch in range(progress["epoch"] + 1, cfg.epochs + 1):
        model.train()
        te = time.perf_counter()
        sums: dict[str, float] = {}
        steps = visits = 0
        for idx in loop.batches(len(x_all), f"pretrain {epoch}", limit=cfg.pairs_per_epoch):
            if one_pass:
                visits += int((y_all[idx] > 0).sum())
                losses = model.pretrain_loss_windows(x_all[idx].to(device), y_all[idx].to(device), loop.gen,
                                                     cfg.batch_size)
            elif len(idx) < 2:
                continue  # contrastive losses need in-batch negatives
            else:
                visits += len(idx)
                losses = model.pretrain_loss(x_all[idx].to(device), y_all[idx].to(device), loop.gen)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            opt.step()
            steps += 1
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
        row = {"epoch": epoch, **{k: v / max(steps, 1) for k, v in sums.items()}, "pair_visits": visits,
               "seconds": time.perf_counter() - te}
        progress["history"].append(row)
        progress["epoch"] = epoch
        log.info("pretrain epoch %d: %s", epoch, " ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "epoch"))
        loop.save(state_path, key, epoch, model, [opt], progress)
    history = progress["history"]
    payload = {"model": cfg.model, "config": model_config(model), "num_items": view.num_items,
               "m2se": {k: v.detach().cpu() for k, v in model.m2se_state().items()},
               "meta": {"pretrain": dataclasses.asdict(cfg), "epochs": len(history), "prepared": str(prepared)}}
    save_tensors(payload, out / f"{cfg.model}.pt")
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
    state_path.unlink(missing_ok=True)
    return info | run


def needed(params: dict) -> str | None:
    """Why the graph's pretrain stage has nothing to do for the selected model (None: it pre-trains)."""
    name = params.get("model")
    section = (params.get("models") or {}).get(name) or {}
    if name not in MODELS or not hasattr(MODELS[name], "pretrain_loss"):
        return f"model={name!r} uses no pre-training"
    if not section.get("pretrained", True):
        return f"models.{name}.pretrained is false"
    if section.get("pretrained_path"):
        return f"models.{name}.pretrained_path points at another run's weights"
    return None


def write_skipped(out: Path, reason: str) -> None:
    """The stage's outputs when the selected model reads no pre-trained weights: a marker (the same
    whatever the model, so nothing downstream changes), so DVC's graph is complete without the
    pre-training; the real weights come back from the run cache when a model that needs them is
    selected again."""
    cfg_model = "msm4sr"
    out.mkdir(parents=True, exist_ok=True)
    save_tensors({"skipped": reason}, out / f"{cfg_model}.pt")
    write_json(out / "pretrain.json", {"skipped": reason})
    log.info("pre-training skipped: %s", reason)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", default="data/prepared")
    ap.add_argument("--features", default="data/features")
    ap.add_argument("--out", default="data/pretrain")
    ap.add_argument("--always", action="store_true", help="pre-train even if the selected model reads no weights")
    ap.add_argument("--plan", help="data/plan/pretrain.json (the plan stage): pre-train only when it says so")
    ap.add_argument("--timing", help="write the run's timings here (e.g. data/timing/pretrain.json)")
    args = ap.parse_args()
    setup_logging()
    params = load_params(args.params)
    if args.plan:
        from pipeline.plan import is_needed

        reason = None if args.always or is_needed(Path(args.plan)) else "the selected model reads no pre-trained weights"
    else:
        reason = None if args.always else needed(params)
    if reason:
        write_skipped(Path(args.out), reason)
    else:
        pretrain(params, Path(args.prepared), Path(args.features), Path(args.out), Path(args.timing) if args.timing
                 else None)


if __name__ == "__main__":
    main()
