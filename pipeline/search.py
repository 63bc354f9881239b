"""AutoMLP's search phase (automlp.md §2.4.1, Algorithm 1): a DARTS bilevel optimisation of the
short-term length.

Each step: (1) a validation mini-batch — each user's last window of the training view, the loss on
the validation item s[n-2] after it; never the test item, which the training view does not hold —
updates α through the one-step approximation W* ≈ W - ξ∇W L_train(W, α) (eq. 7), differentiated
exactly with autograd (ξ = 0: the first-order approximation); (2) a training mini-batch (the
trainer's windows, batching, seeding and negatives: `trainer.Loop`) updates W with α held constant. α never sees a training gradient and W never sees a
validation gradient. The train stage then keeps the length with the largest α and retrains.
"""

from __future__ import annotations

import logging
import time

import torch
from torch.func import functional_call

from pipeline.data import TrainView, train_windows
from pipeline.trainer import Loop, TrainConfig

log = logging.getLogger("pipeline.search")


def _shares(lengths, weights) -> str:
    """'2:0.293 5:0.320 …' — softmax(α) per candidate length, for the log."""
    return " ".join(f"{k}:{float(w):.3f}" for k, w in zip(lengths, weights))


def batch_loss(model, params: dict | None, x: torch.Tensor, y: torch.Tensor, neg) -> torch.Tensor:
    """The model's training loss (its `forward`), optionally with substituted parameters (the unrolled step)."""
    return model(x, y, neg) if params is None else functional_call(model, params, (x, y, neg))


def search_step(model, w_opt, a_opt, train: tuple, valid: tuple, xi: float) -> tuple[float, float]:
    """One step of Algorithm 1; each batch is (inputs, targets, negatives). Returns the losses."""
    xb, yb, nb = train
    xv, yv, nv = valid
    # (1) α on validation, through W' = W - ξ ∇W L_train(W, α)   (eqs. 6-7)
    model.freeze_alpha = False
    if xi > 0:
        params = dict(model.named_parameters())
        names = [n for n in params if n != "alpha"]
        g = torch.autograd.grad(batch_loss(model, None, xb, yb, nb), [params[n] for n in names],
                                create_graph=True, allow_unused=True)
        unrolled = {n: (params[n] - xi * gi if gi is not None else params[n]) for n, gi in zip(names, g)}
        unrolled["alpha"] = params["alpha"]
        loss_v = batch_loss(model, unrolled, xv, yv, nv)
    else:
        loss_v = batch_loss(model, None, xv, yv, nv)
    (grad_alpha,) = torch.autograd.grad(loss_v, [model.alpha])
    a_opt.zero_grad(set_to_none=True)
    model.alpha.grad = grad_alpha
    a_opt.step()
    # (2) W on training, α a constant
    model.freeze_alpha = True
    try:
        loss_t = batch_loss(model, None, xb, yb, nb)
        w_opt.zero_grad(set_to_none=True)
        loss_t.backward()
        w_opt.step()
    finally:
        model.freeze_alpha = False
    return loss_t.item(), loss_v.item()


def validation_batches(view: TrainView, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """α's examples: each user's last training window, the loss on the validation item only."""
    queries = view.valid_queries(max_len)
    x_va = torch.as_tensor(queries.inputs)
    y_va = torch.zeros_like(x_va)
    y_va[:, -1] = torch.as_tensor(queries.targets)
    return x_va, y_va


def search(model, view: TrainView, cfg: TrainConfig, max_len: int) -> dict:
    """Run the search phase on `model` (all candidate lengths); returns k, α and timings."""
    loop = Loop.for_training(cfg, view.num_items)
    device = loop.device
    model.to(device)
    mc = model.cfg
    xi = cfg.lr if mc.xi < 0 else mc.xi
    inputs, targets, _ = train_windows(view.train, max_len, stride=cfg.window_stride or max_len)
    x_tr, y_tr = torch.as_tensor(inputs), torch.as_tensor(targets)
    x_va, y_va = validation_batches(view, max_len)
    w_opt = torch.optim.Adam(model.weight_parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    a_opt = torch.optim.Adam([model.alpha], lr=mc.arch_lr)
    history, t0 = [], time.perf_counter()
    log.info("AutoMLP search over short-term lengths %s: %d epochs, ξ=%g (%s), arch lr %g; α on %d validation "
             "queries", mc.short_lengths, mc.search_epochs, xi, "unrolled one step" if xi > 0 else "first order",
             mc.arch_lr, len(x_va))
    for epoch in range(1, mc.search_epochs + 1):
        model.train()
        te = time.perf_counter()
        sums = {"train": 0.0, "valid": 0.0}
        steps = 0
        for idx in loop.batches(len(x_tr), f"search {epoch}"):
            xb, yb = x_tr[idx].to(device), y_tr[idx].to(device)
            vidx = torch.randint(0, len(x_va), (min(cfg.batch_size, len(x_va)),), generator=loop.gen)
            xv, yv = x_va[vidx].to(device), y_va[vidx].to(device)
            loss_t, loss_v = search_step(model, w_opt, a_opt, (xb, yb, loop.negatives(yb)),
                                         (xv, yv, loop.negatives(yv)), xi)
            sums["train"] += loss_t
            sums["valid"] += loss_v
            steps += 1
        weights = model.alpha.detach().softmax(0).cpu().tolist()
        row = {"epoch": epoch, "train_loss": sums["train"] / steps, "valid_loss": sums["valid"] / steps,
               "seconds": time.perf_counter() - te, **{f"p@{k}": w for k, w in zip(mc.short_lengths, weights)}}
        history.append(row)
        log.info("search epoch %d: train %.4f valid %.4f softmax(α) %s", epoch, row["train_loss"], row["valid_loss"],
                 _shares(mc.short_lengths, weights))
    k = model.chosen_length()
    probs = model.alpha.detach().softmax(0).cpu().numpy()
    log.info("search chose short-term length k=%d (softmax(α) %s) in %.1fs", k,
             _shares(mc.short_lengths, probs), time.perf_counter() - t0)
    return {"k": k, "alpha": model.alpha.detach().cpu().tolist(),
            "p": {str(kk): float(p) for kk, p in zip(mc.short_lengths, probs)},
            "seconds": time.perf_counter() - t0, "history": history}
