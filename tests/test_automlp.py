"""AutoMLP: short-term windows, the bilevel search step, the retrained model."""

import copy

import pytest
import torch

from models.automlp import WindowSRSMLP
from pipeline.params import ConfigError
from pipeline.search import arch_step, batch_loss
from tests.test_models import batch
from tests.tiny import N_ITEMS, B, L, build


def search_step(model, w_opt, a_opt, train, valid, xi):
    """One step of Algorithm 1 as the search's step and the epoch loop run it: α on the validation
    batch (arch_step), then W on the training batch with α a constant."""
    arch_step(model, a_opt, train, valid, xi)
    with model.arch_frozen():
        loss = batch_loss(model, None, *train)
    w_opt.zero_grad(set_to_none=True)
    loss.backward()
    w_opt.step()


def test_short_term_module_sees_exactly_its_last_k_items():
    torch.manual_seed(0)
    m = WindowSRSMLP(8, k=3, layers=2, expansion=2, dropout=0.0).eval()
    x = torch.randn(2, 10, 8)
    valid = torch.ones(2, 10, 1)
    out = m(x, valid)
    y = x.clone()
    y[:, 5] += torch.randn(8)  # position 5 is inside the windows of positions 5, 6, 7 only
    changed = (m(y, valid) - out).abs().sum(-1).sum(0) > 1e-6
    assert changed.tolist() == [False] * 5 + [True] * 3 + [False] * 2


def steppable(xi):
    torch.manual_seed(0)
    model = build("automlp", dropout=0.0).train()
    w_opt = torch.optim.Adam(model.weight_parameters(), lr=1e-2)
    a_opt = torch.optim.Adam(model.arch_parameters(), lr=1e-1)
    assert all(p is not model.alpha for g in w_opt.param_groups for p in g["params"])
    return model, w_opt, a_opt


def val_batch(seed):
    x, y = batch(seed)
    y[:, :-1] = 0  # the loss sits on the last position only, like the validation item
    return x, y, lambda: None


@pytest.mark.parametrize("xi", [0.0, 0.01])
def test_alpha_learns_only_from_validation_batches(xi):
    base, w_opt, a_opt = steppable(xi)
    hits = []
    runs = {}
    for name, train_seed, val_seed in [("a", 1, 5), ("b", 2, 5), ("c", 1, 6)]:
        model = copy.deepcopy(base)
        wo = torch.optim.Adam(model.weight_parameters(), lr=1e-2)
        ao = torch.optim.SGD([model.alpha], lr=1.0)  # the step is the gradient itself
        hits_before = len(hits)
        model.alpha.register_hook(lambda g: hits.append(g.clone()))
        search_step(model, wo, ao, (*batch(train_seed), lambda: None), val_batch(val_seed), xi)
        assert len(hits) == hits_before + 1  # one gradient reaches α per step: the validation one
        runs[name] = model
    alpha = {k: m.alpha.detach() for k, m in runs.items()}
    assert not torch.equal(alpha["a"], base.alpha.detach())  # α moved
    assert not torch.allclose(alpha["a"], alpha["c"])  # another validation batch: another α step
    if xi == 0:  # first order: the training batch cannot influence α at all
        torch.testing.assert_close(alpha["a"], alpha["b"])
    w = {k: dict(m.named_parameters())["out.weight"].detach() for k, m in runs.items()}
    assert not torch.allclose(w["a"], w["b"])  # W moved with its own (training) batch


def test_frozen_alpha_gets_no_training_gradient():
    model = build("automlp")
    seqs, targets = batch()
    with model.arch_frozen():
        model(seqs, targets, lambda: None).backward()
    assert model.alpha.grad is None


def test_retrained_model_has_only_the_chosen_branch():
    full = build("automlp")
    with torch.no_grad():
        full.alpha.copy_(torch.tensor([0.1, 2.0]))
    overrides, report = full.search_result()
    k = report["k"]
    assert overrides == {"short_lengths": [5]} and k == 5 and report["p"]["5"] > report["p"]["2"]
    retrained = build("automlp", short_lengths=[k])
    assert len(retrained.short) == 1 and retrained.short[0].k == 5
    assert not any(n.startswith("short.1") for n, _ in retrained.named_parameters())
    seqs, _ = batch()
    assert retrained.encode(seqs).shape == (B, L, 16) and retrained.item_vectors().shape[0] == N_ITEMS + 1


def test_bad_lengths_are_clear_errors():
    with pytest.raises(ConfigError, match="short_lengths"):
        build("automlp", short_lengths=[2, 80])
