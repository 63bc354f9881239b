"""The model contract: everything a model may declare, in one place.

A model is one file under `models/` plus one line in `MODELS` (`models/__init__.py`). The pipeline
reads what this module lists, only through `pipeline/builder.py`; nothing else in the pipeline asks
a model what it is. `check(cls)` says, in words, what a class is missing (the registry tests and
the builder run it).

**Construction.** `Model(cfg, inputs)`: `cfg` is the model's `Config` dataclass (every field has a
default; `params.yaml → models.<name>` overrides them, an unknown key is an error; a field's type is
its rule — `Positive`, `NonNegative`, `Prob`, `Unit`, `PositiveFloat`, `NonNegativeFloat`, `Loss`,
`Literal[...]`, lists of them — checked by the builder before the model sees it), `inputs` a
`ModelInputs`: everything the run decides, complete, in one step — catalogue size, user count,
input window, the run's loss, the item-feature tables it declared, the training view's item counts.
Statistics a model needs (feature means, popularity) are computed in `__init__` from these.

**Hooks** (`HOOKS`: signature, when it is called, who must have it) and **flags** (`FLAGS`: class
attributes, with defaults) are listed below. Flags not listed here are an error, so a misspelt
`FEATURE = ...` cannot pass silently.

**Conventions.** Item id 0 is padding; sequences are left-padded (the most recent item last);
`encode` state t predicts the item after position t; `item_vectors()` row 0 is never ranked.
Training may see only the training view; a model never reads files.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Mapping, NamedTuple

import torch
from annotated_types import Ge, Gt, Le, Lt

from models.common import LOSSES

MODALITIES = ("text", "image")
# Config field types: the rule is the type (pydantic checks them when the builder reads params.yaml).
Positive = Annotated[int, Gt(0)]
NonNegative = Annotated[int, Ge(0)]
Prob = Annotated[float, Ge(0), Lt(1)]  # a dropout or masking rate: [0, 1)
Unit = Annotated[float, Ge(0), Le(1)]  # a probability that may be 1
PositiveFloat = Annotated[float, Gt(0)]
NonNegativeFloat = Annotated[float, Ge(0)]
Loss = Literal["ce", "bce", "bpr", "sampled_softmax", "ce_chunked"]  # a model's own loss (None: train.loss)
Modality = Literal["text", "image"]


class FeatureTable(NamedTuple):
    """One modality's cached features for the whole catalogue, indexed by item id (row 0 = padding).

    vectors: (N+1, D) one vector per item, or (N+1, S, D) a stack of S token vectors (sentences,
    images, grid patches); mask: (N+1,) or (N+1, S) bool, True where a vector exists (row 0: False)."""

    vectors: torch.Tensor
    mask: torch.Tensor

    @property
    def shape(self) -> list[int]:
        """The per-item shape, [D] or [S, D] (what a checkpoint records)."""
        return list(self.vectors.shape[1:])

    @classmethod
    def zeros(cls, shape: list[int], num_items: int) -> "FeatureTable":
        """A table of the right shape with nothing in it (a model rebuilt from a checkpoint: its
        feature buffers are then filled from the saved state)."""
        return cls(torch.zeros(num_items + 1, *shape), torch.zeros(num_items + 1, *shape[:-1], dtype=torch.bool))


@dataclass(frozen=True)
class ModelInputs:
    """What the run hands every model's constructor (built by `pipeline/builder.py`)."""

    num_items: int  # N: item ids are 1..N, 0 is padding
    num_users: int = 0  # U: `users` given to encode/loss are 0-based indices < U (user-embedding models)
    max_len: int = 50  # preprocess.max_len: the input window L
    loss: str = "ce"  # train.loss: the loss to train with unless the model's config names its own
    features: Mapping[str, FeatureTable] = field(default_factory=dict)  # one table per FEATURES modality
    item_counts: torch.Tensor | None = None  # (N+1,) occurrences in the training view (None: rebuilt from a checkpoint)

    def resolve_loss(self, own: str | None) -> str:
        """The loss a model trains with: its config's `loss` when set, else the run's; checked."""
        kind = own if own is not None else self.loss
        if kind not in LOSSES:
            raise ValueError(f"loss={kind!r}: use one of {LOSSES}")
        return kind

    def describe(self) -> dict[str, Any]:
        """Everything but the data: what a checkpoint stores to rebuild the model (`placeholder`)."""
        return {"num_items": self.num_items, "num_users": self.num_users, "max_len": self.max_len, "loss": self.loss,
                "features": {m: t.shape for m, t in self.features.items()}}

    @classmethod
    def placeholder(cls, described: Mapping[str, Any]) -> "ModelInputs":
        """Inputs of the described shapes with empty tables (the checkpoint's state fills them)."""
        n = described["num_items"]
        return cls(n, described.get("num_users", 0), described.get("max_len", 50), described.get("loss", "ce"),
                   {m: FeatureTable.zeros(list(s), n) for m, s in described.get("features", {}).items()})


