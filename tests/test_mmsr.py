"""MMSR (ID-agnostic fusion study): every fusion x backbone, no item-count parameters, unseen items."""

import pytest
import torch

from models.common import ItemFeatures, sequence_loss
from models.contract import FeatureTable, ModelInputs
from models.mmsr import BACKBONES, FUSIONS
from pipeline import builder
from pipeline.config import ProtocolConfig, TrainConfig
from pipeline.params import ConfigError
from pipeline.trainer import fit
from tests.test_models import batch
from tests.tiny import N_ITEMS, build


@pytest.mark.parametrize("backbone", list(BACKBONES))
@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("modalities", [["text", "image"], ["text"], ["image"]], ids=["mmsr", "t", "v"])
def test_every_fusion_and_backbone_trains(fusion, backbone, modalities):
    torch.manual_seed(0)
    model = build("mmsr", fusion=fusion, backbone=backbone, modalities=modalities, fusion_blocks=2).train()
    seqs, targets = batch()
    h, vecs = model.encode(seqs), model.item_vectors()
    assert h.shape == (*seqs.shape, 16) and vecs.shape == (N_ITEMS + 1, 16)
    assert torch.all(vecs[0] == 0)  # padding
    neg = torch.randint(1, N_ITEMS + 1, (*targets.shape, 1))
    loss = sequence_loss(h, targets, vecs, "bce", neg) + sequence_loss(h, targets, vecs, "ce")
    assert torch.isfinite(loss)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is None or torch.isfinite(g).all() for g in grads.values())
    used = [m for m in ("text", "image") if m in modalities]
    for m in used:  # each used modality's projection learns from the loss
        assert grads[f"proj.{m}.weight"] is not None and grads[f"proj.{m}.weight"].abs().sum() > 0
    assert not any(n.startswith(f"proj.{m}") for m in {"text", "image"} - set(used) for n in grads)


def test_no_parameter_depends_on_the_number_of_items():
    small = build("mmsr", num_items=10)
    large = build("mmsr", num_items=1000)
    assert {n: p.shape for n, p in small.named_parameters()} == {n: p.shape for n, p in large.named_parameters()}
    assert not any(d in (1000, 1001) for p in large.parameters() for d in p.shape)


def test_an_item_added_after_training_gets_a_score():
    torch.manual_seed(0)
    model = build("mmsr").eval()
    seqs, _ = batch()
    old = model.item_vectors()
    feats = model.feats
    model.feats = ItemFeatures({m: (torch.cat([getattr(feats, m), torch.randn(1, *getattr(feats, m).shape[1:])]),
                                    torch.cat([getattr(feats, f"{m}_mask"),
                                               torch.ones(1, *getattr(feats, f"{m}_mask").shape[1:]).bool()]))
                                for m in feats.names}, N_ITEMS + 1)
    new = model.item_vectors()
    assert new.shape[0] == N_ITEMS + 2
    torch.testing.assert_close(new[:-1], old)  # the catalogue's vectors are unchanged
    scores = model.encode(seqs)[:, -1] @ new.T
    assert torch.isfinite(scores[:, -1]).all() and scores[:, -1].std() > 0  # the new item is ranked per user


def test_learning_rate_groups_and_default_loss():
    model = build("mmsr", adapter_lr=1e-4, fusion_lr=5e-4)
    groups = builder.param_groups(model, 1e-3)
    assert [g["lr"] for g in groups] == [1e-4, 5e-4, 1e-3]
    n = sum(len(g["params"]) for g in groups)
    assert n == len(list(model.parameters())) == len({id(p) for g in groups for p in g["params"]})
    assert model.loss_kind == "ce" and build("mmsr", loss="bce").loss_kind == "bce"  # the run's unless set
    with pytest.raises(ConfigError, match="fusion='attention'"):
        build("mmsr", fusion="attention")
    with pytest.raises(ConfigError, match="mmsr.loss='sampled_softmax'"):
        build("mmsr", loss="sampled_softmax")


