"""Every registered model: forward, loss, backward; causality; padding; checkpoint round trip."""

import pytest
import torch

from models import MODELS
from models.common import sequence_loss
from models.contract import problems
from models.sasrec import SASRecEncoder
from pipeline import builder
from pipeline.checkpoint import save_checkpoint
from pipeline.params import ConfigError
from tests.tiny import N_ITEMS, B, L, build, inputs

TRAINABLE = [m for m in MODELS if any(p.requires_grad for p in build(m).parameters())]  # pop: none
CAUSAL = [m for m in TRAINABLE if builder.traits(m).causal]
OWN_LOSS = {"mmsr": "fuses the batch's items once (test_mmsr checks it equals this)",
            "bert4rec": "the cloze loss (test_bert4rec)"}
USERS = torch.arange(B)


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    seqs = torch.randint(1, N_ITEMS + 1, (B, L), generator=g)
    seqs[0, :4] = 0  # left padding
    targets = torch.randint(1, N_ITEMS + 1, (B, L), generator=g)
    targets[seqs == 0] = 0
    return seqs, targets


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_keeps_the_contract(name):
    """Config, hooks and flags as models/contract.py lists them (what the builder would refuse)."""
    assert problems(MODELS[name]) == []


def test_the_contract_names_what_a_model_lacks():
    from dataclasses import dataclass

    from torch import nn

    @dataclass
    class Cfg:
        hidden: int = 8

    class Broken(nn.Module):
        Config = Cfg
        FEATURES = ("text",)
        FEATURE = ("image",)  # a misspelt flag
        PROCEDURE = "search_then_fit"

    found = " ".join(problems(Broken))
    assert "unknown class flag(s) ['FEATURE']" in found
    del Broken.FEATURE
    found = " ".join(problems(Broken))
    assert "`text_table: str" in found and "encode(" in found and "search_space()" in found, found


@pytest.mark.parametrize("name", TRAINABLE)
@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_forward_loss_backward(name, loss):
    """The model's own loss: the next-item loss of its states against its item vectors; negatives are
    drawn (through the callable) only for bce."""
    torch.manual_seed(0)
    model = build(name, loss=loss)
    seqs, targets = batch()
    h = model.encode(seqs, USERS)
    vecs = model.item_vectors()
    assert h.shape[:2] == (B, L) and vecs.shape == (N_ITEMS + 1, h.shape[-1])
    neg = torch.randint(1, N_ITEMS + 1, (B, L, 2))
    calls = []
    value = model.loss(seqs, targets, lambda: calls.append(1) or neg, USERS)
    assert calls == ([1] if loss == "bce" else [])
    assert value.ndim == 0 and torch.isfinite(value)
    if name not in OWN_LOSS:
        model.eval()
        torch.testing.assert_close(model.loss(seqs, targets, lambda: neg, USERS),
                                   sequence_loss(model.encode(seqs, USERS), targets, model.item_vectors(), loss, neg))
        model.train()
    value.backward()
    skip = builder.traits(name).pretrain_only  # parameters only the pre-training loss uses
    grads = [p.grad for n, p in model.named_parameters() if p.requires_grad and not n.startswith(skip)]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def counts_of(items, num_items):
    """Training-view item counts of exactly these items (one user)."""
    import numpy as np

    from pipeline.data import Sequences

    return torch.as_tensor(Sequences(np.array(items), np.array([0, len(items)]), num_items).counts())


def test_pop_ranks_by_training_frequency():
    model = build("pop", num_items=5, inputs_over={"item_counts": counts_of([3, 3, 3, 1, 1, 5], 5)})
    scores = (model.encode(torch.zeros(1, 2, dtype=torch.long))[:, -1] @ model.item_vectors().T)[0]
    assert scores.tolist() == [0, 2, 0, 3, 0, 1]