# Class attributes a model may set: name -> (default, meaning).
FLAGS: dict[str, tuple[Any, str]] = {
    "FEATURES": ((), "the item-feature modalities it reads, from MODALITIES. For each one the Config has a field "
                     "`<modality>_table: str` with a default (which cached table: `text`, `text_sentences`, "
                     "`text_tokens`, `image`, `image_grid`, `keyword_vectors`); the builder loads that table, "
                     "checks it was made from this items.parquet, and hands it in as inputs.features[modality]. "
                     "The plan stage extracts exactly these tables."),
    "CAUSAL": (True, "state t depends on items <= t only (the registry tests check it); False: every position "
                     "sees the whole window (BERT4Rec)"),
    "READS_SEQUENCE": (True, "False: scores by user alone (BPR-MF); the registry tests then skip the "
                             "causality and padding checks"),
    "PRETRAIN_ONLY": ((), "parameter-name prefixes that only pre-training trains (MSM4SR's eq.-6 maps): the "
                          "registry tests do not expect fine-tuning gradients there"),
    "PROCEDURE": ("fit", "how the train stage trains it, by name (`pipeline/procedures.py`): 'fit' (the epoch loop "
                         "with early stopping) | 'search_then_fit' (AutoMLP: a resumable architecture search, then "
                         "the model is rebuilt with the choice and fitted)"),
    "PRETRAINING": (False, "True: the `pretrain` stage can pre-train it (hooks pretrain_loss, pretrain_loss_windows, "
                           "pretrained_state, load_pretrained; Config fields `pretrained: bool` (start fine-tuning "
                           "from those weights) and `pretrained_path: str | None` (another run's weights file))"),
    "FINE_TUNING_ONLY": ((), "with PRETRAINING: the Config fields that change fine-tuning but not the pre-trained "
                             "weights (runs that differ only in them can share one pre-training)"),
    "TINY": ({}, "a small config (overrides of Config's defaults) for the registry tests: shapes, causality, "
                 "padding, checkpoints, a few training steps"),
}

# Methods: name -> (signature, when it is called, who must have it: "all" models, "trainable" ones (with
# parameters that require grad), "optional", or the models of one PROCEDURE ("search_then_fit") or with PRETRAINING).
HOOKS: dict[str, tuple[str, str, str]] = {
    "encode": ("encode(seqs: (B, L) int64, users: (B,) int64 | None = None) -> (B, L, D)",
               "every training step (through `loss`) and every evaluation (the last state ranks the catalogue)",
               "all"),
    "item_vectors": ("item_vectors() -> (N+1, D)", "ranking: score = state · item vector, exact over every item",
                     "all"),
    "loss": ("loss(inputs: (B, L), targets: (B, L), negatives, users: (B,) | None = None) -> scalar",
             "every training step; targets 0 = no target; `negatives()` draws (B, L, S) sampled ids and "
             "`negatives.shared()` (S,) ids for the whole batch, each only when called (models.common.next_item_loss "
             "does the usual next-item losses)", "trainable"),
    "param_groups": ("param_groups(lr: float) -> list[dict]", "once, before the first step of `fit`: the "
                     "optimizer's parameter groups (MMSR's per-part learning rates); absent: Adam over every "
                     "parameter that requires grad", "optional"),
    "search_space": ("search_space() -> dict(candidates=list, epochs=int, arch_lr=float, xi=float)",
                     "before the search: what is searched; a single candidate skips the search",
                     "search_then_fit"),
    "arch_parameters": ("arch_parameters() -> list[Parameter]", "the search: updated on validation batches only",
                        "search_then_fit"),
    "weight_parameters": ("weight_parameters() -> list[Parameter]", "the search: updated on training batches only",
                          "search_then_fit"),
    "arch_frozen": ("arch_frozen() -> context manager", "the search's weight step: architecture weights enter as "
                    "constants", "search_then_fit"),
    "search_result": ("search_result() -> (config overrides: dict, report: dict)", "after the search: the config "
                      "the model is rebuilt with, and what the run records (train.json, metrics search/*)",
                      "search_then_fit"),
    "forward": ("forward(inputs, targets, negatives, users=None) = loss", "the search's unrolled step "
                "(torch.func.functional_call calls forward)", "search_then_fit"),
    "pretrain_loss": ("pretrain_loss(seqs: (B, L), targets: (B,), gen: torch.Generator) -> {'loss': scalar, "
                      "<term>: scalar}", "each pre-training step on (prefix, next item) pairs", "pretraining"),
    "pretrain_loss_windows": ("pretrain_loss_windows(inputs: (B, L), targets: (B, L), gen, group: int) -> dict",
                              "each pre-training step with pretrain.one_pass_windows > 0 (every prefix of B windows)",
                              "pretraining"),
    "pretrained_state": ("pretrained_state() -> {name: tensor}", "what pre-training trains and saves", "pretraining"),
    "load_pretrained": ("load_pretrained(state: dict, source: str) -> None", "before fine-tuning, when the config's "
                        "`pretrained` is true; an incompatible state is an error naming `source`", "pretraining"),
}
PROCEDURES = ("fit", "search_then_fit")
PRETRAINING_FIELDS = ("pretrained", "pretrained_path")