def test_mmsr_learns_on_structured_data(tmp_path):
    """Through the shared trainer with the study's BCE loss (sampled items only): beats popularity."""
    import numpy as np
    import polars as pl

    from pipeline.data import Sequences, Split
    from pipeline.evaluation import evaluate_queries

    rng = np.random.default_rng(0)
    n_items, users = 30, 300
    # items in 3 content clusters; users walk inside one cluster; features reveal the cluster
    rows = []
    for u in range(users):
        c = u % 3
        rows.append({"user_id": u + 1, "item_ids": (rng.integers(0, 10, 12) + 1 + 10 * c).tolist()})
    seq = Sequences.from_table(pl.DataFrame(rows).with_columns(pl.col("item_ids").cast(pl.List(pl.Int32))), n_items)
    centers = torch.randn(3, 8)
    cl = (torch.arange(n_items + 1) - 1).clamp_min(0) // 10
    text = centers[cl].unsqueeze(1) + 0.1 * torch.randn(n_items + 1, 2, 8)
    tables = {"text": FeatureTable(text, torch.ones(n_items + 1, 2, dtype=torch.bool)),
              "image": FeatureTable(torch.randn(n_items + 1, 12), torch.ones(n_items + 1, dtype=torch.bool))}
    model = builder.build("mmsr", builder.traits("mmsr").tiny | {"loss": "bce"},
                          ModelInputs(n_items, max_len=10, features=tables))
    protocol = ProtocolConfig(mask_history=False, ks=[10])
    split = Split(seq)
    fit(model, split.training, TrainConfig(epochs=15, batch_size=32, lr=3e-3, patience=15, seed=0), protocol, 10)
    ours = evaluate_queries(model, split.test_queries(10), protocol, torch.device("cpu")).metrics
    pop = builder.build("pop", {}, ModelInputs(n_items, item_counts=torch.as_tensor(split.training.train.counts())))
    base = evaluate_queries(pop, split.test_queries(10), protocol, torch.device("cpu")).metrics
    assert ours["ndcg@10"] > 1.5 * base["ndcg@10"], (ours, base)


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_fusing_a_batch_once_gives_the_same_loss_as_encode(loss):
    """MMSR's loss fuses inputs, targets and negatives in one call and runs the backbone on the
    gathered rows; that must equal the plain next-item loss of `encode` against `item_vectors`."""
    model = build("mmsr", loss=loss).eval()
    seqs, targets = batch()
    neg = torch.randint(1, N_ITEMS + 1, (*targets.shape, 3))
    torch.testing.assert_close(model.loss(seqs, targets, lambda: neg),
                               sequence_loss(model.encode(seqs), targets, model.item_vectors(), loss, neg))


@pytest.mark.parametrize("variant,padding", [("pre_ln", "blocked"), ("post_ln", "visible"), ("post_ln", "blocked")])
def test_the_sasrec_backbone_layout_follows_the_parameters(variant, padding):
    model = build("mmsr", sasrec_variant=variant, sasrec_padding=padding).eval()
    assert model.backbone.post == (variant == "post_ln") and model.backbone.attend_padding == (padding == "visible")
    seqs, targets = batch()
    assert torch.isfinite(model.loss(seqs, targets, lambda: torch.randint(1, N_ITEMS + 1, (*targets.shape, 1))))
    with pytest.raises(ConfigError, match="sasrec_variant"):
        build("mmsr", sasrec_variant="post")


def test_cached_standardized_features_give_the_per_step_numbers_and_follow_new_features():
    """The standardized tables are cached (frozen statistics), and a step over the whole catalogue skips
    the gather: both must give exactly the numbers of standardizing the gathered rows per step, and a
    new load or new statistics (transfer re-estimates them) must not leave a stale cache."""
    torch.manual_seed(0)
    model = build("mmsr", fusion="merge_attention").eval()

    def by_hand(ids):
        toks = {}
        for m in model.cfg.modalities:
            x = (getattr(model.feats, m)[ids] - getattr(model, f"mu_{m}")) / getattr(model, f"sd_{m}")
            valid = getattr(model.feats, f"{m}_mask")[ids]
            x, valid = (x.unsqueeze(1), valid.unsqueeze(1)) if x.dim() == 2 else (x, valid)
            toks[m] = (model.adapter[m](model.proj[m](x)), valid)
        return model.fusion(toks) * (ids > 0).unsqueeze(-1)

    every, some = torch.arange(N_ITEMS + 1), torch.tensor([0, 3, 5, 5, 9])
    for ids in (every, some):
        assert torch.equal(model.item_vectors_for(ids), by_hand(ids))
    for m in model.feats.names:  # new features and statistics (a loaded state, a transfer): the cache follows
        x = getattr(model.feats, m)
        x.copy_(torch.randn_like(x) * 3 + 1)
        mu, sd = model.feature_statistics(m)
        getattr(model, f"mu_{m}").copy_(mu)
        getattr(model, f"sd_{m}").copy_(sd)
    for ids in (every, some):
        assert torch.equal(model.item_vectors_for(ids), by_hand(ids))