@pytest.mark.parametrize("name", CAUSAL)
def test_causality(name):
    """Changing a later item leaves every earlier output unchanged."""
    torch.manual_seed(0)
    model = build(name).eval()
    seqs, _ = batch()
    t = 6
    changed = seqs.clone()
    changed[:, t + 1:] = (changed[:, t + 1:] % N_ITEMS) + 1
    with torch.no_grad():
        a, b = model.encode(seqs, USERS), model.encode(changed, USERS)
    assert torch.allclose(a[:, : t + 1], b[:, : t + 1], atol=1e-5)
    if builder.traits(name).reads_sequence:
        assert not torch.allclose(a[:, t + 1:], b[:, t + 1:], atol=1e-5)  # the change is visible later


@pytest.mark.parametrize("variant", ["pre_ln", "post_ln"])
def test_sasrec_ignores_padding_contents_and_amount(variant):
    torch.manual_seed(0)
    enc = SASRecEncoder(16, 2, 2, 32, 0.0, 12, post_ln=variant == "post_ln").eval()
    x = torch.randn(2, 12, 16)
    pad = torch.zeros(2, 12, dtype=torch.bool)
    pad[:, :5] = True
    noisy = x.clone()
    noisy[:, :5] = torch.randn(2, 5, 16) * 10  # garbage where padding is
    with torch.no_grad():
        assert torch.allclose(enc(x, pad)[:, 5:], enc(noisy, pad)[:, 5:], atol=1e-5)
    # the same items behind more left padding give the same outputs
    model = build("sasrec", inputs_over={"max_len": 12}, dropout=0.0, variant=variant, padding="blocked").eval()
    short, longer = torch.tensor([[0, 0, 3, 4, 5]]), torch.tensor([[0, 0, 0, 0, 0, 0, 3, 4, 5]])
    with torch.no_grad():
        assert torch.allclose(model.encode(short)[:, -3:], model.encode(longer)[:, -3:], atol=1e-5)
    assert_only_the_last_state_moves(model)  # causality holds in both layouts


def assert_only_the_last_state_moves(model) -> torch.Tensor:
    """Changing the last item changes the last state and no earlier one; returns the states."""
    seqs = torch.tensor([[0, 0, 3, 4, 5, 6, 7]])
    changed = seqs.clone()
    changed[0, -1] = 9
    with torch.no_grad():
        a, b = model.encode(seqs), model.encode(changed)
    assert torch.allclose(a[:, :-1], b[:, :-1], atol=1e-5) and not torch.allclose(a[:, -1], b[:, -1])
    return a


@pytest.mark.parametrize("name", list(MODELS))
def test_checkpoint_rebuilds_the_model(name, tmp_path):
    torch.manual_seed(0)
    model = build(name, inputs_over={"item_counts": counts_of([1, 2, 2, 7], N_ITEMS)}).eval()
    save_checkpoint(tmp_path / "m.pt", name, model, builder.model_config(model), inputs(name).describe(), {"x": 1})
    loaded, ckpt = builder.load_model(tmp_path / "m.pt")
    seqs, _ = batch()
    with torch.no_grad():
        assert torch.equal(model.encode(seqs, USERS), loaded.eval().encode(seqs, USERS))
        assert torch.equal(model.item_vectors(), loaded.item_vectors())
    assert ckpt["model"] == name and ckpt["inputs"]["max_len"] == L and ckpt["meta"] == {"x": 1}


def test_bad_checkpoint_and_model_names_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the train stage"):
        builder.load_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        builder.load_model(tmp_path / "junk.pt")
    with pytest.raises(ConfigError, match="registered models"):
        builder.build("bert5rec", {}, inputs("pop"))
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['hiden'\]"):
        build("sasrec", hiden=3)


def test_fast_dropout_is_inverted_dropout():
    from models.common import fast_dropout

    torch.manual_seed(0)
    x = torch.ones(200_000)
    y = fast_dropout(x, 0.3, training=True)
    assert abs((y == 0).float().mean().item() - 0.3) < 0.01
    assert abs(y.mean().item() - 1.0) < 0.02  # expectation preserved
    assert torch.equal(fast_dropout(x, 0.3, training=False), x)


