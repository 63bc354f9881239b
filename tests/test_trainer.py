"""The training loop's stopping rules and its negatives."""

import numpy as np
import pytest
import torch

from pipeline.config import ProtocolConfig, TrainConfig
from pipeline.data import Sequences, Split
from pipeline.loop import EarlyStopping, Negatives
from pipeline.params import ConfigError
from pipeline.trainer import fit
from tests.tiny import for_view

SMALL = {"hidden": 8, "heads": 2, "inner": 16, "layers": 1}


def tiny_split(users=60, n_items=30, length=25, seed=0):
    rng = np.random.default_rng(seed)
    flat = rng.integers(1, n_items + 1, users * length)
    return Split(Sequences(flat, np.arange(0, users * length + 1, length), n_items))


@pytest.mark.parametrize("patience_steps, expected_epochs", [(1, 2), (5, 4), (6, 4), (7, 5)])
def test_patience_in_optimizer_steps(patience_steps, expected_epochs):
    """lr 0: validation never improves after epoch 1, so training stops once the best is
    `patience_steps` optimizer steps old (2 steps per epoch here) and `patience` (1) epochs have passed."""
    split = tiny_split()  # 60 users x 23 training items, max_len 10 -> 180 windows, batch 90 -> 2 steps/epoch
    model = for_view("sasrec", SMALL, split.training)
    cfg = TrainConfig(epochs=50, batch_size=90, lr=0.0, patience=1, patience_steps=patience_steps, seed=0)
    summary = fit(model, split.training, cfg, ProtocolConfig(ks=[10]), 10)
    steps = [r["step"] for r in summary["history"]]
    assert steps[:2] == [2, 4] and summary["best_epoch"] == 1
    assert len(summary["history"]) == expected_epochs  # 1 + ceil(patience_steps / 2)
    epochs = fit(for_view("sasrec", SMALL, split.training), split.training, TrainConfig(epochs=50, batch_size=90, lr=0.0, patience=3, seed=0),
                 ProtocolConfig(ks=[10]), 10)
    assert len(epochs["history"]) == 4  # patience in epochs when patience_steps is 0
    with pytest.raises(ConfigError, match="patience_steps"):
        TrainConfig(patience_steps=-1)
    # the rule is one object: replayed over the recorded curve, it stops where fit stopped
    for history, rule in ((summary["history"], EarlyStopping(1, patience_steps)),
                          (epochs["history"], EarlyStopping(3))):
        replay = rule.replay([(r["epoch"], r["step"], r["valid/ndcg@10"]) for r in history])
        assert (replay.best_epoch, replay.stopped_at) == (1, len(history))


def test_every_stopping_condition_must_hold():
    """patience (epochs) AND patience_steps AND patience_frac x the best's epoch: each can be the
    one that keeps training going."""
    curve = [(e, 100 * e, 1.0 if e == 20 else e / 40 if e < 20 else 0.9) for e in range(1, 200)]  # best at epoch 20
    stops = {rule: EarlyStopping(*rule).replay(curve).stopped_at
             for rule in [(10, 0, 0.0), (10, 1500, 0.0), (10, 0, 1.0), (10, 500, 0.5), (30, 500, 0.5)]}
    assert stops == {(10, 0, 0.0): 30, (10, 1500, 0.0): 35, (10, 0, 1.0): 40, (10, 500, 0.5): 30, (30, 500, 0.5): 50}
    assert all(EarlyStopping(*rule).replay(curve).best_epoch == 20 for rule in stops)


def test_negatives_are_drawn_once_per_batch_and_only_when_asked():
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    neg = Negatives(torch.zeros(4, 5, dtype=torch.long), num_items=7, per_target=3, generator=gen)
    assert torch.equal(gen.get_state(), state)  # nothing drawn yet: a CE loss never touches the stream
    first = neg()
    assert first.shape == (4, 5, 3) and first.min() >= 1 and first.max() <= 7
    assert torch.equal(neg(), first)  # the same negatives for every use within the batch
    shared = neg.shared()  # sampled softmax: one set for the whole batch, drawn when first asked
    assert shared.shape == (3,) and torch.equal(neg.shared(), shared)


