"""Feature store: image loading rules, encoder loaders (tiny random models through the real loaders,
real MiniLM / EfficientNet-Lite0 weights), the three stages, resume after a kill, querying."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
import yaml
from PIL import Image

from pipeline.config import VocabularyConfig
from pipeline.features import image as image_stage
from pipeline.features import keywords as keywords_stage
from pipeline.features import text as text_stage
from pipeline.features.common import open_stage
from pipeline.features.encoders import (
    ImageEncoder,
    ImageEncoderConfig,
    Tagger,
    TaggerConfig,
    TextEncoder,
    TextEncoderConfig,
)
from pipeline.features.images import load_image
from pipeline.features.keywords import build_vocabulary
from pipeline.features.store import load_item_matrix
from pipeline.features.text import item_texts
from pipeline.params import ConfigError
from pipeline.query import describe_item, find_tables, sql
from pipeline.tables import TableError, read_provenance, read_table, write_table
from tests.conftest import ROOT

CPU = torch.device("cpu")
DOG = ["A dog runs across the park.", "A puppy is running on the grass.", "The quarterly tax filing deadline is in April."]


# ------------------------------------------------------------------------------------- images


@pytest.fixture(scope="module")
def bad_images(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(d / "good.jpg")
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(d / "png_named.jpg", format="PNG")
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(d / "cmyk.jpg")
    Image.fromarray((np.arange(400).reshape(20, 20) * 10).astype(np.uint16)).save(d / "gray16.png")
    rgba = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    rgba.save(d / "rgba.png")
    data = (d / "good.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (d / "corrupt.jpg").write_bytes(b"this is not an image at all" * 10)
    Image.new("1", (12000, 9000)).save(d / "bomb.png")  # 108 M pixels > Pillow's 89.5 M bomb limit
    return d


def test_load_image_rules(bad_images):
    counts: Counter = Counter()
    loaded = {p.name: load_image(p, counts) for p in sorted(bad_images.iterdir())}
    loaded["missing.jpg"] = load_image(bad_images / "missing.jpg", counts)
    ok = {k for k, v in loaded.items() if v is not None}
    assert ok == {"good.jpg", "png_named.jpg", "cmyk.jpg", "gray16.png", "rgba.png"}
    assert all(loaded[k].mode == "RGB" for k in ok)
    assert counts["missing"] == 1 and counts["unreadable"] == 2 and counts["too_large"] == 1
    assert counts["extension_mismatch"] == 1 and counts["mode_CMYK"] == 1 and counts["mode_RGBA"] == 1
    g = np.asarray(loaded["gray16.png"])[..., 0]
    assert g.min() == 0 and g.max() == 255 and len(np.unique(g)) > 100  # rescaled, not clipped to white
    rgba = np.asarray(loaded["rgba.png"])
    assert tuple(rgba[5, 5]) == (255, 255, 255) and tuple(rgba[0, 0]) == (0, 0, 255)  # transparent -> white
    assert load_image(bad_images / "good.jpg", Counter(), max_pixels=100) is None


# ------------------------------------------------------------------------------- tiny loaders


def tiny_bert(path: Path) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = "the a dog puppy runs running park grass tax deadline april is on in across quarterly filing".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, ".", ","]
    path.mkdir(parents=True)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt")).save_pretrained(path)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(path)
    return path


def test_hf_text_loader_tiny_bert(tmp_path):
    path = tiny_bert(tmp_path / "bert")
    mean = TextEncoder(TextEncoderConfig(kind="hf", name=str(path), pooling="mean", batch_size=2), CPU)
    cls = TextEncoder(TextEncoderConfig(kind="hf", name=str(path), pooling="cls"), CPU)
    assert mean.dim == 16 and mean.identity["weights_sha256"] and mean.identity["pooling"] == "mean"
    a, b = mean.encode(DOG), cls.encode(DOG)
    assert a.shape == (3, 16) and not np.allclose(a, b)
    alone = mean.encode([DOG[1]])  # padding inside a batch must not change a text's vector
    np.testing.assert_allclose(alone[0], a[1], atol=1e-5)


def test_hf_image_loader_tiny_resnet(tmp_path):
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetModel

    path = tmp_path / "resnet"
    torch.manual_seed(0)
    ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1])).save_pretrained(path)
    ConvNextImageProcessor(size={"shortest_edge": 64}, crop_pct=1.0).save_pretrained(path)
    enc = ImageEncoder(ImageEncoderConfig(kind="hf", name=str(path)), CPU)
    x = torch.stack([enc.preprocess(Image.new("RGB", (80, 60), c)) for c in ("red", "blue")])
    pooled, grid = enc.forward(x, grid=True)
    assert enc.dim == 16 and pooled.shape == (2, 16) and grid.shape[0] == 2 and grid.shape[2] == 16
    torch.testing.assert_close(pooled, grid.mean(1), atol=1e-5, rtol=1e-4)  # ResNet pools its grid by averaging


def tiny_clip(tmp_path: Path) -> tuple[Path, Path]:
    import open_clip

    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    cfg_path = tmp_path / "tiny-test-clip.json"
    cfg_path.write_text(json.dumps(cfg))
    open_clip.add_model_config(cfg_path)
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-test-clip")
    weights = tmp_path / "tiny-clip.pt"
    torch.save(model.state_dict(), weights)
    return cfg_path, weights


def test_clip_loaders_tiny_open_clip(tmp_path):
    cfg_path, weights = tiny_clip(tmp_path)
    words = ["dog", "cat", "poster", "space", "ship", "red"]
    tagger = Tagger(TaggerConfig(kind="clip", model="tiny-test-clip", pretrained=str(weights),
                                 model_config=str(cfg_path)), CPU, words)
    saved = torch.load(weights, weights_only=True)
    torch.testing.assert_close(tagger.model.state_dict()["visual.conv1.weight"], saved["visual.conv1.weight"])
    x = torch.stack([tagger.preprocess(Image.new("RGB", (50, 40), c)) for c in ("red", "green", "blue")])
    s = tagger.scores(x)
    assert s.shape == (3, len(words)) and s.abs().max() <= 1.0 + 1e-5  # cosine similarities
    enc = ImageEncoder(ImageEncoderConfig(kind="open_clip", name="tiny-test-clip", pretrained=str(weights),
                                          model_config=str(cfg_path)), CPU)
    assert enc.forward(x)[0].shape == (3, 16)


# --------------------------------------------------------------------------- real weights


@pytest.fixture(scope="module")
def minilm():
    return TextEncoder(TextEncoderConfig(), CPU)


def test_minilm_similar_sentences_closer(minilm):
    v = minilm.encode(DOG)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    assert minilm.dim == 384 and minilm.identity["weights_sha256"]
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3


def test_efficientnet_sequels_closer_than_unrelated(shared_datasets):
    enc = ImageEncoder(ImageEncoderConfig(), CPU)
    posters = shared_datasets / "ml-100k-posters" / "posters"
    films = {"star_wars": 50, "empire": 172, "jedi": 181, "goldeneye": 2}
    x = torch.stack([enc.preprocess(load_image(posters / f"{i}.jpg", Counter())) for i in films.values()])
    v = torch.nn.functional.normalize(enc.forward(x)[0], dim=-1)
    sim = (v @ v.T).numpy()
    assert sim[1, 2] > sim[1, 3] and sim[0, 1] > sim[0, 3], sim  # Empire~Jedi, Star Wars~Empire beat GoldenEye


def test_imagenet_tagger_names_a_comic_poster(shared_datasets):
    tagger = Tagger(TaggerConfig(), CPU)
    img = load_image(shared_datasets / "ml-100k-posters" / "posters" / "1.jpg", Counter())  # Toy Story
    top = tagger.scores(tagger.preprocess(img)[None]).topk(3).indices[0].tolist()
    assert "comic book" in [tagger.words[j] for j in top]


# ------------------------------------------------------------------------------ the stages


@pytest.fixture
def tiny_items(tmp_path, bad_images) -> Path:
    """prepared/items.parquet with 10 items: texts (one empty, one long), images good and bad."""
    raw = tmp_path / "raw"
    (raw / "img").mkdir(parents=True)
    for p in bad_images.iterdir():
        if p.name != "bomb.png":
            (raw / "img" / p.name).write_bytes(p.read_bytes())
    long = " ".join(f"Sentence number {i} is here." for i in range(14))
    rows = []
    for i in range(1, 11):
        imgs = {1: ["good.jpg", "png_named.jpg"], 2: ["cmyk.jpg"], 3: ["truncated.jpg", "good.jpg"], 4: ["corrupt.jpg"],
                5: ["missing.jpg"], 6: ["gray16.png"], 7: ["rgba.png"], 8: [], 9: ["good.jpg"], 10: ["good.jpg"]}[i]
        rows.append({"item_id": i, "orig_id": f"o{i}", "title": "" if i == 8 else f"Film {i}",
                     "categories": ["drama"], "description": {8: "", 9: long}.get(i, DOG[i % 3]),
                     "image_paths": [f"img/{p}" for p in imgs], "has_metadata": True})
    write_table(pl.DataFrame(rows), tmp_path / "prepared" / "items.parquet", "items", {"test": True})
    return tmp_path


def feature_params(**over) -> dict:
    p = {"features": {"device": "cpu", "shard_size": 3, "threads": 2,
                      "text": {"max_sentences": 4},
                      "image": {"max_images": 2, "grid": True},
                      "keywords": {"top_n": 5, "max_images": 2}}}
    for k, v in over.items():
        p["features"][k] |= v
    return p


def test_text_stage_tables(tiny_items, minilm):
    d = tiny_items
    report = text_stage.run(open_stage("text", feature_params(), d / "prepared", d / "raw", d / "f" / "text"))
    assert report["items"] == 10 and report["skipped"] == {"empty_text": 1}
    assert report["sentences_dropped_over_max"] == 15 - 4  # item 9: title + 14 sentences, 4 kept
    vec, present = load_item_matrix(d / "f" / "text" / "text.parquet", "text", 10)
    assert present[1:].tolist() == [True] * 7 + [False] + [True] * 2 and not vec[8].any()
    np.testing.assert_allclose(vec[1], minilm.encode(["Film 1. " + DOG[1]])[0], atol=1e-5)
    stack, mask = load_item_matrix(d / "f" / "text" / "text_sentences.parquet", "text_sentences", 10)
    assert mask.sum(1).tolist() == [0, 2, 2, 2, 2, 2, 2, 2, 0, 4, 2] and not stack[~mask].any()
    prov = read_provenance(d / "f" / "text" / "text.parquet")
    assert prov["encoder"] == "sentence-transformers/all-MiniLM-L6-v2" and prov["dim"] == 384
    with pytest.raises(TableError, match="source_sha256"):
        read_table(d / "f" / "text" / "text.parquet", "text", expect={"source_sha256": "other"})
    with pytest.raises(TableError, match="expected a 'image' table"):
        read_table(d / "f" / "text" / "text.parquet", "image")


def test_text_stage_word_tokens(tiny_items, minilm):
    """`tokens: N`: the encoder's last hidden states of each text's first N tokens, masked, as a stack."""
    d = tiny_items
    report = text_stage.run(open_stage("text", feature_params(text={"tokens": 6}), d / "prepared", d / "raw",
                                       d / "f" / "tok"))
    tok, mask = load_item_matrix(d / "f" / "tok" / "text_tokens.parquet", "text_tokens", 10)
    assert tok.shape == (11, 6, 384) and report["tokens_encoded"] == int(mask.sum())
    assert not mask[8].any() and mask[1].all() and not tok[~mask].any()  # item 8 has no text
    batch = minilm.tokenize(["Film 1. " + DOG[1]])
    hidden = minilm.st({k: v[:, :6] for k, v in batch.items()})["token_embeddings"][0]
    np.testing.assert_allclose(tok[1], hidden.detach().numpy(), atol=1e-4)


def test_sentence_split():
    items = pl.DataFrame({"item_id": [1], "title": ["T"], "description": ["One! Two? Three... Four"],
                          "categories": [["x"]]})
    assert item_texts(items, ["title", "description"])["sentences"].to_list() == [["T.", "One!", "Two?", "Three...",
                                                                                   "Four"]]


def test_image_stage_masks_and_counts_bad_images(tiny_items):
    d = tiny_items
    report = image_stage.run(open_stage("image", feature_params(), d / "prepared", d / "raw", d / "f" / "image"))
    assert report["skipped"] == {"missing": 1, "unreadable": 2, "too_large": 0, "extreme_aspect": 0}
    assert report["images_considered"] == 11 and report["images_encoded"] == 8
    assert report["notes"]["items_without_images"] == 1 and report["notes"]["extension_mismatch"] == 1
    vec, mask = load_item_matrix(d / "f" / "image" / "image.parquet", "image", 10)
    assert mask[1:].tolist() == [[True, True], [True, False], [False, True], [False, False], [False, False],
                                 [True, False], [True, False], [False, False], [True, False], [True, False]]
    assert not vec[~mask].any() and np.abs(vec[mask]).sum(1).min() > 0
    np.testing.assert_allclose(vec[9, 0], vec[3, 1], atol=1e-5)  # the same picture, the same vector
    grid = read_table(d / "f" / "image" / "image_grid.parquet", "image_grid")
    assert grid.height == 8 and read_provenance(d / "f" / "image" / "image_grid.parquet")["grid"] == 49


def test_keywords_stage_with_tiny_clip(tiny_items):
    d = tiny_items
    cfg_path, weights = tiny_clip(d)
    tagger = {"kind": "clip", "model": "tiny-test-clip", "pretrained": str(weights), "model_config": str(cfg_path)}
    params = feature_params(keywords={"tagger": tagger, "vocabulary": {"size": 8, "min_count": 1}})
    report = keywords_stage.run(open_stage("keywords", params, d / "prepared", d / "raw", d / "f" / "kw"))
    assert report["dictionary_size"] == 8 and report["images_encoded"] == 8 and report["skipped"]["unreadable"] == 2
    kw = read_table(d / "f" / "kw" / "keywords.parquet", "keywords")
    vocab = set(build_vocabulary(item_texts(pl.read_parquet(d / "prepared" / "items.parquet"),
                                            ["title", "description"])["text"], VocabularyConfig(size=8, min_count=1)))
    assert kw.height == 8 and all(len(w) == 5 and set(w) <= vocab for w in kw["words"])
    assert all(s == sorted(s, reverse=True) for s in kw["scores"].to_list())
    vec, mask = load_item_matrix(d / "f" / "kw" / "keyword_vectors.parquet", "keyword_vectors", 10)
    assert mask.sum() == 8 and vec.shape[-1] == 384
    out = describe_item(9, find_tables(d / "prepared", d / "f"), k=3)
    assert "keywords, image 0" in out and "nearest by keyword_vectors" in out


def test_vocabulary_from_texts_and_file(tmp_path):
    texts = pl.Series("text", ["The red ship sails.", "A red ship, a red sail!", "the blue sky"])
    assert build_vocabulary(texts, VocabularyConfig(size=2, min_count=2)) == ["red", "ship"]
    f = tmp_path / "words.txt"
    f.write_text("# a comment\nspace\nship\nspace\n")
    assert build_vocabulary(texts, VocabularyConfig(file=str(f))) == ["space", "ship"]


# ---------------------------------------------------------------------------- resume after kill


def run_text_stage(d: Path, out: str, env: dict | None = None) -> subprocess.CompletedProcess:
    (d / "params.yaml").write_text(yaml.safe_dump(feature_params(text={"encoder": {"batch_size": 4}})))
    cmd = [sys.executable, "-m", "pipeline.stages.text_features", "--params", str(d / "params.yaml"),
           "--prepared", str(d / "prepared"), "--out", str(d / out), "--timing", str(d / f"{out}-timing.json")]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=os.environ | (env or {}))


def test_kill_mid_extraction_then_resume_recomputes_only_missing_shards(tiny_items):
    d = tiny_items
    killed = run_text_stage(d, "f/text", {"MMREC_KILL_AFTER_SHARDS": "2"})
    assert killed.returncode == -9, killed.stderr
    assert not (d / "f" / "text" / "text.parquet").exists()  # no final table that looks whole
    work = d / "f" / ".work" / "text"
    assert len(list(work.glob("text-*.parquet"))) == 2
    resumed = run_text_stage(d, "f/text")
    assert resumed.returncode == 0, resumed.stderr
    assert "4 shards, 2 reused from an earlier run, 2 computed" in resumed.stderr
    assert not work.exists()
    clean = run_text_stage(d, "clean/text")
    assert "0 reused" in clean.stderr
    for name in ("text", "text_sentences"):
        a, b = (pl.read_parquet(d / x / "text" / f"{name}.parquet") for x in ("f", "clean"))
        assert a.equals(b), name
    ra, rb = (json.loads((d / x / "text" / "report.json").read_text()) for x in ("f", "clean"))
    assert ra["skipped"] == rb["skipped"] and ra["sentences_encoded"] == rb["sentences_encoded"]


def test_query_sql_and_float16(tiny_items):
    d = tiny_items
    text_stage.run(open_stage("text", feature_params() | {"features": feature_params()["features"] | {"dtype": "float16"}},
                              d / "prepared", d / "raw", d / "f" / "text"))
    tables = find_tables(d / "prepared", d / "f")
    out = sql("SELECT title, present FROM items JOIN text USING (item_id) WHERE NOT present", tables)
    assert out.to_dicts() == [{"title": "", "present": False}]
    assert read_provenance(tables["text"])["dtype"] == "float16"
    vec, _ = load_item_matrix(tables["text"], "text", 10)
    assert vec.dtype == np.float32 and np.abs(vec[1]).sum() > 0
    assert "nearest by text" in describe_item(1, tables, k=2)


@pytest.mark.parametrize("stage", ["text", "image"])
def test_two_process_extraction_writes_the_one_process_tables_byte_for_byte(tiny_items, stage):
    """`features.nproc: 2`: the stage relaunches itself under torch.distributed.run (gloo), the ranks
    split the shards, rank 0 merges — the same bytes and report as one process (1 thread each)."""
    d = tiny_items
    outs = {}
    for nproc in (1, 2):
        params = feature_params(text={"encoder": {"batch_size": 4}})
        params["features"] |= {"threads": 1, "nproc": nproc}
        (d / f"p{nproc}.yaml").write_text(yaml.safe_dump(params))
        out = d / f"n{nproc}" / stage
        raw = ["--raw", str(d / "raw")] if stage == "image" else []
        done = subprocess.run([sys.executable, "-m", f"pipeline.stages.{stage}_features", "--params",
                               str(d / f"p{nproc}.yaml"), "--prepared", str(d / "prepared"), *raw, "--out", str(out)],
                              cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        outs[nproc] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
        assert not (d / f"n{nproc}" / ".work" / stage).exists()
    assert "on 2 processes" in done.stderr
    assert sorted(outs[1]) == sorted(outs[2]) and any(n.endswith(".parquet") for n in outs[1])
    for name in outs[1]:
        assert outs[2][name] == outs[1][name], name


def tiny_decoder(path: Path, padding_side: str = "left") -> Path:
    """A random 1-layer Llama-architecture decoder with a word-level tokenizer (pad, unk, </s>), saved
    to disk: what `kind: llm` loads for Qwen3-Embedding or E5-Mistral, at test size."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaModel, PreTrainedTokenizerFast

    words = "the a dog puppy runs running park grass tax deadline april is on in across quarterly filing . ,".split()
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "</s>", "Represent:", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path.mkdir(parents=True)
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="</s>", pad_token="<pad>",
                            padding_side=padding_side).save_pretrained(path)
    torch.manual_seed(0)
    LlamaModel(LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)).save_pretrained(path)
    return path


