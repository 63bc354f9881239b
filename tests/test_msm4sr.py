"""MSM4SR: mixup, sequence dropout, the contrastive losses by hand, ablation switches, pre-trained init."""

import math

import pytest
import torch

from models.common import sequence_loss
from models.msm4sr import cmcl, complementary_mixup, drop_items, info_nce_pair
from pipeline import builder
from pipeline.pretrain import pretrained_parameters
from tests.test_models import batch
from tests.tiny import build


def test_mixup_is_complementary_and_dominated_by_own_modality():
    zt, zv = torch.zeros(64, 20, 4), torch.ones(64, 20, 4)
    gen = torch.Generator().manual_seed(0)
    ps = []
    for _ in range(200):
        mt, mv, p = complementary_mixup(zt, zv, gen)
        ps.append(p)
        assert 0.0 <= p <= 0.5
        assert torch.equal(mt + mv, torch.ones_like(mt))  # every item: one copy of each modality
        assert mt.mean() <= p + 0.08  # Mᵗ stays mostly text when p <= 0.5
    assert max(ps) > 0.45 and min(ps) < 0.05  # p really spans [0, 0.5]


def test_sequence_dropout_keeps_order_and_last_item():
    seqs = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6, 7, 9]])
    out = drop_items(seqs, 0.5, torch.Generator().manual_seed(0))
    for row, orig in zip(out.tolist(), seqs.tolist()):
        kept = [x for x in row if x]
        assert kept[-1] == orig[-1] and kept == [x for x in orig if x in kept]  # a subsequence, same order
        assert row[: len(row) - len(kept)] == [0] * (len(row) - len(kept))  # re-left-padded
    assert (out > 0).sum() < (seqs > 0).sum()
    assert torch.equal(drop_items(seqs, 0.0), seqs)


def f(a, b, tau):
    cos = sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
    return math.exp(cos / tau)


def test_contrastive_losses_match_hand_computation():
    tau = 0.5
    a = [[1.0, 0.0], [0.6, 0.8], [-1.0, 0.2]]
    b = [[0.9, 0.1], [0.0, 1.0], [-0.5, -0.5]]
    z = [[1.0, 0.2], [0.3, 0.9], [-0.7, 0.1]]
    n = 3
    nip = -sum(math.log((f(a[j], z[j], tau) + f(b[j], z[j], tau)) /
                        sum(f(a[j], z[k], tau) + f(b[j], z[k], tau) for k in range(n))) for j in range(n)) / n

    def ell(x, y, j):
        den = sum(f(x[j], y[k], tau) for k in range(n)) + sum(f(x[j], x[k], tau) for k in range(n) if k != j)
        return math.log(f(x[j], y[j], tau) / den)

    cm = -0.5 * sum(ell(a, b, j) + ell(b, a, j) for j in range(n)) / n
    ta, tb, tz = torch.tensor(a), torch.tensor(b), torch.tensor(z)
    assert info_nce_pair(ta, tb, tz, tau).item() == pytest.approx(nip, rel=1e-5)
    assert cmcl(ta, tb, tau).item() == pytest.approx(cm, rel=1e-5)


SWITCHES = [{}, {"nip": False}, {"cmcl": False}, {"mixup": False}, {"e2e_weight": 0.5}, {"modalities": ["text"]},
            {"modalities": ["image"]}, {"use_ids": False}, {"freeze_transformer": True}]


