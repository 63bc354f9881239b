"""The architecture search of PROCEDURE 'search_then_fit' (AutoMLP §2.4.1, Algorithm 1): a DARTS
bilevel optimisation of the model's architecture weights (AutoMLP: the short-term length).

Each step: (1) a validation mini-batch — each user's last window of the training view, the loss on
the validation item s[n-2] after it; never the test item, which the training view does not hold —
updates the architecture weights α through the one-step approximation W* ≈ W - ξ∇W L_train(W, α)
(eq. 7), differentiated exactly with autograd (ξ = 0: the first-order approximation); (2) a
training mini-batch updates W with α held constant (the model's `arch_frozen()`). α never sees a
training gradient and W never sees a validation gradient. Batches, negatives, the W step and the
resumable state are the epoch loop's (pipeline.loop), so a killed search resumes after its last
epoch. pipeline.procedures then rebuilds the model with `search_result()`'s choice and fits it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from torch.func import functional_call

from pipeline.config import TrainConfig
from pipeline.data import TrainView, train_windows
from pipeline.loop import Batch, Epoch, Step, resume_key, run_epochs
from pipeline.trainer import training_loop

log = logging.getLogger("pipeline.search")


def _shares(weights: dict) -> str:
    """'2:0.293 5:0.320 …' — softmax(α) per candidate, for the log."""
    return " ".join(f"{k}:{float(w):.3f}" for k, w in weights.items())


def batch_loss(model, params: dict | None, x: torch.Tensor, y: torch.Tensor, neg) -> torch.Tensor:
    """The model's training loss (its `forward`), optionally with substituted parameters (the unrolled step)."""
    return model(x, y, neg) if params is None else functional_call(model, params, (x, y, neg))


def arch_step(model, a_opt, train: tuple, valid: tuple, xi: float) -> float:
    """Step (1) of Algorithm 1 on (inputs, targets, negatives) batches: α on validation, through
    W' = W - ξ ∇W L_train(W, α) (eqs. 6-7). Returns the validation loss."""
    xb, yb, nb = train
    xv, yv, nv = valid
    arch = model.arch_parameters()
    arch_ids = {id(a) for a in arch}
    if xi > 0:
        params = dict(model.named_parameters())
        names = [n for n, p in params.items() if id(p) not in arch_ids]
        g = torch.autograd.grad(batch_loss(model, None, xb, yb, nb), [params[n] for n in names],
                                create_graph=True, allow_unused=True)
        unrolled = {n: (params[n] - xi * gi if gi is not None else params[n]) for n, gi in zip(names, g)}
        unrolled |= {n: p for n, p in params.items() if id(p) in arch_ids}
        loss_v = batch_loss(model, unrolled, xv, yv, nv)
    else:
        loss_v = batch_loss(model, None, xv, yv, nv)
    grads = torch.autograd.grad(loss_v, arch)
    a_opt.zero_grad(set_to_none=True)
    for a, grad in zip(arch, grads):
        a.grad = grad
    a_opt.step()
    return loss_v.item()


def validation_batches(view: TrainView, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """α's examples: each user's last training window, the loss on the validation item only."""
    queries = view.valid_queries(max_len)
    x_va = torch.as_tensor(queries.inputs)
    y_va = torch.zeros_like(x_va)
    y_va[:, -1] = torch.as_tensor(queries.targets)
    return x_va, y_va


def search(model, view: TrainView, cfg: TrainConfig, max_len: int, state_path: Path | None = None) -> dict:
    """Run the search on `model` (every candidate); returns the chosen config overrides, the record
    (`search_result`), the per-epoch history and the time. Resumable through `state_path`."""
    loop = training_loop(cfg, view.num_items)
    device = loop.device
    model.to(device)
    space = model.search_space()
    xi = cfg.lr if space["xi"] < 0 else space["xi"]
    inputs, targets, _ = train_windows(view.train, max_len, stride=cfg.window_stride or max_len)
    x_tr, y_tr = torch.as_tensor(inputs), torch.as_tensor(targets)
    x_va, y_va = validation_batches(view, max_len)
    w_opt = torch.optim.Adam(model.weight_parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    a_opt = torch.optim.Adam(model.arch_parameters(), lr=space["arch_lr"])
    t0 = time.perf_counter()
    log.info("search over %s: %d epochs, ξ=%g (%s), arch lr %g; α on %d validation queries", space["candidates"],
             space["epochs"], xi, "unrolled one step" if xi > 0 else "first order", space["arch_lr"], len(x_va))

    def step(batch: Batch, forward) -> Step:
        xb, yb = x_tr[batch.idx].to(device), y_tr[batch.idx].to(device)
        vidx = torch.randint(0, len(x_va), (min(cfg.batch_size, len(x_va)),), generator=loop.gen)
        xv, yv = x_va[vidx].to(device), y_va[vidx].to(device)
        nb = loop.negatives(yb)
        loss_v = arch_step(model, a_opt, (xb, yb, nb), (xv, yv, loop.negatives(yv)), xi)
        with model.arch_frozen():  # (2) W on training, α a constant
            loss_t = batch_loss(model, None, xb, yb, nb)
        return Step(loss_t, {"loss": loss_t, "valid_loss": loss_v})

    def finish(e: Epoch) -> dict:
        shares = model.search_result()[1]["p"]
        return {"epoch": e.number, "train_loss": e.means["loss"], "valid_loss": e.means["valid_loss"],
                "seconds": e.seconds, **{f"p@{k}": w for k, w in shares.items()}}

    progress = run_epochs(
        loop, model, [w_opt], step, len(x_tr), space["epochs"], finish, name="the search", desc="search",
        state_path=state_path, state_key=resume_key(model, cfg, data=view.fingerprint(), search=True),
        other_optimizers=(a_opt,), log_row=lambda r: f"search epoch {r['epoch']}: train {r['train_loss']:.4f} valid "
        f"{r['valid_loss']:.4f} softmax(α) " + _shares({k[2:]: v for k, v in r.items() if k.startswith('p@')}))
    overrides, report = model.search_result()
    log.info("search chose %s (softmax(α) %s) in %.1fs", overrides, _shares(report["p"]), time.perf_counter() - t0)
    return {"overrides": overrides, "report": report, "history": progress["history"],
            "seconds": time.perf_counter() - t0}
