"""The `params.yaml` sections more than one stage reads, as dataclasses (`params.from_dict` builds them).

A section read by one stage only keeps its dataclass beside that stage's library code
(`ProtocolConfig` in evaluation.py, the feature sections in features/, a data set's own fields
in its source module).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.params import ConfigError

DUPLICATE_POLICIES = ("exact", "first", "none")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class PreprocessConfig:
    min_rating: float | None = None  # implicit feedback threshold; null keeps every rated event
    user_core: int = 5  # k-core on users (0 disables)
    item_core: int = 5  # k-core on items (0 disables)
    duplicates: str = "exact"  # exact | first | none
    max_len: int = 50  # model input length (used by train/evaluate; validated here)
    allow_degenerate: bool = False  # true: accept data the split cannot measure on (tiny test sets only)
    user_fraction: float = 1.0  # < 1: keep a seeded random share of the users (target-size sweeps), before k-core
    user_sample_seed: int = 0

    def __post_init__(self) -> None:
        if self.duplicates not in DUPLICATE_POLICIES:
            raise ConfigError(f"preprocess.duplicates={self.duplicates!r}: use one of {DUPLICATE_POLICIES}")
        if not isinstance(self.max_len, int) or self.max_len < 1:
            raise ConfigError(f"preprocess.max_len={self.max_len!r}: must be a positive integer (e.g. 50)")
        if self.user_core < 0 or self.item_core < 0:
            raise ConfigError("preprocess.user_core / item_core must be >= 0")
        if not 0 < self.user_fraction <= 1:
            raise ConfigError(f"preprocess.user_fraction={self.user_fraction}: a share of the users in (0, 1]")


@dataclass
class TrainConfig:
    epochs: int = 200  # upper bound; early stopping usually ends sooner
    batch_size: int = 128  # windows per step
    lr: float = 1e-3  # Adam
    weight_decay: float = 0.0
    loss: str = "ce"  # ce: full softmax over all items | bce: sampled negatives (a model's own `loss` wins)
    negatives: int = 1  # negatives per position for bce / bpr; negatives shared by the batch for sampled_softmax
    negatives_by: str = "uniform"  # uniform | popularity (∝ training counts; sampled_softmax subtracts log q)
    patience: int = 10  # stop after this many validations (epochs) without improvement ...
    patience_steps: int = 0  # ... or, when > 0, once the best validation is this many optimizer steps old
    window_stride: int = 0  # 0 = max_len (disjoint windows); smaller: overlapping windows, more context per target
    device: str = "auto"  # auto: cuda when present, else cpu
    sparse_embeddings: bool = False  # embedding tables take sparse gradients + SparseAdam (with a sampled loss)
    precision: str = "auto"  # auto: bf16 autocast on a CUDA device that has it, else fp32 | fp32 | bf16
    threads: int = 0  # CPU threads for torch; 0 = the cores / the pipeline processes running now
    seed: int = 42
    nproc: int = 1  # DDP processes on this node (the train stage relaunches itself under torch.distributed.run)
    init_from: str | None = None  # transfer: a source run's model.pt (or its folder); see pipeline.train.transfer

    def __post_init__(self) -> None:
        if self.negatives_by not in ("uniform", "popularity"):
            raise ConfigError(f"train.negatives_by={self.negatives_by!r}: use 'uniform' or 'popularity'")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"train.precision={self.precision!r}: use one of {PRECISIONS}")
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1 or self.patience_steps < 0 or self.nproc < 1:
            raise ConfigError("train.epochs, train.batch_size, train.patience and train.nproc must be >= 1, "
                              "train.patience_steps >= 0")


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
    precision: str = "fp32"  # fp32 (as pre-training always ran) | bf16 autocast | auto: bf16 on a CUDA device with it
    one_pass_windows: int = 0  # > 0: each step encodes this many training windows in one causal pass and
    #                            trains on every prefix in them, in groups of batch_size pairs (pairs_per_epoch
    #                            then counts windows); 0 = one Transformer pass per (prefix, next item) pair

    def __post_init__(self) -> None:
        if self.one_pass_windows < 0:
            raise ConfigError("pretrain.one_pass_windows must be >= 0")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"pretrain.precision={self.precision!r}: use one of {PRECISIONS}")