@pytest.mark.parametrize("switch", SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "default")
def test_every_switch_pretrains_and_finetunes(switch):
    torch.manual_seed(0)
    model = build("msm4sr", **switch).train()  # built for fine-tuning (MSM4SR_Cross: the Transformer frozen)
    seqs, targets = batch()
    out = model.pretrain_loss(seqs, targets[:, -1].clamp_min(1), torch.Generator().manual_seed(0))
    assert set(out) == {"loss", "nip_t", "nip_v", "cmcl_t", "cmcl_v"} and torch.isfinite(out["loss"])
    if switch.get("nip") is False:
        assert out["nip_t"] == 0 and out["cmcl_t"] > 0
    if switch.get("cmcl") is False:
        assert out["cmcl_t"] == 0 and out["nip_t"] > 0
    h, v = model.encode(seqs), model.item_vectors()
    assert h.shape[-1] == v.shape[-1] == 16 * len(model.cfg.modalities)
    loss = torch.nn.functional.cross_entropy((h[:, -1] @ v.T)[:, 1:], targets[:, -1].clamp_min(1) - 1)
    seed = torch.get_rng_state()
    own = model.loss(seqs, targets, None)  # fine-tuning loss (+ the pre-training loss for MSM4SR_E2E)
    torch.set_rng_state(seed)
    plain = sequence_loss(model.encode(seqs), targets, model.item_vectors(), "ce")
    assert (not torch.allclose(own, plain)) == (switch.get("e2e_weight", 0) > 0)
    (loss + own + out["loss"]).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is None or torch.isfinite(g).all() for g in grads.values())
    if switch.get("freeze_transformer"):
        assert all(g is None for n, g in grads.items() if n.startswith("transformer"))


def test_finetuning_has_no_mixup_or_sequence_dropout():
    model = build("msm4sr", dropout=0.0, seq_dropout=0.9).train()
    seqs, _ = batch()
    a, b = model.encode(seqs), model.encode(seqs)
    assert torch.equal(a, b) and torch.allclose(a, model.eval().encode(seqs))


def test_pretrained_weights_change_outputs_and_bad_checkpoints_are_clear_errors(tmp_path):
    torch.manual_seed(0)
    source = build("msm4sr")
    for p in source.pretrained_state().values():
        p.add_(0.1)
    torch.save({"model": "msm4sr", "state": source.pretrained_state(), "meta": {"epochs": 1}},
               tmp_path / builder.PRETRAINED_WEIGHTS)
    model = build("msm4sr", pretrained=True).eval()
    seqs, _ = batch()
    before = model.encode(seqs).detach().clone()
    assert builder.start_pretrained(model, "msm4sr", tmp_path)["epochs"] == 1
    assert not torch.allclose(before, model.encode(seqs))
    torch.testing.assert_close(model.pretrained_state()["transformer.pos.weight"],
                               source.pretrained_state()["transformer.pos.weight"])
    assert builder.start_pretrained(build("msm4sr", pretrained=False), "msm4sr", tmp_path) is None
    with pytest.raises(FileNotFoundError, match="pretrained: false"):
        builder.start_pretrained(build("msm4sr", pretrained=True), "msm4sr", tmp_path / "nowhere")
    other = build("msm4sr", hidden=8, inner=16)
    with pytest.raises(ValueError, match="shape mismatch"):
        other.load_pretrained(source.pretrained_state(), "src.pt")
    with pytest.raises(ValueError, match="missing"):
        model.load_pretrained({k: v for k, v in source.pretrained_state().items() if not k.startswith("proj")},
                              "src.pt")


def test_text_only_catalogue_pretrains_nip_on_text_alone():
    torch.manual_seed(0)
    model = build("msm4sr").train()
    model.feats.image_mask.zero_()  # no item has an image (e.g. the Amazon text-only sets)
    seqs, targets = batch()
    out = model.pretrain_loss(seqs, targets[:, -1].clamp_min(1), torch.Generator().manual_seed(0))
    assert out["nip_t"] > 0 and out["nip_v"] == 0 and out["cmcl_t"] == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert model.enc["text"].experts.weight.grad.abs().sum() > 0
    no_nip = build("msm4sr", nip=False)
    no_nip.feats.image_mask.zero_()
    with pytest.raises(ValueError, match="nothing to pre-train"):
        no_nip.pretrain_loss(seqs, targets[:, -1].clamp_min(1))