@pytest.mark.parametrize("name", ["mlpmixer", "m2sr"])
def test_mixers_ignore_padding_amount(name):
    model = build(name, dropout=0.0).eval()
    short, longer = torch.tensor([[0, 0, 3, 4, 5]]), torch.tensor([[0, 0, 0, 0, 0, 0, 3, 4, 5]])
    with torch.no_grad():
        assert torch.allclose(model.encode(short)[:, -3:], model.encode(longer)[:, -3:], atol=1e-5)


def test_m2sr_scores_items_through_their_content():
    model = build("m2sr", dropout=0.0).eval()
    before = model.item_vectors().detach().clone()
    with torch.no_grad():
        model.feats.image[5] += 1.0  # change one item's image features
    after = model.item_vectors().detach()
    changed = (after - before).abs().sum(1) > 1e-6
    assert changed[5] and changed.sum() == 1  # only that item's output vector moves


def test_feature_model_needs_features_and_checks_shapes():
    with pytest.raises(ConfigError, match="no feature tables"):
        build("m2sr", inputs_over={"features": {}})
    from models.contract import FeatureTable

    wrong = {"text": FeatureTable(torch.zeros(N_ITEMS, 9), torch.ones(N_ITEMS, dtype=torch.bool)),
             "image": FeatureTable(torch.zeros(N_ITEMS + 1, 9), torch.ones(N_ITEMS + 1, dtype=torch.bool))}
    with pytest.raises(ConfigError, match="do not fit a catalogue of 40 items"):
        build("m2sr", inputs_over={"features": wrong})


def test_sasrec_visible_padding_is_causal_and_ignores_padding_contents():
    """padding: visible (pmixer's layout): padding rows are zeroed, so their contents never matter, but
    they take part in the attention softmax, so the amount of padding changes real outputs."""
    torch.manual_seed(0)
    long_window = {"max_len": 12}
    model = build("sasrec", inputs_over=long_window, dropout=0.0, padding="visible").eval()
    seqs = torch.tensor([[0, 0, 3, 4, 5, 6, 7]])
    a = assert_only_the_last_state_moves(model)
    with torch.no_grad():
        longer = torch.tensor([[0, 0, 0, 0, 0, 3, 4, 5, 6, 7]])
        assert not torch.allclose(model.encode(longer)[:, -5:], a[:, -5:], atol=1e-5)
    blocked = build("sasrec", inputs_over=long_window, dropout=0.0, padding="blocked")
    blocked.load_state_dict(model.state_dict())  # same weights: only the mask differs
    with torch.no_grad():
        assert not torch.allclose(blocked.eval().encode(seqs)[:, -1], a[:, -1], atol=1e-5)
    with pytest.raises(ConfigError, match="padding.: 'open' is not allowed"):
        build("sasrec", padding="open")


def test_user_factor_models_score_by_user():
    """BPR-MF ignores the sequence and scores by user; FPMC adds the last item's transition term."""
    torch.manual_seed(0)
    seqs, _ = batch()
    mf, fpmc = build("bprmf").eval(), build("fpmc").eval()
    other = torch.roll(USERS, 1)
    with torch.no_grad():
        assert torch.equal(mf.encode(seqs, USERS), mf.encode(torch.flip(seqs, [1]), USERS))
        assert not torch.allclose(mf.encode(seqs, USERS), mf.encode(seqs, other))
        scores = fpmc.encode(seqs, USERS)[:, -1] @ fpmc.item_vectors().T
        hand = fpmc.ui(USERS) @ fpmc.iu.weight.T + fpmc.li(seqs[:, -1]) @ fpmc.il.weight.T
        torch.testing.assert_close(scores, hand)
    with pytest.raises(ValueError, match="pass `users`"):
        mf.encode(seqs)
    with pytest.raises(ConfigError, match="num_users"):
        build("fpmc", inputs_over={"num_users": 0})


