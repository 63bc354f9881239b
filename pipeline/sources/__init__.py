"""Data sources: each turns a dataset into files under `data/raw/` and reads them back.

A source has two halves:

* `fetch(cfg, out_dir) -> dict` materialises the dataset's raw files in its native layout
  (download, copy from a local `source` folder, or generate) and returns the `source.json`
  description (which reader to use and its options).
* a reader `read(raw_dir, meta) -> RawData` parses that layout into two normalised frames.

`demo` has a generator for `fetch` but no reader of its own: it writes RecBole atomic files,
so downstream code reads it exactly as it reads a user's RecBole data.
"""

from __future__ import annotations

from pipeline.sources import amazon, demo, hm, movielens, recbole, sequences
from pipeline.sources.common import RawData, SourceError

# dataset format -> (config dataclass, fetch function)
FETCHERS = {
    "demo": (demo.DemoConfig, demo.fetch),
    "ml-100k": (movielens.MovieLensConfig, movielens.fetch),
    "ml-1m": (movielens.MovieLens1MConfig, movielens.fetch_1m),
    "recbole": (recbole.RecBoleConfig, recbole.fetch),
    "amazon": (amazon.AmazonConfig, amazon.fetch),
    "hm": (hm.HMConfig, hm.fetch),
    "unisrec": (sequences.UniSRecConfig, sequences.fetch_unisrec),
    "sasrec": (sequences.SASRecTextConfig, sequences.fetch_sasrec),
}

# raw layout (written into source.json by fetch) -> reader
READERS = {
    "ml-100k": movielens.read,
    "ml-1m": movielens.read_1m,
    "recbole": recbole.read,
    "amazon": amazon.read,
    "hm": hm.read,
    "unisrec": sequences.read_unisrec,
    "sasrec": sequences.read_sasrec,
}

__all__ = ["FETCHERS", "READERS", "RawData", "SourceError"]
