"""The `text_features` stage's library: item text -> pooled vectors and per-sentence stacks (MSM4SR eq. 1).

Reads `features.text` from params.yaml. The configured `fields` (title, description, categories)
are joined with ". " into one text per item, encoded into `text.parquet` (one vector per item,
`present` False for items with no text: counted as `empty_text`, vector all zeros). The same text
is split into sentences (at . ! ? followed by a space), the first `max_sentences` are encoded and
stacked into `text_sentences.parquet` (`count` + `mask`; items with more sentences are counted in
`sentences_dropped`). With `tokens: N`, `text_tokens.parquet` holds the encoder's last hidden
states of each text's first N tokens (masked): the word-level tokens MMSR's merge- and
co-attention fuse. Writes `report.json` with the counts and throughput.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import polars as pl
import pyarrow as pa

from pipeline.config import TextConfig, TextEncoderConfig
from pipeline.features.common import Stage, base_provenance, write_report
from pipeline.features.encoders import TextEncoder, config_dict
from pipeline.features.store import extract_sharded, stack_table, vector_column
from pipeline.params import from_dict
from pipeline.tables import read_provenance


def item_texts(items: pl.DataFrame, fields: list[str]) -> pl.DataFrame:
    """item_id, text (fields joined with '. ', '' when all are empty), sentences (list)."""
    parts = []
    for f in fields:
        col = pl.col(f).list.join(", ") if f == "categories" else pl.col(f)
        parts.append(pl.when(col.fill_null("").str.strip_chars() == "").then(None).otherwise(col.str.strip_chars()))
    text = pl.concat_str(parts, separator=". ", ignore_nulls=True).fill_null("")
    return items.select("item_id", text.alias("text")).with_columns(
        pl.col("text").str.extract_all(r"[^.!?]+(?:[.!?]+|$)").list.eval(
            pl.element().str.strip_chars()).list.eval(pl.element().filter(pl.element() != "")).alias("sentences"))


def run(stage: Stage) -> dict:
    cfg = from_dict(TextConfig, stage.section, "features.text")
    enc_cfg = from_dict(TextEncoderConfig, cfg.encoder, "features.text.encoder")
    encoder = TextEncoder(enc_cfg, stage.device)
    fields = cfg.resolved(read_provenance(stage.prepared_items).get("format"))
    texts = item_texts(stage.items, fields)
    counts: Counter = Counter()
    dtype = stage.settings.dtype
    prov = {"text": base_provenance(stage, "text_features", "text", dim=encoder.dim, fields=fields, **encoder.identity),
            "text_sentences": base_provenance(stage, "text_features", "text_sentences", dim=encoder.dim,
                                              slots=cfg.max_sentences, fields=fields, **encoder.identity)}
    if cfg.tokens:
        prov["text_tokens"] = base_provenance(stage, "text_features", "text_tokens", dim=encoder.dim, slots=cfg.tokens,
                                              fields=fields, **encoder.identity)

    def compute(shard: pl.DataFrame) -> dict[str, pa.Table]:
        ids = shard["item_id"].to_numpy()
        present = (shard["text"] != "").to_numpy()
        counts["empty_text"] += int((~present).sum())
        pooled = np.zeros((shard.height, encoder.dim), np.float32)
        pooled[present] = encoder.encode(shard.filter(present)["text"].to_list())
        n_sent = shard["sentences"].list.len().cast(pl.Int64).to_numpy()
        counts["sentences_dropped"] += int(np.clip(n_sent - cfg.max_sentences, 0, None).sum())
        kept = shard.select("item_id", pl.col("sentences").list.head(cfg.max_sentences)).with_row_index("row")
        flat = kept.explode("sentences").drop_nulls("sentences").with_columns(
            pl.int_range(pl.len()).over("row").alias("slot"))
        vecs = np.zeros((shard.height, cfg.max_sentences, encoder.dim), np.float32)
        mask = np.zeros((shard.height, cfg.max_sentences), bool)
        rows, slots = flat["row"].to_numpy(), flat["slot"].to_numpy()
        vecs[rows, slots] = encoder.encode(flat["sentences"].to_list())
        mask[rows, slots] = True
        counts["sentences_encoded"] += len(rows)
        out = {"text": pa.table({"item_id": pa.array(ids, pa.int32()), "present": pa.array(present),
                                 "vector": vector_column(pooled, dtype)}),
               "text_sentences": stack_table(ids, vecs, mask, dtype)}
        if cfg.tokens:
            tok, tok_mask = encoder.encode_tokens(shard["text"].to_list(), cfg.tokens)
            tok_mask &= present[:, None]
            counts["tokens_encoded"] += int(tok_mask.sum())
            out["text_tokens"] = stack_table(ids, tok, tok_mask, dtype)
        return out

    outputs = {"text": (stage.out / "text.parquet", "text"),
               "text_sentences": (stage.out / "text_sentences.parquet", "text_sentences")}
    if cfg.tokens:
        outputs["text_tokens"] = (stage.out / "text_tokens.parquet", "text_tokens")
    timing = extract_sharded(texts, compute, outputs, prov, {"text": fields, "max_sentences": cfg.max_sentences,
                                                               "encoder": config_dict(enc_cfg)}
                             | ({"tokens": cfg.tokens} if cfg.tokens else {}),
                             stage.work, stage.settings.shard_size, "text features", counts)
    report = {"items": texts.height, "encoded": int((texts["text"] != "").sum()),
              "skipped": {"empty_text": int((texts["text"] == "").sum())},
              "sentences_encoded": int(counts["sentences_encoded"]),
              "sentences_dropped_over_max": int(counts["sentences_dropped"]),
              **({"tokens_encoded": int(counts["tokens_encoded"])} if cfg.tokens else {}), **timing,
              "encoder": encoder.identity, "dim": encoder.dim, "device": str(stage.device)}
    write_report(stage, "text_features", report)
    return report
