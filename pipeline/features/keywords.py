"""The `keywords` stage's library: images -> the N words that describe them best -> Sentence-BERT vectors (MSM4SR §III-A, eq. 2).

Reads `features.keywords` and the text encoder of `features.text.encoder` ("the same Sentence-BERT
model"). For each item's first `max_images` images the tagger scores a word dictionary: with
`tagger.kind: clip`, an open_clip model (ViT-B-32 / openai for real users) gives the cosine
similarity of the image to each dictionary word (the dictionary is the `vocabulary.size` most
frequent words of the items' texts, stop words and words under 3 letters removed, at least
`min_count` occurrences; or the words in `vocabulary.file`); with `tagger.kind: imagenet` (the
offline default here, no CLIP weights) EfficientNet-Lite0's softmax over the 1,000 ImageNet class
names. The `top_n` best words are kept, best first, in `keywords.parquet` (item, image index,
words, scores: readable), joined with spaces into one sentence and encoded into
`keyword_vectors.parquet` (stack per item with `count` and `mask`). Image failures are counted
exactly as in the image stage.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from pipeline.config import (
    KeywordsConfig,
    TaggerConfig,
    TextEncoderConfig,
    VocabularyConfig,
)
from pipeline.features.common import (
    Stage,
    base_provenance,
    image_batches,
    image_slots,
    write_report,
)
from pipeline.features.encoders import Tagger, TextEncoder, config_dict
from pipeline.features.image import image_report
from pipeline.features.store import extract_sharded, fingerprint, stack_table
from pipeline.features.text import item_texts
from pipeline.params import ConfigError, from_dict

STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers herself
him himself his how i if in into is it its itself just me more most my myself no nor not now of off on once only or
other our ours ourselves out over own same she should so some such than that the their theirs them themselves then
there these they this those through to too under until up very was we were what when where which while who whom why
will with would you your yours yourself yourselves one two three new get gets got into onto upon its it's who's
""".split())


def build_vocabulary(texts: pl.Series, cfg: VocabularyConfig) -> list[str]:
    if cfg.file:
        path = Path(cfg.file)
        if not path.is_file():
            raise ConfigError(f"features.keywords.vocabulary.file={cfg.file!r} does not exist")
        words = [w.strip() for w in path.read_text(encoding="utf-8").splitlines()]
        words = list(dict.fromkeys(w for w in words if w and not w.startswith("#")))
        if not words:
            raise ConfigError(f"{path}: the word list is empty")
        return words
    counts = (texts.str.to_lowercase().str.extract_all(r"[a-z]{3,}").explode().drop_nulls()
              .value_counts(name="n").filter(~pl.col(texts.name).is_in(list(STOPWORDS)) & (pl.col("n") >= cfg.min_count))
              .sort(["n", texts.name], descending=[True, False]).head(cfg.size))
    return counts[texts.name].to_list()


def run(stage: Stage) -> dict:
    cfg = from_dict(KeywordsConfig, stage.section, "features.keywords")
    tag_cfg = from_dict(TaggerConfig, cfg.tagger, "features.keywords.tagger")
    voc_cfg = from_dict(VocabularyConfig, cfg.vocabulary, "features.keywords.vocabulary")
    text_section = ((stage.params.get("features") or {}).get("text") or {}).get("encoder") or {}
    text_cfg = from_dict(TextEncoderConfig, text_section, "features.text.encoder")
    dictionary = build_vocabulary(item_texts(stage.items, ["title", "description"])["text"], voc_cfg) \
        if tag_cfg.kind == "clip" else None
    tagger = Tagger(tag_cfg, stage.device, dictionary)
    top_n = min(cfg.top_n, len(tagger.words))
    encoder = TextEncoder(text_cfg, stage.device)
    dtype = stage.settings.dtype
    counts: Counter = Counter()
    slots_all = image_slots(stage.items, cfg.max_images, counts)
    ident = {"tagger": tagger.identity, "dictionary_size": len(tagger.words),
             "dictionary_sha256": fingerprint(tagger.words), "top_n": top_n}
    prov = {"keywords": base_provenance(stage, "keywords", "keywords", **ident),
            "keyword_vectors": base_provenance(stage, "keywords", "keyword_vectors", dim=encoder.dim,
                                               slots=cfg.max_images, **ident, **encoder.identity)}

    def compute(shard: pl.DataFrame) -> dict[str, pa.Table]:
        ids = shard["item_id"].to_numpy()
        slots = slots_all.join(shard.select("item_id"), on="item_id", how="semi")
        kw_ids, kw_idx, kw_words, kw_scores = [], [], [], []
        for item_ids, index, pixels in image_batches(slots, stage.raw, tagger.preprocess, tagger.cfg.batch_size,
                                                      counts, cfg.max_pixels):
            best = tagger.scores(pixels).topk(top_n, dim=-1)
            kw_ids.append(item_ids)
            kw_idx.append(index)
            kw_scores.extend(best.values.numpy().tolist())
            kw_words.extend([[tagger.words[j] for j in row] for row in best.indices.numpy().tolist()])
        item_ids = np.concatenate(kw_ids) if kw_ids else np.zeros(0, np.int32)
        index = np.concatenate(kw_idx) if kw_idx else np.zeros(0, np.int32)
        vecs = np.zeros((shard.height, cfg.max_images, encoder.dim), np.float32)
        mask = np.zeros((shard.height, cfg.max_images), bool)
        if len(item_ids):
            rows = np.searchsorted(ids, item_ids)  # shards are sorted by item_id
            vecs[rows, index] = encoder.encode([" ".join(w) for w in kw_words])
            mask[rows, index] = True
        counts["encoded"] += int(mask.sum())
        keywords = pa.table({"item_id": pa.array(item_ids, pa.int32()), "image_index": pa.array(index, pa.int32()),
                             "words": pa.array(kw_words, pa.list_(pa.string())),
                             "scores": pa.array(kw_scores, pa.list_(pa.float32()))})
        return {"keywords": keywords, "keyword_vectors": stack_table(ids, vecs, mask, dtype)}

    outputs = {"keywords": (stage.out / "keywords.parquet", "keywords"),
               "keyword_vectors": (stage.out / "keyword_vectors.parquet", "keyword_vectors")}
    timing = extract_sharded(stage.items.select("item_id", "image_paths"), compute, outputs, prov,
                             {"keywords": config_dict(cfg), "text_encoder": config_dict(text_cfg)},
                             stage.work, stage.settings.shard_size, "keywords", counts)
    report = image_report(stage, slots_all.height, counts, timing)
    report |= {"tagger": tagger.identity, "dictionary_size": len(tagger.words), "top_n": top_n,
               "text_encoder": encoder.identity, "device": str(stage.device)}
    write_report(stage, "keywords", report)
    return report