@pytest.mark.parametrize("side", ["left", "right"])
def test_llm_text_encoder_pools_the_last_real_token(tmp_path, side):
    """`kind: llm` through the real loader: the vector is the decoder's state at the appended </s>
    (the last real token, whichever side pads), the same alone as in a padded batch; the instruction
    prefix changes it and is part of the encoder's identity."""
    from transformers import AutoModel, AutoTokenizer

    path = tiny_decoder(tmp_path / "llm", side)
    enc = TextEncoder(TextEncoderConfig(kind="llm", name=str(path), pooling="last", batch_size=3), CPU)
    assert enc.dim == 16 and enc.identity["pooling"] == "last" and enc.identity["weights_sha256"]
    got = enc.encode(DOG)
    for i, text in enumerate(DOG):  # by hand: the model on the text + </s>, unpadded, state at the last position
        tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
        with torch.no_grad():
            want = model(**tok([text + "</s>"], return_tensors="pt")).last_hidden_state[0, -1].numpy()
        np.testing.assert_allclose(got[i], want, atol=1e-5)
    instructed = TextEncoder(TextEncoderConfig(kind="llm", name=str(path), pooling="last",
                                               instruction="Represent: "), CPU)
    assert not np.allclose(instructed.encode(DOG), got) and instructed.identity["instruction"] == "Represent: "


def test_llm_needs_last_token_pooling_in_one_line(tmp_path):
    path = tiny_decoder(tmp_path / "llm")
    with pytest.raises(ConfigError, match="a decoder LLM pools its last token"):
        TextEncoder(TextEncoderConfig(kind="llm", name=str(path), pooling="mean"), CPU)
