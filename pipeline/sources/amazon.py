"""Amazon review data (McAuley lab): the 2018 per-category 5-core files and the 2014 layout.

2018: `<Category>_5.json.gz` (JSON lines: reviewerID, asin, overall, unixReviewTime, ...) and
`meta_<Category>.json.gz` (JSON lines: asin, title, description [list], brand, category [list],
imageURLHighRes [list]). 2014: `reviews_<Category>_5.json.gz` (same review keys) and
`meta_<Category>.json.gz` whose lines are Python dict literals (asin, title, description,
brand, categories [[...]], imUrl), parsed with `ast.literal_eval` (never `eval`).

Offline, `source` is a folder holding those files; online (`source: null`) they are downloaded
over https (the publisher gives no checksums). Item images are the metadata's URLs; with
`images: true` they are fetched by `pipeline.sources.images` into `images/<asin>.<ext>` with a
manifest of every failure, and items without a fetched image are masked downstream.
"""

from __future__ import annotations

import ast
import json
import logging
import shutil
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl

from pipeline.params import Checked, Positive
from pipeline.sources import fetch as net
from pipeline.sources.common import (
    INT64_LIMIT,
    RawData,
    SourceError,
    bad_lines,
    check_timestamp_units,
    copy_files,
    copy_tree,
    image_paths_for,
    parse_rating,
    utf8_lines,
)

log = logging.getLogger(__name__)

URLS = {
    2018: ("https://jmcauley.ucsd.edu/data/amazon_v2/categoryFilesSmall/{c}_5.json.gz",
           "https://jmcauley.ucsd.edu/data/amazon_v2/metaFiles2/meta_{c}.json.gz"),
    2014: ("https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/reviews_{c}_5.json.gz",
           "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/meta_{c}.json.gz"),
}


@dataclass
class AmazonConfig(Checked):
    category: str = "Industrial_and_Scientific"  # file stem: 2018 `Industrial_and_Scientific`, 2014 `Beauty`
    version: Literal[2018, 2014] = 2018  # 2018 | 2014
    source: str | None = None  # folder with the two .json.gz files; null downloads them
    images: bool = False  # download each item's first image URL (online only)
    max_images: Positive = 1
    image_workers: Positive = 8



def file_names(cfg: AmazonConfig) -> tuple[str, str]:
    c = cfg.category
    return (f"{c}_5.json.gz" if cfg.version == 2018 else f"reviews_{c}_5.json.gz"), f"meta_{c}.json.gz"


def fetch(cfg: AmazonConfig, out: Path) -> dict:
    reviews, meta_file = file_names(cfg)
    if cfg.source:
        fix = (f"Set `source` to a folder with {reviews} and {meta_file} (the {cfg.version} per-category files), "
               "or null to download them.")
        copy_files(Path(cfg.source), out, [reviews, meta_file], [reviews], fix)
        origin = str(cfg.source)
    else:
        r_url, m_url = (u.format(c=cfg.category) for u in URLS[cfg.version])
        for url, name in ((r_url, reviews), (m_url, meta_file)):
            shutil.copy2(net.download(url, net.CACHE / "amazon" / name), out / name)
        origin = r_url
    meta = {"format": "amazon", "origin": origin, "version": cfg.version, "reviews": reviews, "meta": meta_file,
            "images": None}
    if cfg.source and (Path(cfg.source) / "images").is_dir():  # a local mirror of the images
        meta["skipped"] = {}
        copy_tree(Path(cfg.source) / "images", out / "images", Path(cfg.source), meta["skipped"])
        meta["images"] = "images"
    elif cfg.images and (out / meta_file).is_file():
        from pipeline.sources.images import download_images

        urls = read_meta(out / meta_file, cfg.version, {}).select("item", pl.col("image_urls").list.head(cfg.max_images))
        cache = net.CACHE / "amazon" / f"{cfg.category}-images"  # persistent: a rerun keeps what it fetched
        meta["image_manifest"] = download_images(dict(zip(urls["item"], urls["image_urls"].to_list())), cache,
                                                 workers=cfg.image_workers)
        shutil.copytree(cache, out / "images", ignore=shutil.ignore_patterns("*.part", "manifest.json"))
        meta["images"] = "images"
    return meta


def gunzip(path: Path) -> bytes:
    """Every gzip member of `path`, decompressed. A stream that ends early is a cut-short download;
    bytes after the last member that are not another member are called trailing data (both errors
    name the file: never a silently shorter data set)."""
    raw, out, pos = path.read_bytes(), [], 0
    while pos < len(raw):
        if raw[pos:pos + 2] != b"\x1f\x8b":
            what = "is not a gzip file" if pos == 0 else f"has {len(raw) - pos:,} bytes of trailing data after its gzip stream"
            raise SourceError(f"{path}: {what} (at byte {pos:,}); the file is damaged or not what the source ships "
                              "— delete it and fetch it again")
        d = zlib.decompressobj(wbits=31)
        try:
            out.append(d.decompress(raw[pos:]))
        except zlib.error as e:
            raise SourceError(f"{path}: corrupt gzip data at byte {pos:,} ({e}) — delete it and fetch it again") from None
        if not d.eof:
            raise SourceError(f"{path}: not a complete gzip file (the stream ends early, {len(raw):,} bytes); the "
                              "download was cut short — delete it and fetch it again")
        pos = len(raw) - len(d.unused_data)
    return b"".join(out)