@dataclass(frozen=True)
class Traits:
    """A model class's flags (FLAGS), defaults filled in."""

    features: tuple[str, ...] = ()
    causal: bool = True
    reads_sequence: bool = True
    pretrain_only: tuple[str, ...] = ()
    procedure: str = "fit"
    pretraining: bool = False
    fine_tuning_only: tuple[str, ...] = ()
    tiny: Mapping[str, Any] = field(default_factory=dict)


def traits(cls: type) -> Traits:
    """The class's flags; an uppercase class attribute that is not a flag is an error."""
    unknown = sorted(k for k in vars(cls) if k.isupper() and k not in FLAGS)
    if unknown:
        raise ContractError(f"{cls.__name__}: unknown class flag(s) {unknown}; the flags are {sorted(FLAGS)} "
                            "(models/contract.py)")
    values = {name.lower(): getattr(cls, name, default) for name, (default, _) in FLAGS.items()}
    for name in ("features", "pretrain_only", "fine_tuning_only"):
        values[name] = tuple(values[name])
    return Traits(**values)


class ContractError(TypeError):
    """A model class does not keep the contract; the message lists what is missing."""


def problems(cls: type) -> list[str]:
    """Everything `cls` lacks under the contract, in words (empty: it keeps it)."""
    out = []
    try:
        t = traits(cls)
    except ContractError as e:
        return [str(e)]
    cfg = getattr(cls, "Config", None)
    if cfg is None or not dataclasses.is_dataclass(cfg):
        return [f"{cls.__name__}.Config must be a dataclass of its settings (every field with a default)"]
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    out += [f"{cfg.__name__}.{n} has no default (every setting needs one; params.yaml overrides it)"
            for n, f in fields.items() if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    for m in t.features:
        if m not in MODALITIES:
            out.append(f"FEATURES names {m!r}; modalities are {MODALITIES}")
        elif f"{m}_table" not in fields or fields[f"{m}_table"].default is dataclasses.MISSING:
            out.append(f"FEATURES names {m!r}, so {cfg.__name__} needs a field `{m}_table: str = '<table>'` "
                       "(which cached table the model reads)")
    if t.procedure not in PROCEDURES:
        out.append(f"PROCEDURE={t.procedure!r}; use one of {PROCEDURES}")
    needed = {"all", t.procedure} | ({"pretraining"} if t.pretraining else set())
    for hook, (signature, _, who) in HOOKS.items():
        method = getattr(cls, hook, None)
        if who in needed and (not callable(method) or method is torch.nn.Module.forward):
            out.append(f"{cls.__name__} lacks `{signature}` (needed by: {who})")
    if t.pretraining:
        out += [f"PRETRAINING needs a Config field `{n}`" for n in PRETRAINING_FIELDS if n not in fields]
    for flag, names in (("TINY", t.tiny), ("FINE_TUNING_ONLY", t.fine_tuning_only)):
        unknown = sorted(set(names) - set(fields))
        if unknown:
            out.append(f"{flag} names {unknown}, which {cfg.__name__} does not have")
    return out


def check(cls: type) -> Traits:
    """The class's traits, or a ContractError listing every problem."""
    found = problems(cls)
    if found:
        raise ContractError(f"model class {cls.__name__} does not keep the contract (models/contract.py): "
                            + "; ".join(found))
    return traits(cls)


def markdown() -> str:
    """The contract as Markdown tables (docs/adding-a-model.md embeds it)."""
    def row(*cells: str) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    lines = ["**Class flags**", "", "| flag | default | meaning |", "|---|---|---|"]
    lines += [row(f"`{k}`", f"`{d!r}`", m) for k, (d, m) in FLAGS.items()]
    lines += ["", "**Hooks**", "", "| hook | called | who must have it |", "|---|---|---|"]
    lines += [row(f"`{sig}`", when, who) for sig, when, who in HOOKS.values()]
    return "\n".join(lines) + "\n"


BLOCK = ("<!-- contract: generated from models/contract.py -->\n", "<!-- end contract -->")


def with_markdown(page: str) -> str:
    """`page` with its contract block regenerated."""
    head, rest = page.split(BLOCK[0], 1)
    return head + BLOCK[0] + markdown() + BLOCK[1] + rest.split(BLOCK[1], 1)[1]

