"""Data sources: each format turns a data set into files under `data/raw/` and reads them back.

`SOURCES` maps a format name (`datasets.<name>.format` in params.yaml) to its `Source`: the
settings dataclass, `fetch(cfg, out_dir) -> dict` (materialise the raw files in their native
layout: copy from a local `source` folder, download, or generate; returns the `source.json`
description, whose `format` names the reader) and `read(raw_dir, meta) -> RawData` (parse that
layout into two normalised frames). A new format is one module here plus one line below
(docs/adding-a-source.md).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.params import ConfigError, from_dict
from pipeline.sources import amazon, amazon2023, demo, hm, movielens, recbole, sequences
from pipeline.sources.common import RawData, Source, SourceError

SOURCES: dict[str, Source] = {
    "demo": Source(demo.DemoConfig, demo.fetch),  # generated; written as RecBole atomic files
    "ml-100k": Source(movielens.MovieLensConfig, movielens.fetch, movielens.read),
    "ml-1m": Source(movielens.MovieLens1MConfig, movielens.fetch_1m, movielens.read_1m),
    "recbole": Source(recbole.RecBoleConfig, recbole.fetch, recbole.read),
    "amazon": Source(amazon.AmazonConfig, amazon.fetch, amazon.read),
    "amazon2023": Source(amazon2023.Amazon2023Config, amazon2023.fetch, amazon2023.read),
    "hm": Source(hm.HMConfig, hm.fetch, hm.read),
    "unisrec": Source(sequences.UniSRecConfig, sequences.fetch_unisrec, sequences.read_unisrec),
    "sasrec": Source(sequences.SASRecTextConfig, sequences.fetch_sasrec, sequences.read_sasrec),
}


def dataset_config(name: str, entry: dict | None) -> tuple[Source, object]:
    """A `datasets.<name>` entry: its format's Source and its settings, checked (pipeline.params.from_dict)."""
    section = dict(entry or {})
    fmt = section.pop("format", None)
    if fmt not in SOURCES:
        raise ConfigError(f"params.yaml `datasets.{name}.format`: {fmt!r} is not allowed: one of {sorted(SOURCES)}")
    return SOURCES[fmt], from_dict(SOURCES[fmt].config, section, f"datasets.{name}")


def read_raw(raw: Path, meta: dict) -> RawData:
    """The raw folder read by the reader its source.json names."""
    source = SOURCES.get(meta.get("format"))
    if source is None or source.read is None:
        readable = sorted(k for k, s in SOURCES.items() if s.read)
        raise SourceError(f"{raw / 'source.json'}: unknown raw format {meta.get('format')!r}; known: {readable}")
    return source.read(raw, meta)


__all__ = ["SOURCES", "RawData", "Source", "SourceError", "dataset_config", "read_raw"]
