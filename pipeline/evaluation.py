"""Model -> user/item vectors -> exact FAISS top-k -> ranks -> metrics, for one split."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from pipeline.data import Sequences, history, last_window
from pipeline.metrics import KS, metrics_from_ranks, ranks_from_topk
from pipeline.params import ConfigError
from pipeline.retrieval import exact_topk

HOLDOUT = {"valid": 2, "test": 1}


@dataclass
class ProtocolConfig:
    mask_history: bool = True  # exclude items seen before the target from the candidates
    ks: list[int] = field(default_factory=lambda: list(KS))
    select_metric: str = "ndcg@10"  # validation metric for early stopping / model selection
    cold_threshold: int = 10  # test_cold/*: users whose test item has fewer training occurrences (MSM4SR §IV-F)

    def __post_init__(self) -> None:
        if not self.ks or min(self.ks) < 1:
            raise ConfigError(f"protocol.ks={self.ks}: give positive cut-offs, e.g. [5, 10, 20, 50]")
        names = [f"{m}@{k}" for k in self.ks for m in ("hr", "ndcg", "mrr")]
        if self.select_metric not in names:
            raise ConfigError(f"protocol.select_metric={self.select_metric!r}: use one of {names}")

    def describe(self) -> dict[str, str]:
        return {
            "protocol/ranking": "full ranking over all items (exact FAISS inner-product search)",
            "protocol/split": "leave-one-out: valid = second-last item, test = last item",
            "protocol/history_masking": ("items seen before the target are excluded (the target never is)"
                                         if self.mask_history else "none: seen items stay candidates"),
            "protocol/ties": "pessimistic: rank = #items scoring >= the target (target included)",
            "protocol/cold": f"test_cold/*: the users whose test item occurs < {self.cold_threshold} times in training",
        }


def cold_users(seq: Sequences, threshold: int) -> np.ndarray:
    """(U,) bool: the test target occurs fewer than `threshold` times among training interactions."""
    counts = np.bincount(seq.train_items(), minlength=seq.num_items + 1)
    _, targets = last_window(seq, 1, HOLDOUT["test"])
    return counts[targets] < threshold


@torch.no_grad()
def user_vectors(model: nn.Module, inputs: np.ndarray, device: torch.device, batch: int = 1024) -> np.ndarray:
    """Last-position state of each input window: (U, D) float32."""
    model.eval()
    out = []
    for s in range(0, len(inputs), batch):
        x = torch.as_tensor(inputs[s:s + batch], device=device)
        out.append(model.encode(x)[:, -1].float().cpu())
    return torch.cat(out).numpy()


@torch.no_grad()
def evaluate_split(model: nn.Module, seq: Sequences, split: str, max_len: int, protocol: ProtocolConfig,
                   device: torch.device) -> tuple[dict[str, float], np.ndarray]:
    """Metrics and per-user ranks for `split` ("valid" or "test")."""
    holdout = HOLDOUT[split]
    inputs, targets = last_window(seq, max_len, holdout)
    queries = user_vectors(model, inputs, device)
    items = model.item_vectors()[1:].float().cpu().numpy()  # row r = item id r+1
    exclude = None
    if protocol.mask_history:
        indptr, seen = history(seq, holdout)
        owner = np.repeat(np.arange(len(targets)), np.diff(indptr))
        keep = seen != targets[owner]  # the target is never masked
        exclude = (np.concatenate([[0], np.cumsum(np.bincount(owner[keep], minlength=len(targets)))]), seen[keep] - 1)
    scores, ids = exact_topk(queries, items, max(protocol.ks) + 1, exclude, use_gpu=device.type == "cuda")
    ranks = ranks_from_topk(scores, ids + 1, targets)
    return metrics_from_ranks(ranks, protocol.ks), ranks
