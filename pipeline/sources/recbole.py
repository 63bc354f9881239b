"""RecBole atomic files (`<name>.inter` + optional `<name>.item`, typed `field:type` headers).

A RecBole user brings data unchanged: `user_id:token`, `item_id:token` and optionally
`rating:float`, `timestamp:float` in `.inter`; item text fields in `.item`. Image files may sit in
an `images` folder named `<item_id>.jpg|.jpeg|.png`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.params import Checked
from pipeline.sources.common import (
    RawData,
    SourceError,
    clip,
    copy_files,
    copy_tree,
    image_paths_for,
    parse_rating,
    parse_time_column,
    read_interaction_lines,
    source_id,
    split_lines,
)

log = logging.getLogger(__name__)

TYPES = {"token", "token_seq", "float", "float_seq"}
TITLE_FIELDS = ("title", "movie_title", "item_title", "name")
CATEGORY_FIELDS = ("categories", "category", "class", "genre", "genres")
DESCRIPTION_FIELDS = ("description", "overview", "text", "plot", "desc")


@dataclass
class RecBoleConfig(Checked):
    source: str | None = None  # folder holding <name>.inter / <name>.item (required: no public URL)
    name: str = ""  # file stem: <name>.inter
    images: str | None = None  # optional folder (inside `source`) with <item_id>.jpg|png
    encoding: str = "utf-8"
    prefiltered: bool = False  # true: a published benchmark set, used as published (no k-core on top)


def fetch(cfg: RecBoleConfig, out: Path) -> dict:
    fix = "Set `source` to the folder that holds <name>.inter (and <name>.item) and `name` to the file stem."
    if not cfg.source or not cfg.name:
        raise SourceError(f"RecBole source needs both `source` and `name`. {fix}")
    src = Path(cfg.source)
    copied = copy_files(src, out, [f"{cfg.name}.inter", f"{cfg.name}.item"], [f"{cfg.name}.inter"], fix)
    images, skipped = None, {}
    if cfg.images:
        if not (src / cfg.images).is_dir():
            raise SourceError(f"{src / cfg.images}: image folder not found; fix `images` or set it to null")
        copy_tree(src / cfg.images, out / "images", src, skipped)
        images = "images"
    return {"format": "recbole", "name": cfg.name, "images": images, "encoding": cfg.encoding, "files": copied,
            "prefiltered": cfg.prefiltered,
            "skipped": skipped}


def parse_header(path: Path, encoding: str) -> list[tuple[str, str]]:
    with open(path, "rb") as f:
        raw = f.readline()
    if not raw.strip():
        raise SourceError(f"{path}: the file is empty (no header line); a RecBole atomic file starts with a typed "
                          "header such as `user_id:token\\titem_id:token`")
    first = raw.removeprefix(b"\xef\xbb\xbf").decode(encoding, errors="replace").rstrip("\r\n")  # a UTF-8 BOM is fine
    fields = []
    for col in first.split("\t"):
        name, _, typ = col.strip().partition(":")
        if typ not in TYPES:
            raise SourceError(
                f"{path}:1: header field {clip(col)} is not `name:type` with type in {sorted(TYPES)}; "
                "RecBole atomic files start with a typed header such as `user_id:token\\titem_id:token`"
            )
        fields.append((name, typ))
    names = [n for n, _ in fields]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SourceError(f"{path}:1: the header names {dup} more than once ({names}); each field once")
    return fields


def read(raw: Path, meta: dict) -> RawData:
    name, enc = meta["name"], meta.get("encoding", "utf-8")
    inter_path = raw / f"{name}.inter"
    header = parse_header(inter_path, enc)
    names = [n for n, _ in header]
    for need in ("user_id", "item_id"):
        if need not in names:
            raise SourceError(f"{inter_path}:1: no `{need}` field in header {names}; RecBole needs user_id and item_id")
    if set(names) <= {"user_id", "item_id", "rating", "timestamp"}:  # typed streaming read when the file is clean
        df, report = read_interaction_lines(inter_path, "\t", names, ["user_id", "item_id"], enc, header=True)
    else:  # other fields: every line's field count is checked over all of them
        df, report = split_lines(inter_path, "\t", names, enc, header=True)
        report = {f"inter_{k}": v for k, v in report.items()}
    if isinstance(df, pl.DataFrame) and df.height == 0:  # (a spilled log has lines: `spill_clean`)
        raise SourceError(f"{inter_path}: a header but no interaction lines; is this the right file?")
    if "timestamp" in names:
        df = parse_time_column(df, "timestamp", inter_path, report, "inter_bad_timestamp")
    else:
        report["note_no_timestamps"] = "no timestamp field: the file order is the chronological order"
        df = df.with_columns((pl.col("line") - 1).cast(pl.Int64).alias("timestamp"))
    df = parse_rating(df, "rating" if "rating" in names else None, inter_path, report, "inter")
    inter = df.select(
        source_id(df, "user_id").alias("user"),
        source_id(df, "item_id").alias("item"),
        pl.col("rating"),
        pl.col("timestamp"),
        (pl.col("line") - 2).cast(pl.Int64).alias("row"),
    )
    items = read_items(raw, meta, enc, report)
    return RawData(inter, items, report)


def _first(names: list[str], wanted: tuple[str, ...]) -> list[str]:
    return [n for n in names if n in wanted]


def read_items(raw: Path, meta: dict, enc: str, report: dict) -> pl.DataFrame:
    path = raw / f"{meta['name']}.item"
    if not path.is_file():
        report["note_no_item_file"] = f"{path.name} absent: items have no text"
        return pl.DataFrame(schema={"item": pl.String, "title": pl.String, "categories": pl.List(pl.String),
                                    "description": pl.String, "image_paths": pl.List(pl.String)})
    header = parse_header(path, enc)
    names = [n for n, _ in header]
    if "item_id" not in names:
        raise SourceError(f"{path}:1: no `item_id` field in header {names}")
    df, rep = split_lines(path, "\t", names, enc, header=True, min_fields=1)
    report.update({f"item_{k}": v for k, v in rep.items()})
    title = _first(names, TITLE_FIELDS)
    cats = _first(names, CATEGORY_FIELDS)
    desc = _first(names, DESCRIPTION_FIELDS)
    ids = df["item_id"].str.strip_chars()
    items = df.select(
        pl.col("item_id").str.strip_chars().alias("item"),
        (pl.col(title[0]).fill_null("") if title else pl.lit("")).str.strip_chars().alias("title"),
        (pl.concat_str([pl.col(c).fill_null("") for c in cats], separator=" ") if cats else pl.lit(""))
        .str.split(" ").list.eval(pl.element().filter(pl.element() != "")).alias("categories"),
        (pl.concat_str([pl.col(c).fill_null("") for c in desc], separator=" ") if desc else pl.lit(""))
        .str.strip_chars().alias("description"),
    )
    images = image_paths_for(ids, raw, meta["images"]) if meta.get("images") else pl.Series(
        "image_paths", [[] for _ in range(len(ids))], dtype=pl.List(pl.String))
    return items.with_columns(images)


def write_atomic(sequences: pl.DataFrame, out: Path, name: str, items: pl.DataFrame | None = None) -> Path:
    """Write prepared sequences as RecBole atomic files `<out>/<name>/<name>.inter` (+ `.item`).

    The timestamp column is each event's rank in our order (user by user, chronological), so a
    library that sorts by time sees exactly our per-user order, ties included.
    """
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    inter = (
        sequences.sort("user_id").select("user_id", "item_ids").explode("item_ids")
        .with_row_index("timestamp", offset=1)
        .select(pl.col("user_id").cast(pl.String).alias("user_id:token"),
                pl.col("item_ids").cast(pl.String).alias("item_id:token"),
                pl.col("timestamp").cast(pl.Float64).alias("timestamp:float"))
    )
    inter.write_csv(folder / f"{name}.inter", separator="\t", quote_style="never")
    if items is not None:
        items.select(pl.col("item_id").cast(pl.String).alias("item_id:token"),
                     pl.col("title").str.replace_all(r"[\t\n]", " ").alias("title:token_seq")).write_csv(
            folder / f"{name}.item", separator="\t", quote_style="never")
    return folder