def gz_lines(path: Path) -> pl.DataFrame:
    """Decompress a .json.gz into a `text` column with 1-based `line` numbers (see `gunzip`)."""
    return utf8_lines(gunzip(path), path)


def read_reviews(path: Path, report: dict) -> pl.DataFrame:
    lines = gz_lines(path).filter(pl.col("text").str.strip_chars() != "")
    def scalar(key: str) -> pl.Expr:  # an id must be a JSON string or number, not an object or a list
        v = pl.col("text").str.json_path_match(f"$.{key}")
        return pl.when(v.str.starts_with("{") | v.str.starts_with("[")).then(None).otherwise(v)

    fields = lines.with_columns(
        scalar("reviewerID").alias("user"),
        scalar("asin").alias("item"),
        pl.col("text").str.json_path_match("$.overall").alias("overall"),
        pl.col("text").str.json_path_match("$.unixReviewTime").cast(pl.Float64, strict=False).alias("_t"))
    fields = fields.with_columns(pl.when(pl.col("_t").abs() < INT64_LIMIT).then(pl.col("_t")).cast(pl.Int64)
                                 .alias("timestamp")).drop("_t")
    bad = fields.filter(pl.col("user").is_null() | pl.col("item").is_null() | pl.col("timestamp").is_null())
    bad_lines(path, bad, lines.height, "not a JSON review with reviewerID, asin and unixReviewTime")
    report["reviews_malformed_lines"] = bad.height
    good = fields.filter(pl.col("user").is_not_null() & pl.col("item").is_not_null() & pl.col("timestamp").is_not_null())
    check_timestamp_units(good, path)
    good = parse_rating(good, "overall", path, report, "reviews")
    return good.select(pl.col("user").str.strip_chars(), pl.col("item").str.strip_chars(), "rating", "timestamp",
                       (pl.col("line") - 1).cast(pl.Int64).alias("row"))


def _json(line: str) -> dict | None:
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _literal(line: str) -> dict | None:
    try:
        value = ast.literal_eval(line)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def read_meta(path: Path, version: int, report: dict) -> pl.DataFrame:
    """item, title, categories, description, image_urls — one row per asin (the first line wins)."""
    lines = gz_lines(path).filter(pl.col("text").str.strip_chars() != "")
    parse = _json if version == 2018 else _literal  # 2014 lines are Python literals, never eval'd
    dicts = [parse(t) for t in lines["text"].to_list()]
    good = [d is not None and isinstance(d.get("asin"), str) for d in dicts]
    bad = lines.filter(~pl.Series(good))
    bad_lines(path, bad, lines.height, "not a metadata record with an asin")
    report["meta_malformed_lines"] = bad.height

    def text_of(v) -> str:
        if isinstance(v, list):
            return " ".join(str(x) for x in v if x)
        return str(v) if v else ""

    coerced = Counter()

    def as_list(v, key: str) -> list:
        """A list field: a lone string is a one-element list (counted), anything else not a list is dropped."""
        if isinstance(v, str):
            coerced[key] += 1
            return [v]
        return [x for x in v if isinstance(x, str)] if isinstance(v, list) else []

    rows = []
    for d in (d for d, g in zip(dicts, good) if g):
        if version == 2018:
            cats = as_list(d.get("category"), "category")
            urls = as_list(d.get("imageURLHighRes") or d.get("imageURL"), "image_urls")
        else:
            cats = [c for path_ in d.get("categories") or [] for c in (path_ if isinstance(path_, list) else [path_])]
            urls = [d["imUrl"]] if d.get("imUrl") else []
        brand = d.get("brand") or ""
        desc = text_of(d.get("description"))
        rows.append({"item": d["asin"].strip(), "title": text_of(d.get("title")).strip(), "categories": cats,
                     "description": (desc + (f" Brand: {brand}." if brand else "")).strip(),
                     "image_urls": [u for u in urls if isinstance(u, str)]})
    report["meta_string_as_list"] = dict(coerced)
    if coerced:
        log.warning("%s: %s given as one string instead of a list: read as one-element lists", path, dict(coerced))
    frame = pl.DataFrame(rows, schema={"item": pl.String, "title": pl.String, "categories": pl.List(pl.String),
                                       "description": pl.String, "image_urls": pl.List(pl.String)})
    dup = frame.height - frame["item"].n_unique()
    report["meta_duplicate_asins"] = dup
    return frame.unique("item", keep="first", maintain_order=True)


def read(raw: Path, meta: dict) -> RawData:
    report: dict = {}
    inter = read_reviews(raw / meta["reviews"], report)
    meta_path = raw / meta["meta"]
    if meta_path.is_file():
        items = read_meta(meta_path, meta["version"], report)
    else:
        report["note_no_meta"] = f"{meta['meta']} absent: items have no text or images"
        items = pl.DataFrame(schema={"item": pl.String, "title": pl.String, "categories": pl.List(pl.String),
                                     "description": pl.String, "image_urls": pl.List(pl.String)})
    images = image_paths_for(items["item"], raw, meta["images"]) if meta.get("images") else pl.Series(
        "image_paths", [[] for _ in range(items.height)], dtype=pl.List(pl.String))
    items = items.drop("image_urls").with_columns(images)
    return RawData(inter, items, report)