def test_bert4rec_masks_its_windows_and_predicts_at_the_appended_mask():
    torch.manual_seed(0)
    model = build("bert4rec", dropout=0.0).eval()
    seqs, targets = batch()
    with torch.no_grad():
        h = model.encode(seqs)
        changed = seqs.clone()
        changed[:, 3] = (changed[:, 3] % N_ITEMS) + 1
        assert not torch.allclose(model.encode(changed)[:, -1], h[:, -1])  # bidirectional: every input counts
        x = torch.cat([seqs[:, 1:], torch.full_like(seqs[:, :1], model.mask_id)], 1)
        torch.testing.assert_close(h, model.states(x))
    assert model.item_vectors().shape == (N_ITEMS + 1, 17)  # the mask token is never ranked; + the bias
    seen = []
    orig = model.states

    def spy(x):
        seen.append(x.clone())
        return orig(x)

    model.states = spy
    full = torch.randint(1, N_ITEMS + 1, (200, L))
    for _ in range(40):
        model.loss(full, torch.roll(full, -1, 1), None)
    masked = torch.stack(seen) == model.mask_id  # (batches, windows, L)
    assert masked.any(2).all()  # every window predicts something
    last_only = (masked.sum(2) == 1).all(1) & masked[:, :, -1].all(1)
    assert 0.2 < last_only.float().mean() < 0.8  # ft_ratio 0.5: whole batches of last-item prediction
    assert masked[~last_only][:, :, :-1].float().mean() == pytest.approx(0.2, abs=0.03)  # the others: mask_ratio


@pytest.mark.parametrize("width, expected", [(0, 48), (20, 20)])
def test_m2sr_fusion_width_follows_eq_2_or_the_parameter(width, expected):
    """Eq. 2: Ŷ = Linear(Yⁱ ‖ Yᵗ ‖ Yˢ) keeps D = D_I + D_T + D_S (3 x hidden 16 = 48) unless narrowed."""
    model = build("m2sr", fusion_width=width)
    seqs, _ = batch()
    assert model.fuse.out_features == expected and model.encode(seqs).shape[-1] == expected
    assert model.item_vectors().shape == (N_ITEMS + 1, expected)


@pytest.mark.parametrize("block", [1, 3, 7, 1000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_chunked_cross_entropy_equals_the_full_softmax(block, dtype):
    """ce_chunked: items in blocks, the log-sum-exp carried across them and the softmax recomputed
    in the backward — the same loss and the same gradients as F.cross_entropy over the whole logit
    matrix (padding row 0 never a class), for any block size."""
    from models.common import chunked_cross_entropy

    torch.manual_seed(0)
    h = (torch.randn(40, 8, dtype=dtype) * 3).requires_grad_()
    w = torch.randn(23, 8, dtype=dtype).requires_grad_()
    t = torch.randint(1, 23, (40,))
    logits = h @ w.T
    logits = torch.cat([torch.full_like(logits[:, :1], float("-inf")), logits[:, 1:]], 1)
    want = torch.nn.functional.cross_entropy(logits, t)
    gh, gw = torch.autograd.grad(want, (h, w))
    got = chunked_cross_entropy(h, w, t, block)
    ch, cw = torch.autograd.grad(got * 1.0, (h, w))
    tol = 1e-5 if dtype == torch.float32 else 1e-6  # the chunked loss computes in float32
    torch.testing.assert_close(got.to(dtype), want, atol=tol, rtol=tol)
    torch.testing.assert_close(ch, gh, atol=tol, rtol=tol)
    torch.testing.assert_close(cw, gw, atol=tol, rtol=tol)
    assert cw[0].abs().sum() == 0  # the padding row gets no gradient


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "bert4rec", "mmsr"])
def test_a_model_trains_with_the_chunked_loss_as_with_ce(name):
    torch.manual_seed(0)
    model = build(name, loss="ce_chunked").eval()
    seqs, targets = batch()
    torch.manual_seed(1)  # BERT4Rec draws its masks: the same draws for both losses
    chunked = model.loss(seqs, targets, None, USERS)
    model.loss_kind = "ce"
    torch.manual_seed(1)
    torch.testing.assert_close(chunked, model.loss(seqs, targets, None, USERS), atol=1e-5, rtol=1e-5)
