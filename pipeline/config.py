"""The schema of `params.yaml`: one dataclass per section, its field types the rules.

`load_params` reads the file and checks every section it can without a model or a source
module: the top-level keys, `preprocess`, `features` (and its text / image / keywords parts),
`pretrain`, `protocol` and `train` (pipeline.params.from_dict: types, ranges, enums, unknown keys;
one line per problem). A data set's entry is checked by its source's config when `download`
reads it, a model's section by its Config when the builder reads it (both through `from_dict`),
so a stage depends on the modules of what it reads only; `python -m pipeline.schema` checks every
entry of every section at once. Every key of every section here is written in params.yaml with
its default (tests/test_schema.py), so `dvc exp run -S` can set any of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from pipeline.params import (
    Checked,
    ConfigError,
    NonNegative,
    NonNegativeFloat,
    Positive,
    Share,
    from_dict,
    read_params,
)

PRECISIONS = ("auto", "fp32", "bf16")
Precision = Literal["auto", "fp32", "bf16"]
Device = Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$")]  # auto: cuda when present, else cpu
TOP_LEVEL = ("dataset", "model", "datasets", "preprocess", "features", "pretrain", "protocol", "train", "models")
TEXT_FIELDS = ("title", "description", "categories")
SOURCE_TEXT_FIELDS = {"hm": ["title", "categories", "description"]}  # a source's own text fields (H&M's articles)
DEFAULT_TEXT_FIELDS = ["title", "description"]
KS = (5, 10, 20, 50)  # protocol.ks default: the cut-offs every metrics file reports


@dataclass
class PreprocessConfig(Checked):
    min_rating: float | None = None  # implicit feedback threshold; null keeps every rated event
    user_core: NonNegative = 5  # k-core on users (0 disables)
    item_core: NonNegative = 5  # k-core on items (0 disables)
    duplicates: Literal["exact", "first", "none"] = "exact"
    max_len: Positive = 50  # model input length (used by train/evaluate; validated here)
    allow_degenerate: bool = False  # true: accept data the split cannot measure on (tiny test sets only)
    user_fraction: Share = 1.0  # < 1: keep a seeded random share of the users (target-size sweeps), before k-core
    user_sample_seed: int = 0
    # the split, written into stats.json so every reader splits alike (pipeline/data.py):
    split: Literal["loo", "time"] = "loo"  # loo: leave-one-out | time: a global temporal split at two cut-offs
    split_cuts: list[float] = field(default_factory=lambda: [0.8, 0.9])  # time: quantiles of the event times
    # when both lie in (0, 1), else two times in the table's unit; [c1, c2) validation queries, >= c2 test
    engine: Literal["auto", "memory", "disk"] = "auto"  # disk: out of core (DuckDB, pipeline/preprocess_disk.py);
    # auto: disk above 20M raw interactions. Both write the same tables (tested): not part of any output's identity

    def __post_init__(self) -> None:
        super().__post_init__()
        c = self.split_cuts
        if len(c) != 2 or not c[0] < c[1] or (c[0] < 1 and not 0 < c[0] < c[1] < 1):
            raise ConfigError(f"params.yaml `preprocess.split_cuts`: {c!r} — two increasing values: quantiles in "
                              "(0, 1) such as [0.8, 0.9], or two times in the data's unit")


@dataclass
class TrainConfig(Checked):
    epochs: Positive = 200  # upper bound; early stopping usually ends sooner
    batch_size: Positive = 128  # windows per step
    lr: NonNegativeFloat = 1e-3  # Adam (0: the weights stay as they start, e.g. a transferred model scored as is)
    weight_decay: NonNegativeFloat = 0.0
    loss: Literal["ce", "bce", "bpr", "sampled_softmax", "ce_chunked"] = "ce"  # a model's own `loss` wins
    negatives: Positive = 1  # per position for bce / bpr; shared by the batch for sampled_softmax
    negatives_by: Literal["uniform", "popularity"] = "uniform"  # popularity: ∝ training counts (log q corrected)
    # early stopping: stop once every condition holds (pipeline.loop.EarlyStopping)
    patience: Positive = 10  # validations (epochs) without improvement
    patience_steps: NonNegative = 0  # > 0: and the best validation is at least this many optimizer steps old
    patience_frac: NonNegativeFloat = 0.0  # > 0: and the epochs since the best >= this share of the best's epoch
    order: Literal["time", "shuffled"] = "time"  # shuffled: each user's training events in a random order (seeded by
    # `seed`): the sequentiality check; validation and test queries keep the time order
    window_stride: NonNegative = 0  # 0 = max_len (disjoint windows); smaller: overlapping windows
    device: Device = "auto"  # auto: cuda when present, else cpu
    sparse_embeddings: bool = False  # embedding tables take sparse gradients + SparseAdam (with a sampled loss)
    precision: Precision = "auto"  # auto: bf16 autocast on a CUDA device that has it, else fp32
    threads: NonNegative = 0  # CPU threads for torch; 0 = the cores / the pipeline processes running now
    seed: int = 42
    nproc: Positive = 1  # DDP processes on this node (the train stage relaunches itself under torch.distributed.run)
    init_from: str | None = None  # transfer: a source run's model.pt (or its folder); see pipeline.train.transfer


@dataclass
class PretrainConfig(Checked):
    model: str = "msm4sr"
    epochs: Positive = 10  # the paper pre-trains 300 epochs on GPU; see docs/models/msm4sr.md
    batch_size: Positive = 256
    pairs_per_epoch: NonNegative = 0  # 0 = every (prefix, next item) pair each epoch; n = a fresh random n of them
    lr: NonNegativeFloat = 0.001
    weight_decay: NonNegativeFloat = 0.0
    seed: int = 42
    device: Device = "auto"
    threads: NonNegative = 0
    warm_only: bool = False  # MSM4SR §IV-G-1: pre-train on warm items only (cold items never seen)
    warm_threshold: Positive = 10  # an item is cold with fewer training occurrences (the paper's 10)
    precision: Precision = "fp32"  # fp32 (as pre-training always ran) | bf16 autocast | auto: bf16 on a CUDA device
    one_pass_windows: NonNegative = 0  # > 0: each step encodes this many training windows in one causal pass and
    #                                    trains on every prefix in them, in groups of batch_size pairs (pairs_per_epoch
    #                                    then counts windows); 0 = one Transformer pass per (prefix, next item) pair


@dataclass
class ProtocolConfig(Checked):
    mask_history: bool = True  # exclude items seen before the target from the candidates
    ks: list[Positive] = field(default_factory=lambda: list(KS))
    select_metric: str = "ndcg@10"  # validation metric for early stopping / model selection
    cold_threshold: Positive = 10  # test_cold/*: users whose test item has fewer training occurrences (MSM4SR §IV-F)
    length_groups: list[Positive] = field(default_factory=lambda: [20, 50, 100, 200])  # test_len_<lo>-<hi>/* edges
    sampled: NonNegative = 0  # > 0: also test_sampled<n>_<by>/* metrics against n sampled negatives (labelled)
    sampled_by: Literal["popularity", "uniform"] = "popularity"  # popularity: AutoMLP's protocol
    sampled_seed: int = 0
    head_share: Share = 0.2  # beyond accuracy: the head = this share of the items with the most training events; the rest is the long tail

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.ks:
            raise ConfigError(f"params.yaml `protocol.ks`: {self.ks!r} — give positive cut-offs, e.g. [5, 10, 20, 50]")
        if sorted(set(self.length_groups)) != list(self.length_groups):
            raise ConfigError(f"params.yaml `protocol.length_groups`: {self.length_groups!r} — increasing edges")
        names = [f"{m}@{k}" for k in self.ks for m in ("hr", "ndcg", "mrr")]
        if self.select_metric not in names:
            raise ConfigError(f"params.yaml `protocol.select_metric`: {self.select_metric!r} — one of {names}")

    def describe(self) -> dict[str, str]:
        return {
            "protocol/ranking": "full ranking over all items (exact FAISS inner-product search)",
            "protocol/history_masking": ("items seen before the target are excluded (the target never is)"
                                         if self.mask_history else "none: seen items stay candidates"),
            "protocol/ties": "pessimistic: rank = #items scoring >= the target (target included)",
            "protocol/cold": f"test_cold/*: the users whose test item occurs < {self.cold_threshold} times in training",
            "protocol/cold_seq": (f"cold_seq/*: every prefix of every complete sequence whose next item occurs "
                                  f"< {self.cold_threshold} times in training (MMSR study's cold scenario; "
                                  "positions inside the training data included)"),
            "protocol/length_groups": "test_len_<lo>-<hi>/*: users grouped by training-sequence length, lo <= n < hi",
        } | ({"protocol/sampled": (f"test_sampled{self.sampled}_{self.sampled_by}/*: SAMPLED metrics — the target "
                                   f"ranked against {self.sampled} {self.sampled_by}-sampled items the user has not "
                                   "seen (no repeats), ties against the target; not comparable with full ranking")}
              if self.sampled else {}) | {"protocol/beyond_accuracy": (
                  f"valid|test/coverage@K: distinct items in all top-K lists / catalogue size; pop@K: mean training "
                  f"events of the top-K items (per query, then averaged); tail@K: share of the top-K items in the long "
                  f"tail = all but the {self.head_share:.0%} of items with the most training events (ties to the head); "
                  f"the top-K lists are this ranking's (masked as above); pop@K, tail@K per query in ranks.parquet")} | (
                  {"protocol/unmasked": (
                  "test_unmasked/*: the same test queries with no history masking (seen items stay candidates; "
                  "UniSRec, VQ-Rec, MISSRec, RecBole report this), from the masked ranks plus the seen items "
                  "scoring >= the target")} if self.mask_history else {})


@dataclass
class FeatureSettings(Checked):
    extract: Literal["auto", "all"] = "auto"  # auto: only the tables the selected model reads (the plan stage)
    device: Device = "auto"  # cuda when present, else cpu
    threads: NonNegative = 0  # torch CPU threads; 0 = the cores / the pipeline processes running now
    shard_size: Positive = 256  # items per shard: the unit of resumption (and of work split across processes)
    nproc: Positive = 1  # processes (torch.distributed, one per GPU or CPU share); > 1 relaunches under torchrun
    dtype: Literal["float32", "float16"] = "float32"  # vectors on disk


@dataclass
class TextEncoderConfig(Checked):
    # sentence-transformers | hf (an encoder: CLS / mean pooling) | llm (a decoder LLM embedder: last-token pooling,
    # e.g. Qwen/Qwen3-Embedding-0.6B, intfloat/e5-mistral-7b-instruct; bf16 on a GPU)
    kind: Literal["sentence-transformers", "hf", "llm"] = "sentence-transformers"
    name: str = "sentence-transformers/all-MiniLM-L6-v2"  # hub id or local folder
    revision: str | None = None
    pooling: Literal["cls", "mean", "last"] = "mean"  # hf: cls | mean; llm: last (the last real token's state)
    instruction: str = ""  # prepended to every text (LLM embedders' task prompt, e.g. "Instruct: ...\nQuery: ")
    add_eos: bool = True  # llm: append the tokenizer's end-of-sequence token (what E5-Mistral and Qwen3-Embedding pool)
    max_length: Positive = 256
    batch_size: Positive = 64
    normalize: bool = False


@dataclass
class TextConfig(Checked):
    fields: list[Literal["title", "description", "categories"]] | Literal["auto"] = "auto"  # auto: the source's own
    max_sentences: Positive = 10
    tokens: NonNegative = 0  # > 0: also `text_tokens.parquet`, the encoder's last hidden states of the first N tokens
    encoder: dict = field(default_factory=dict)  # TextEncoderConfig

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fields != "auto" and not self.fields:
            raise ConfigError(f"params.yaml `features.text.fields`: [] — 'auto' or a list from {TEXT_FIELDS}")

    def resolved(self, source_format: str | None) -> list[str]:
        return (SOURCE_TEXT_FIELDS.get(source_format, DEFAULT_TEXT_FIELDS) if self.fields == "auto"
                else list(self.fields))


@dataclass
class ImageEncoderConfig(Checked):
    kind: Literal["efficientnet-lite0", "hf", "open_clip"] = "efficientnet-lite0"
    name: str = "efficientnet-lite0"  # hf: hub id or folder; open_clip: model name (ViT-B-32)
    pretrained: str | None = None  # efficientnet: weights file (default: the bundled ImageNet weights); open_clip: tag
    model_config: str | None = None  # open_clip: JSON config of a model open_clip does not ship
    revision: str | None = None
    image_size: Positive = 224
    batch_size: Positive | Literal["auto"] = "auto"  # auto: 64 on CUDA, 4 on CPU (encoders.auto_batch)


@dataclass
class ImageConfig(Checked):
    max_images: Positive = 3
    grid: bool = False  # also store patch/region tokens per image
    max_pixels: Positive = 89_478_485  # larger images are skipped as `too_large` (Pillow's bomb limit)
    encoder: dict = field(default_factory=dict)  # ImageEncoderConfig


@dataclass
class TaggerConfig(Checked):
    kind: Literal["imagenet", "clip"] = "imagenet"  # imagenet: offline stand-in (ImageNet class names) | clip (MSM4SR)
    model: str = "efficientnet-lite0"  # clip: open_clip model name, e.g. ViT-B-32
    pretrained: str | None = None  # clip: tag (openai) or weights file; imagenet: .pth (default: bundled)
    model_config: str | None = None  # clip: JSON config for a model open_clip does not ship
    prompt: str = "{}"  # clip: template each dictionary word is embedded with, e.g. "a photo of {}"
    image_size: Positive = 224
    batch_size: Positive | Literal["auto"] = "auto"  # auto: 64 on CUDA, 4 on CPU

    def __post_init__(self) -> None:
        super().__post_init__()
        if "{}" not in self.prompt:
            raise ConfigError(f"params.yaml `features.keywords.tagger.prompt`: {self.prompt!r} — it must contain "
                              "'{}' where the word goes")


@dataclass
class VocabularyConfig(Checked):
    size: Positive = 2000  # the most frequent words of the item texts
    min_count: Positive = 2
    file: str | None = None  # or: a word list, one word per line (overrides size/min_count)


@dataclass
class KeywordsConfig(Checked):
    top_n: Positive = 15
    max_images: Positive = 3
    max_pixels: Positive = 89_478_485
    tagger: dict = field(default_factory=dict)  # TaggerConfig
    vocabulary: dict = field(default_factory=dict)  # VocabularyConfig


# Each checked section: where it sits in params.yaml and its dataclass (nested parts after their parent).
SECTIONS: dict[str, type] = {
    "preprocess": PreprocessConfig, "train": TrainConfig, "pretrain": PretrainConfig, "protocol": ProtocolConfig,
    "features.text": TextConfig, "features.text.encoder": TextEncoderConfig, "features.image": ImageConfig,
    "features.image.encoder": ImageEncoderConfig, "features.keywords": KeywordsConfig,
    "features.keywords.tagger": TaggerConfig, "features.keywords.vocabulary": VocabularyConfig,
}
FEATURE_PARTS = ("text", "image", "keywords")  # features.<part>: a stage's own section beside the shared settings


def section(params: dict[str, Any], where: str) -> dict[str, Any]:
    """The mapping at a dotted path of params ({} when absent)."""
    node: Any = params
    for key in where.split("."):
        node = (node or {}).get(key) if isinstance(node, dict) else None
    return node or {}


def check(params: dict[str, Any]) -> dict[str, Any]:
    """Validate every core section of a params mapping (see the module); returns it with numbers
    written as strings converted, so every reader sees the checked values."""
    unknown = sorted(set(params) - set(TOP_LEVEL))
    if unknown:
        raise ConfigError(f"params.yaml: unknown top-level key(s) {unknown}; known: {list(TOP_LEVEL)}")
    for key in ("datasets", "models"):
        if not isinstance(params.get(key) or {}, dict):
            raise ConfigError(f"params.yaml `{key}`: expected a mapping of names to sections")
    shared = {k: v for k, v in section(params, "features").items() if k not in FEATURE_PARTS}
    from_dict(FeatureSettings, shared, "features")
    for where, cls in SECTIONS.items():
        values = section(params, where)
        checked = from_dict(cls, {k: v for k, v in values.items() if not isinstance(v, dict) or
                                  f"{where}.{k}" not in SECTIONS}, where)
        for k, v in list(values.items()):
            if isinstance(v, str) and not isinstance(vars(checked)[k], str):
                values[k] = vars(checked)[k]
    return params


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """params.yaml, checked (pipeline.config.check)."""
    return check(read_params(path))
