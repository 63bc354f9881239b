"""Amazon Reviews 2023 (McAuley lab, Hou et al. 2024): per-category JSON lines and the official
benchmark splits.

Reviews, `<Category>.jsonl` (or `.jsonl.gz`): one JSON object per line with `user_id`, `parent_asin`
(the item: product variants share it), `asin`, `rating`, `timestamp` (unix **milliseconds**),
`title`, `text`, `images`, `helpful_vote`, `verified_purchase`. Metadata, `meta_<Category>.jsonl`:
`parent_asin`, `title`, `features` [list], `description` [list], `details` {dict}, `categories`,
`main_category`, `store`, `images` [{thumb, large, hi_res, variant}], ...

Benchmark splits (`reviews: benchmark`): `<kcore>/<split>/<Category>.{train,valid,test}.csv`
with header `user_id,parent_asin,rating,timestamp[,history]` — `kcore` 5core | 0core, `split`
last_out | timestamp (the `_w_his` folders add a history column, ignored here: train.csv holds
every training event). The three files' events become one log; the report says how the official
split relates to the pipeline's (`official_split`): last_out is leave-one-out (the report counts
the users whose last two events are the official valid/test rows), timestamp is a global time
split whose cuts are the first valid and test times (set `preprocess.split: time` with those
`split_cuts` to follow it). 5-core files are the publisher's filter: `prefiltered` by default.

Item text = title + features + description + details (as "key: value"); image URLs = the
metadata's `images` (hi_res, else large), fetched with `images: true` online, or read from an
`images/` folder beside the files offline. Offline, `source` is the folder holding the files;
online (`source: null`) they are downloaded over https (the publisher gives no checksums).
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl

from pipeline.params import Checked, Positive
from pipeline.sources import fetch as net
from pipeline.sources.common import (
    RawData,
    SourceError,
    bad_lines,
    copy_tree,
    image_paths_for,
    parse_rating,
    utf8_lines,
)

log = logging.getLogger(__name__)

BASE = "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_2023"
URLS = {"reviews": BASE + "/raw/review_categories/{c}.jsonl.gz", "meta": BASE + "/raw/meta_categories/meta_{c}.jsonl.gz",
        "benchmark": BASE + "/benchmark/{k}/{s}/{c}.{part}.csv.gz"}
PARTS = ("train", "valid", "test")


@dataclass
class Amazon2023Config(Checked):
    category: str = "All_Beauty"  # file stem, e.g. All_Beauty, Industrial_and_Scientific, Video_Games
    source: str | None = None  # folder with the files (benchmark: <kcore>/<split>/ below it); null downloads them
    reviews: Literal["full", "benchmark"] = "full"  # full: <Category>.jsonl | benchmark: the official split CSVs
    kcore: Literal["5core", "0core"] = "5core"  # benchmark: which filtered set
    split: Literal["last_out", "timestamp", "last_out_w_his", "timestamp_w_his"] = "last_out"  # benchmark folder
    prefiltered: bool | None = None  # None: true for 5-core benchmark files (used as published), else false
    images: bool = False  # download each item's first image URL (online only)
    max_images: Positive = 1
    image_workers: Positive = 8


def names(cfg: Amazon2023Config) -> dict[str, list[str]]:
    """The files this configuration reads, relative to `source`: reviews (one or three) and meta."""
    c = cfg.category
    if cfg.reviews == "benchmark":
        return {"reviews": [f"{cfg.kcore}/{cfg.split}/{c}.{p}.csv" for p in PARTS], "meta": [f"meta_{c}.jsonl"]}
    return {"reviews": [f"{c}.jsonl"], "meta": [f"meta_{c}.jsonl"]}


def _local(src: Path, name: str) -> Path | None:
    """`name` or `name.gz` inside `src` (nothing outside it: a symlink leaving the folder is an error)."""
    for p in (src / name, src / f"{name}.gz"):
        if p.is_symlink() and not p.resolve().is_relative_to(src.resolve()):
            raise SourceError(f"{p}: a symlink to {p.resolve()}, outside the source folder; nothing outside "
                              "`source` is read — copy the file into the folder")
        if p.is_file():
            return p
    return None


def fetch(cfg: Amazon2023Config, out: Path) -> dict:
    files = names(cfg)
    got: dict[str, list[str]] = {"reviews": [], "meta": []}
    if cfg.source:
        src = Path(cfg.source)
        if not src.is_dir():
            raise SourceError(f"{src}: source folder does not exist. Set `source` to the folder holding "
                              f"{files['reviews'][0]} (Amazon Reviews 2023), or null to download")
        for kind, wanted in files.items():
            for name in wanted:
                path = _local(src, name)
                if path is None and kind == "reviews":
                    raise SourceError(f"{src / name}: missing (or {name}.gz); this configuration reads "
                                      f"{files['reviews']} — check `category`, `reviews`, `kcore` and `split`")
                if path is not None:
                    dst = out / path.relative_to(src)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, dst)
                    got[kind].append(str(path.relative_to(src)))
        origin = str(src)
    else:
        c = cfg.category
        if cfg.reviews == "benchmark":
            urls = [(URLS["benchmark"].format(k=cfg.kcore, s=cfg.split, c=c, part=p), f"{n}.gz")
                    for p, n in zip(PARTS, files["reviews"])]
        else:
            urls = [(URLS["reviews"].format(c=c), f"{files['reviews'][0]}.gz")]
        urls.append((URLS["meta"].format(c=c), f"{files['meta'][0]}.gz"))
        for url, name in urls:
            dst = out / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(net.download(url, net.CACHE / "amazon2023" / name.replace("/", "_")), dst)
            got["meta" if name.startswith("meta_") else "reviews"].append(name)
        origin = urls[0][0]
    prefiltered = cfg.prefiltered if cfg.prefiltered is not None else (cfg.reviews == "benchmark"
                                                                       and cfg.kcore == "5core")
    meta = {"format": "amazon2023", "origin": origin, "reviews_kind": cfg.reviews, "reviews": got["reviews"],
            "meta": got["meta"][0] if got["meta"] else None, "split": cfg.split if cfg.reviews == "benchmark" else None,
            "prefiltered": prefiltered, "images": None}
    if cfg.source and (Path(cfg.source) / "images").is_dir():  # a local mirror of the images
        meta["skipped"] = {}
        copy_tree(Path(cfg.source) / "images", out / "images", Path(cfg.source), meta["skipped"])
        meta["images"] = "images"
    elif cfg.images and meta["meta"]:
        from pipeline.sources.images import download_images

        urls = read_meta(out / meta["meta"], {}).select("item", pl.col("image_urls").list.head(cfg.max_images))
        cache = net.CACHE / "amazon2023" / f"{cfg.category}-images"
        meta["image_manifest"] = download_images(dict(zip(urls["item"], urls["image_urls"].to_list())), cache,
                                                 workers=cfg.image_workers)
        shutil.copytree(cache, out / "images", ignore=shutil.ignore_patterns("*.part", "manifest.json"))
        meta["images"] = "images"
    return meta


def text_lines(path: Path) -> pl.DataFrame:
    """A (optionally gzipped) UTF-8 text file as a `text` column with 1-based `line` numbers."""
    return utf8_lines(gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes(), path)


def milliseconds(df: pl.DataFrame, path: Path) -> pl.DataFrame:
    """The 2023 release's times are unix milliseconds; a file in seconds is refused (it would sort
    the same but mean 1970), naming a line."""
    bad = df.filter(pl.col("timestamp") < 10**11)  # < 1973 in ms: seconds, or not a time
    if bad.height:
        r = bad.row(0, named=True)
        raise SourceError(f"{path}:{r['line']}: timestamp {r['timestamp']} is not in milliseconds (Amazon Reviews 2023 "
                          "gives unix ms, e.g. 1588687728923); is this a 2018 file? use format: amazon for those")
    return df


def read_jsonl_reviews(path: Path, report: dict) -> pl.DataFrame:
    lines = text_lines(path).filter(pl.col("text").str.strip_chars() != "")

    def scalar(key: str) -> pl.Expr:  # an id must be a JSON string or number, not an object or a list
        v = pl.col("text").str.json_path_match(f"$.{key}")
        return pl.when(v.str.starts_with("{") | v.str.starts_with("[")).then(None).otherwise(v)

    fields = lines.with_columns(scalar("user_id").alias("user"), scalar("parent_asin").alias("item"),
                                pl.col("text").str.json_path_match("$.rating").alias("stars"),
                                pl.col("text").str.json_path_match("$.timestamp").cast(pl.Int64, strict=False)
                                .alias("timestamp"))
    ok = pl.col("user").is_not_null() & pl.col("item").is_not_null() & pl.col("timestamp").is_not_null()
    bad = fields.filter(~ok)
    bad_lines(path, bad, lines.height, "not a JSON review with user_id, parent_asin and an integer timestamp")
    report["reviews_malformed_lines"] = bad.height
    good = milliseconds(fields.filter(ok), path)
    good = parse_rating(good, "stars", path, report, "reviews")
    return good.select(pl.col("user").str.strip_chars(), pl.col("item").str.strip_chars(), "rating", "timestamp",
                       (pl.col("line") - 1).cast(pl.Int64).alias("row"))


def read_benchmark(raw: Path, files: list[str], report: dict) -> pl.DataFrame:
    """The official train / valid / test CSVs as one log (`part` says which file each event came from)."""
    frames, offset = [], 0
    for part, name in zip(PARTS, files):
        path = raw / name
        try:
            data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            df = pl.read_csv(io.BytesIO(data), infer_schema_length=0)  # every column a string: checked below
        except (pl.exceptions.PolarsError, OSError) as e:
            raise SourceError(f"{path}: not a benchmark CSV with user_id, parent_asin, rating, timestamp ({e})") from None
        missing = {"user_id", "parent_asin", "rating", "timestamp"} - set(df.columns)
        if missing:
            raise SourceError(f"{path}:1: header {df.columns} lacks {sorted(missing)}; expected "
                              "user_id,parent_asin,rating,timestamp[,history]")
        df = df.with_row_index("line", offset=2).with_columns(pl.col("timestamp").cast(pl.Int64, strict=False))
        bad = df.filter(pl.col("user_id").is_null() | pl.col("parent_asin").is_null() | pl.col("timestamp").is_null())
        bad_lines(path, bad, df.height, "a row without user_id, parent_asin or an integer timestamp")
        report[f"{part}_malformed_rows"] = bad.height
        df = milliseconds(df.filter(pl.col("user_id").is_not_null() & pl.col("parent_asin").is_not_null()
                                    & pl.col("timestamp").is_not_null()), path)
        df = parse_rating(df.rename({"rating": "stars"}), "stars", path, report, part)
        frames.append(df.select(pl.col("user_id").alias("user"), pl.col("parent_asin").alias("item"), "rating",
                                "timestamp", (pl.col("line") - 2 + offset).cast(pl.Int64).alias("row"),
                                pl.lit(part).alias("part")))
        offset += df.height + bad.height
    return pl.concat(frames)


def official_split(log_: pl.DataFrame, kind: str) -> dict:
    """How the publisher's split relates to the pipeline's: leave-one-out agreement, or time cuts."""
    counts = {p: int((log_["part"] == p).sum()) for p in PARTS}
    if kind.startswith("timestamp"):
        cuts = [int(log_.filter(pl.col("part") == p)["timestamp"].min() or 0) for p in ("valid", "test")]
        return {"kind": "timestamp", "events": counts, "cuts": cuts,
                "follow": f"preprocess.split=time, preprocess.split_cuts={cuts}"}
    last = (log_.sort("user", "timestamp", "row").group_by("user", maintain_order=True)
            .agg(pl.col("part").tail(2).alias("tail")))
    agree = int((last["tail"].list.join(",") == "valid,test").sum())
    return {"kind": "last_out", "events": counts, "users": last.height,
            "users_whose_last_two_are_valid_test": agree, "follow": "preprocess.split=loo (the default)"}


def read_meta(path: Path, report: dict) -> pl.DataFrame:
    """item (parent_asin), title, categories, description (features + description + details),
    image_urls — one row per parent_asin (the first line wins)."""
    lines = text_lines(path).filter(pl.col("text").str.strip_chars() != "")
    dicts = []
    for t in lines["text"].to_list():
        try:
            d = json.loads(t)
        except json.JSONDecodeError:
            d = None
        dicts.append(d if isinstance(d, dict) and isinstance(d.get("parent_asin"), str) else None)
    bad = lines.filter(pl.Series([d is None for d in dicts]))
    bad_lines(path, bad, lines.height, "not a metadata record with a parent_asin")
    report["meta_malformed_lines"] = bad.height
    coerced = Counter()

    def strings(v, key: str) -> list[str]:
        if isinstance(v, str):
            coerced[key] += 1
            return [v]
        return [str(x) for x in v if isinstance(x, (str, int, float)) and str(x).strip()] if isinstance(v, list) else []

    rows = []
    for d in (d for d in dicts if d is not None):
        details = d.get("details") if isinstance(d.get("details"), dict) else {}
        text = " ".join(strings(d.get("features"), "features") + strings(d.get("description"), "description")
                        + [f"{k}: {v}" for k, v in details.items() if isinstance(v, (str, int, float))])
        images = [i.get("hi_res") or i.get("large") for i in d.get("images") or [] if isinstance(i, dict)]
        cats = strings(d.get("categories"), "categories") or strings(d.get("main_category"), "main_category")
        rows.append({"item": d["parent_asin"].strip(), "title": str(d.get("title") or "").strip(), "categories": cats,
                     "description": text.strip(), "image_urls": [u for u in images if isinstance(u, str) and u]})
    report["meta_string_as_list"] = dict(coerced)
    frame = pl.DataFrame(rows, schema={"item": pl.String, "title": pl.String, "categories": pl.List(pl.String),
                                       "description": pl.String, "image_urls": pl.List(pl.String)})
    report["meta_duplicate_parent_asins"] = frame.height - frame["item"].n_unique()
    return frame.unique("item", keep="first", maintain_order=True)


def read(raw: Path, meta: dict) -> RawData:
    report: dict = {}
    if meta["reviews_kind"] == "benchmark":
        log_ = read_benchmark(raw, meta["reviews"], report)
        report["official_split"] = official_split(log_, meta["split"])
        inter = log_.drop("part")
    else:
        inter = read_jsonl_reviews(raw / meta["reviews"][0], report)
    if meta.get("meta"):
        items = read_meta(raw / meta["meta"], report)
    else:
        report["note_no_meta"] = "meta_<Category>.jsonl absent: items have no text or images"
        items = pl.DataFrame(schema={"item": pl.String, "title": pl.String, "categories": pl.List(pl.String),
                                     "description": pl.String, "image_urls": pl.List(pl.String)})
    images = image_paths_for(items["item"], raw, meta["images"]) if meta.get("images") else pl.Series(
        "image_paths", [[] for _ in range(items.height)], dtype=pl.List(pl.String))
    return RawData(inter, items.drop("image_urls").with_columns(images), report)
