"""The model registry: a name -> class dict. One file per model under `models/`, one line here.

What a model may declare (its Config, the hooks it implements, its class flags) and how it is
built is the contract in `models/contract.py`; `pipeline/builder.py` is the one place that reads
it. `docs/adding-a-model.md` walks through a new model that reads text features.
"""

from __future__ import annotations

from torch import nn

from models.automlp import AutoMLP
from models.bert4rec import BERT4Rec
from models.bprmf import BPRMF
from models.fpmc import FPMC
from models.gru4rec import GRU4Rec
from models.m2sr import M2SR
from models.mlpmixer import MLPMixer
from models.mmsr import MMSR
from models.msm4sr import MSM4SR
from models.nextitnet import NextItNet
from models.pop import Pop
from models.sasrec import SASRec

MODELS: dict[str, type[nn.Module]] = {
    "pop": Pop,
    "sasrec": SASRec,
    "gru4rec": GRU4Rec,
    "nextitnet": NextItNet,
    "mlpmixer": MLPMixer,
    "m2sr": M2SR,
    "msm4sr": MSM4SR,
    "mmsr": MMSR,
    "automlp": AutoMLP,
    "bprmf": BPRMF,
    "fpmc": FPMC,
    "bert4rec": BERT4Rec,
}