def test_bert4rec_learns_a_sequential_pattern_popularity_cannot():
    """Each user walks the catalogue in order (next = previous + 1): popularity is at chance, the
    cloze-trained bidirectional model (scored at the appended [mask]) finds the next item."""
    from pipeline.evaluation import evaluate_queries

    rng = np.random.default_rng(0)
    n, users, length = 50, 300, 15
    flat = np.concatenate([(rng.integers(0, n) + np.arange(length)) % n + 1 for _ in range(users)])
    split = Split(Sequences(flat, np.arange(0, flat.size + 1, length), n))
    protocol = ProtocolConfig(mask_history=False, ks=[10])
    scores = {}
    for name, section in (("pop", {}), ("bert4rec", {"hidden": 32, "layers": 1, "heads": 2, "inner": 64})):
        torch.manual_seed(0)
        model = for_view(name, section, split.training)
        fit(model, split.training, TrainConfig(epochs=30, batch_size=64, lr=3e-3, patience=30, seed=0, threads=1),
            protocol, 10)
        scores[name] = evaluate_queries(model, split.test_queries(10), protocol, torch.device("cpu")).metrics
    assert scores["bert4rec"]["ndcg@10"] > 0.8 and scores["pop"]["ndcg@10"] < 0.2, scores


def test_progress_shows_in_logs_when_not_a_terminal(caplog):
    import logging
    import time

    from pipeline.progress import progress

    caplog.set_level(logging.INFO)
    for _ in progress(range(3), desc="short", unit="it", log_every=0.5):
        pass
    assert "short" not in caplog.text  # a loop shorter than the interval writes nothing
    for _ in progress(range(12), desc="long loop", unit="item", log_every=0.2):
        time.sleep(0.05)
    lines = [r.getMessage() for r in caplog.records if "long loop" in r.getMessage()]
    assert len(lines) >= 2 and "item/s" in lines[-1] and "12/12" in lines[-1]


def _weights_after(precision: str) -> dict:
    split = tiny_split()
    torch.manual_seed(0)
    model = for_view("sasrec", SMALL, split.training)
    cfg = TrainConfig(epochs=2, batch_size=90, lr=1e-2, patience=10, seed=0, threads=1, precision=precision)
    summary = fit(model, split.training, cfg, ProtocolConfig(ks=[10]), 10)
    return summary, {k: v.clone() for k, v in model.state_dict().items()}


def test_precision_auto_is_fp32_on_cpu_and_bf16_autocast_trains():
    """`auto` is fp32 off CUDA (bit-identical to `fp32`); `bf16` runs the steps under autocast (on CPU
    too, so the path is tested here): it trains to finite weights that differ from the fp32 ones."""
    s_auto, w_auto = _weights_after("auto")
    s_fp32, w_fp32 = _weights_after("fp32")
    s_bf16, w_bf16 = _weights_after("bf16")
    assert s_auto["precision"] == s_fp32["precision"] == "fp32" and s_bf16["precision"] == "bf16"
    assert all(torch.equal(w_auto[k], w_fp32[k]) for k in w_fp32)
    assert all(torch.isfinite(w).all() for w in w_bf16.values())
    assert any(not torch.equal(w_bf16[k], w_fp32[k]) for k in w_fp32 if w_fp32[k].is_floating_point())
    assert all(w.dtype == w_fp32[k].dtype for k, w in w_bf16.items())  # autocast leaves the weights fp32
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="fp16")


def test_sampled_softmax_with_every_item_is_full_softmax_and_logq_shifts_nothing_constant():
    from models.common import sequence_loss

    g = torch.Generator().manual_seed(0)
    hidden, items = torch.randn(3, 5, 8, generator=g), torch.randn(21, 8, generator=g)
    targets = torch.randint(1, 21, (3, 5), generator=g)
    targets[0, :2] = 0  # padding positions carry no target
    ce = sequence_loss(hidden, targets, items, "ce")
    every = torch.arange(1, 21)
    assert torch.allclose(sequence_loss(hidden, targets, items, "sampled_softmax", every), ce, atol=1e-6)
    flat = torch.full((21,), -3.0)
    assert torch.allclose(sequence_loss(hidden, targets, items, "sampled_softmax", every, flat), ce, atol=1e-6)
    skew = torch.linspace(-5, 0, 21)  # a non-uniform log q changes the loss
    assert not torch.allclose(sequence_loss(hidden, targets, items, "sampled_softmax", every, skew), ce, atol=1e-3)
    with pytest.raises(ValueError, match="shared negative"):
        sequence_loss(hidden, targets, items, "sampled_softmax", torch.ones(3, 5, 2, dtype=torch.long))