def test_freeze_transformer_acts_at_fine_tuning_only():
    """The flag set in params.yaml for MSM4SR_Cross must not freeze the source run's pre-training."""
    torch.manual_seed(0)
    model = build("msm4sr", freeze_transformer=True).train()
    assert not any(p.requires_grad for p in model.transformer.parameters())  # fine-tuning: frozen
    assert all(p.requires_grad for p in model.enc.parameters())
    trained = {id(p) for p in pretrained_parameters(model)}
    assert all(id(p) in trained for p in model.transformer.parameters())  # pre-training trains it ...
    assert not any(id(p) in trained for p in model.item_emb.parameters())  # ... and not the fine-tuning IDs
    seqs, targets = batch()
    model.pretrain_loss(seqs, targets[:, -1].clamp_min(1), torch.Generator().manual_seed(0))["loss"].backward()
    assert all(p.grad is not None for p in model.transformer.parameters())


def test_warm_only_pretraining_never_sees_a_cold_item():
    import numpy as np

    from pipeline.data import Sequences, Split
    from pipeline.pretrain import pretrain_pairs, remove_items

    rng = np.random.default_rng(0)
    flat = np.concatenate([rng.integers(1, 6, 30 * 20), rng.integers(6, 40, 30 * 2)])  # items 6.. are rare
    rng.shuffle(flat)
    view = Split(Sequences(flat, np.arange(0, flat.size + 1, 22), 40)).training
    x_all, y_all, _ = pretrain_pairs(view, 10)
    x, y, stats = pretrain_pairs(view, 10, warm_only=True, threshold=10)
    cold = view.train.counts() < 10
    assert cold[y_all.numpy()].any() and cold[x_all.numpy()[x_all.numpy() > 0]].any()  # the plain pairs have some
    assert not cold[y.numpy()].any() and not cold[x.numpy()[x.numpy() > 0]].any()  # warm-only: none anywhere
    assert stats["cold_items"] == int(cold[1:].sum()) and len(y) <= len(y_all) - stats["pairs_with_cold_target"]
    assert (x > 0).any(1).all()  # no empty prefix is left
    # removal keeps the order of what remains and re-left-pads
    assert remove_items(np.array([[0, 7, 1, 8, 2]]), np.isin(np.arange(41), [7, 8])).tolist() == [[0, 0, 0, 1, 2]]


def test_one_pass_prefix_loss_equals_per_pair_loss_when_each_window_has_one_target():
    """`pretrain_loss_windows` with one target per window (the last position), no augmentation and
    one group: the same pairs and states as `pretrain_loss` on (window, last target)."""
    torch.manual_seed(0)
    model = build("msm4sr", mixup=False, seq_dropout=0.0).eval()
    seqs, targets = batch()
    last = targets[:, -1].clamp_min(1)
    only_last = torch.zeros_like(targets)
    only_last[:, -1] = last
    per_pair = model.pretrain_loss(seqs, last)
    one_pass = model.pretrain_loss_windows(seqs, only_last, torch.Generator().manual_seed(0), group=len(seqs))
    for k in per_pair:
        assert one_pass[k].item() == pytest.approx(per_pair[k].item(), rel=1e-5), k
    every = model.train().pretrain_loss_windows(seqs, targets, torch.Generator().manual_seed(0), group=4)
    assert torch.isfinite(every["loss"]) and every["loss"] > 0  # every prefix, in groups of 4 pairs
    every["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.transformer.parameters())


@pytest.mark.parametrize("ablation", [{"nip": False}, {"cmcl": False}, {"mixup": False}])
def test_each_table_iii_ablation_pre_trains_in_one_pass_mode(ablation):
    """The ablations the paper-budget study pre-trains (one pass, 64 windows a step): the loss keeps
    only the objectives left on, and trains the sequence encoder."""
    torch.manual_seed(0)
    model = build("msm4sr", **ablation).train()
    seqs, targets = batch()
    out = model.pretrain_loss_windows(seqs, targets, torch.Generator().manual_seed(0), group=4)
    assert torch.isfinite(out["loss"]) and out["loss"] > 0
    off = next(k for k, v in ablation.items() if v is False)
    if off in ("nip", "cmcl"):
        assert off not in out or float(out[off]) == 0.0, out
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.transformer.parameters())