def test_sampled_softmax_draws_shared_popularity_negatives_and_learns():
    """train.loss sampled_softmax: one set of `negatives` ids per batch, drawn ∝ training counts
    (log q handed to the loss), and SASRec trained with it beats popularity."""
    from pipeline.evaluation import evaluate_queries
    from pipeline.loop import Loop

    rng = np.random.default_rng(0)
    n, users, length = 50, 300, 15
    flat = np.concatenate([(rng.integers(0, n) + np.arange(length)) % n + 1 for _ in range(users)])
    split = Split(Sequences(flat, np.arange(0, flat.size + 1, length), n))
    loop = Loop(seed=0, threads=1, device="cpu", batch_size=8, num_items=n, negatives=16)
    counts = split.training.train.counts()
    loop.sample_by("popularity", counts)
    neg = loop.negatives(torch.ones(8, 10, dtype=torch.long))
    assert neg.shared().shape == (16,) and neg.log_q.shape == (n + 1,)
    assert torch.allclose(neg.log_q[1:].exp().sum().double(), torch.tensor(1.0, dtype=torch.float64), atol=1e-5)
    protocol = ProtocolConfig(mask_history=False, ks=[10])
    scores = {}
    for name, loss in (("pop", "ce"), ("sasrec", "sampled_softmax")):
        model = for_view(name, {} if name == "pop" else {"hidden": 32, "layers": 1, "heads": 2, "inner": 64,
                                                         "loss": loss}, split.training)
        fit(model, split.training, TrainConfig(epochs=15, batch_size=64, lr=3e-3, patience=15, seed=0, threads=1,
                                               loss=loss, negatives=16, negatives_by="popularity"), protocol, 10)
        scores[name] = evaluate_queries(model, split.test_queries(10), protocol, torch.device("cpu"))[0]["ndcg@10"]
    assert scores["sasrec"] > 2 * scores["pop"] + 0.1, scores


def test_sparse_embeddings_touch_only_the_rows_a_step_reads():
    """train.sparse_embeddings with sampled_softmax: one step leaves every item row that was neither
    an input, a target nor a negative bit-identical; with the full softmax it is refused clearly."""
    from pipeline.loop import step_all
    from pipeline.trainer import make_optimizers

    split = tiny_split(users=60, n_items=200)
    model = for_view("sasrec", SMALL | {"loss": "sampled_softmax"}, split.training)
    cfg = TrainConfig(loss="sampled_softmax", sparse_embeddings=True, negatives=5)
    opts = make_optimizers(model, None, list(model.parameters()), cfg)
    assert [type(o).__name__ for o in opts] == ["Adam", "SparseAdam"]
    before = model.item_emb.weight.detach().clone()
    x, y = torch.randint(1, 30, (4, 10)), torch.randint(1, 30, (4, 10))  # ids < 30 only
    neg = torch.tensor([40, 41, 42, 43, 44])
    model.loss(x, y, type("Shared", (), {"shared": lambda self: neg})()).backward()
    assert model.item_emb.weight.grad.is_sparse
    step_all(opts)
    changed = (model.item_emb.weight.detach() != before).any(1).nonzero().flatten()
    assert set(changed.tolist()) <= set(range(1, 30)) | set(neg.tolist()) and len(changed) > 0
    summary = fit(model, split.training, TrainConfig(epochs=2, batch_size=64, lr=1e-2, loss="sampled_softmax",
                                                     negatives=16, sparse_embeddings=True, seed=0, threads=1),
                  ProtocolConfig(ks=[10]), 10)
    assert np.isfinite(summary["history"][-1]["loss"])
    dense = for_view("sasrec", SMALL, split.training)
    with pytest.raises(ConfigError, match="sparse_embeddings"):
        fit(dense, split.training, TrainConfig(epochs=1, sparse_embeddings=True, seed=0, threads=1),
            ProtocolConfig(ks=[10]), 10)


def test_auto_threads_leave_the_cores_of_fixed_thread_runs(tmp_path, monkeypatch):
    """`threads: 0` divides the cores left by fixed-thread pipeline processes (a benchmark pinned to
    one thread) among the auto ones; every pipeline process registers, dead ones are swept."""
    import os

    from pipeline import device

    monkeypatch.setattr(device, "RUNS", tmp_path)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert device.cpu_threads(0) == 4  # alone
    (tmp_path / str(os.getppid())).write_text("1")  # a live process pinned to 1 thread
    assert device.cpu_threads(0) == 3
    (tmp_path / "999999999").write_text("2")  # a dead one: swept, not counted
    assert device.cpu_threads(0) == 3 and not (tmp_path / "999999999").exists()
    assert device.cpu_threads(2) == 2 and (tmp_path / str(os.getpid())).read_text() == "2"  # fixed: registered
