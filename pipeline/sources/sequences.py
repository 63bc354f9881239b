"""Sequence files other tools wrote: UniSRec / RecBole processed sequences and the SASRec text format.

Neither carries timestamps: each user's order in the file is the chronological order, and the
report says so (`note_no_timestamps`).

* `unisrec` — `<name>.{train,valid,test}.inter` (`user_id:token`, `item_id_list:token_seq`,
  `item_id:token`; one line per prefix, lists capped at the tool's max length),
  `<name>.text` (`item_id:token` = the original item id, `text:token_seq`), `<name>.item2index`
  and `<name>.user2index` (original id, index). Each user's full sequence is rebuilt from the
  training targets in file order (UniSRec writes a user's prefixes longest first), the first
  list's first item, the validation and the test target; every line's list is then checked to be
  the window of the rebuilt sequence that precedes its target — a mismatch is an error naming the
  line, never a silently wrong sequence.
* `sasrec` — one line per user `user item item …` (SASRec's `user item` pair-per-line files are the
  same format with one item per line; lines of one user are concatenated in file order).
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
    read_lines,
    split_lines,
)

log = logging.getLogger(__name__)

NO_TIME = "no timestamps in this format: each user's order in the file is the chronological order"


@dataclass
class UniSRecConfig(Checked):
    source: str | None = None  # folder with <name>.train.inter, .valid.inter, .test.inter, .text, .item2index
    name: str = ""  # file stem, e.g. Scientific
    encoding: str = "utf-8"
    prefiltered: bool = True  # UniSRec's files are the paper's filtered sets: no k-core on top (false: filter again)


@dataclass
class SASRecTextConfig(Checked):
    source: str | None = None  # folder holding `file`
    file: str = ""  # e.g. ml-1m.txt
    encoding: str = "utf-8"
    prefiltered: bool = True  # SASRec's files are already the paper's 5-core: no k-core on top (false: filter again)


def fetch_unisrec(cfg: UniSRecConfig, out: Path) -> dict:
    fix = "Set `source` to the folder with <name>.train.inter / .valid.inter / .test.inter / .text and `name`."
    if not cfg.source or not cfg.name:
        raise SourceError(f"UniSRec source needs both `source` and `name`. {fix}")
    splits = [f"{cfg.name}.{s}.inter" for s in ("train", "valid", "test")]
    extra = [f"{cfg.name}.{s}" for s in ("text", "item2index", "user2index")]
    copied = copy_files(Path(cfg.source), out, splits + extra, splits, fix)
    return {"format": "unisrec", "origin": str(cfg.source), "name": cfg.name, "encoding": cfg.encoding,
            "prefiltered": cfg.prefiltered,
            "files": copied}


def fetch_sasrec(cfg: SASRecTextConfig, out: Path) -> dict:
    fix = "Set `source` to the folder and `file` to the SASRec-format text file (`user item item ...` per line)."
    if not cfg.source or not cfg.file:
        raise SourceError(f"SASRec text source needs `source` and `file`. {fix}")
    copy_files(Path(cfg.source), out, [cfg.file], [cfg.file], fix)
    return {"format": "sasrec", "origin": str(cfg.source), "file": cfg.file, "encoding": cfg.encoding,
            "prefiltered": cfg.prefiltered}


def _sequence_lines(path: Path, enc: str, header: bool) -> pl.DataFrame:
    """Rows (line, user, items list[str], target) of a UniSRec split file."""
    df, rep = split_lines(path, "\t", ["user", "items", "target"], enc, header=header)
    if rep["malformed_lines"]:
        raise SourceError(f"{path}: {rep['malformed_lines']} line(s) without three tab-separated fields "
                          "(user_id, item_id_list, item_id); see the warning above for the first")
    return df.with_columns(pl.col("user").str.strip_chars(), pl.col("target").str.strip_chars(),
                           pl.col("items").str.strip_chars().str.split(" ")
                           .list.eval(pl.element().filter(pl.element() != "")))


def _index_map(path: Path, enc: str) -> dict[str, str] | None:
    """index -> original id from a `<id>\\t<index>` file, or None when absent."""
    if not path.is_file():
        return None
    df, _ = split_lines(path, "\t", ["orig", "index"], enc)
    df = df.with_columns(pl.col("orig", "index").str.strip_chars())
    for col, other in (("orig", "index"), ("index", "orig")):  # the map must be one-to-one both ways
        dup = df.filter(pl.col(col).is_duplicated()).sort(col, "line")
        if dup.height:
            a, b = dup.row(0, named=True), dup.row(1, named=True)
            raise SourceError(f"{path}:{b['line']}: {col} {a[col]!r} again (line {a['line']}: {other} {a[other]!r}, "
                              f"line {b['line']}: {other} {b[other]!r}) — the index map must be one-to-one, or two "
                              "items would silently become one")
    return dict(zip(df["index"].to_list(), df["orig"].to_list()))


def read_unisrec(raw: Path, meta: dict) -> RawData:
    name, enc = meta["name"], meta.get("encoding", "utf-8")
    parts = {s: _sequence_lines(raw / f"{name}.{s}.inter", enc, header=True) for s in ("train", "valid", "test")}
    report: dict = {"note_no_timestamps": NO_TIME}
    # Rebuild: first item of the user's shortest train list (or its valid list), train targets in
    # position order (the file lists a user's prefixes longest first), then valid and test targets.
    train = parts["train"].with_columns(pl.int_range(pl.len()).over("user").alias("k"),
                                        pl.len().over("user").alias("n"))
    head = pl.concat([parts["train"].select("user", "items"), parts["valid"].select("user", "items")]) \
        .sort(pl.col("items").list.len()).group_by("user").agg(pl.col("items").first().list.first().alias("first"))
    body = train.sort(["user", "k"], descending=[False, True]).group_by("user", maintain_order=True).agg(
        pl.col("target").alias("middle"))
    tails = parts["valid"].select("user", pl.col("target").alias("valid")).join(
        parts["test"].select("user", pl.col("target").alias("test")), on="user", how="full", coalesce=True)
    missing = tails.filter(pl.col("valid").is_null() | pl.col("test").is_null())
    if missing.height:
        raise SourceError(f"{raw / f'{name}.valid.inter'}: user {missing['user'][0]!r} has no "
                          f"{'validation' if missing['valid'][0] is None else 'test'} line ({missing.height} such "
                          "users); the UniSRec layout has exactly one valid and one test line per user")
    seqs = tails.join(head, on="user", how="left").join(body, on="user", how="left").with_columns(
        pl.concat_list([pl.concat_list("first"), pl.col("middle").fill_null(pl.lit([], dtype=pl.List(pl.String))),
                        pl.concat_list("valid"), pl.concat_list("test")]).alias("seq"))
    _check_windows(raw, name, parts, seqs)
    # The test line's list is capped (UniSRec: 50), so summing test lines undercounts long users;
    # their earlier events come from the train lines. Counted so a total that differs is explained.
    capped = seqs.join(parts["test"].select("user", pl.col("items").list.len().alias("test_list")), on="user") \
        .select(pl.col("seq").list.len() - 1 - pl.col("test_list")).to_series()
    report["users_longer_than_test_list"] = int((capped > 0).sum())
    report["events_before_test_list"] = int(capped.clip(lower_bound=0).sum())
    items_map = _index_map(raw / f"{name}.item2index", enc)
    users_map = _index_map(raw / f"{name}.user2index", enc)
    inter = seqs.select("user", "seq").explode("seq").with_columns(
        pl.int_range(pl.len()).over("user").cast(pl.Int64).alias("timestamp"))
    inter = inter.with_row_index("row").select(
        (pl.col("user").replace_strict(users_map, default=pl.col("user")) if users_map else pl.col("user")).alias("user"),
        (pl.col("seq").replace_strict(items_map, default=None) if items_map else pl.col("seq")).alias("item"),
        pl.lit(None, dtype=pl.Float64).alias("rating"), "timestamp", pl.col("row").cast(pl.Int64))
    if items_map:
        unknown = inter.filter(pl.col("item").is_null())
        if unknown.height:
            raise SourceError(f"{raw / f'{name}.item2index'}: {unknown.height} interaction(s) use item indices "
                              "not listed there; the file does not belong to these sequences")
    items = _read_text(raw / f"{name}.text", enc, report)
    report["users"] = seqs.height
    return RawData(inter, items, report)


def _check_windows(raw: Path, name: str, parts: dict[str, pl.DataFrame], seqs: pl.DataFrame) -> None:
    """Every line's (list, target) must be the rebuilt sequence's window before that target."""
    full = seqs.select("user", "seq")
    for split, df in parts.items():
        lines = df.join(full, on="user", how="left")
        if split == "train":
            lines = lines.with_columns((pl.len().over("user") - pl.int_range(pl.len()).over("user")).alias("pos"))
        else:
            lines = lines.with_columns((pl.col("seq").list.len() - (2 if split == "valid" else 1)).alias("pos"))
        lines = lines.with_columns(
            pl.col("seq").list.get(pl.col("pos"), null_on_oob=True).alias("expect_target"),
            pl.col("seq").list.slice(pl.max_horizontal(pl.col("pos") - pl.col("items").list.len(), 0),
                                     pl.col("items").list.len()).alias("expect_items"))
        bad = lines.filter((pl.col("expect_target") != pl.col("target")) | (pl.col("expect_items") != pl.col("items")))
        if bad.height:
            r = bad.row(0, named=True)
            raise SourceError(f"{raw / f'{name}.{split}.inter'}:{r['line']}: user {r['user']!r}'s list/target do not "
                              f"continue the sequence rebuilt from the other lines ({bad.height} such lines); "
                              "the file is not in UniSRec's layout (one line per prefix, a user's prefixes "
                              "longest first) — convert it or use the `sasrec` format")


def _read_text(path: Path, enc: str, report: dict) -> pl.DataFrame:
    empty = pl.DataFrame(schema={"item": pl.String, "title": pl.String, "categories": pl.List(pl.String),
                                 "description": pl.String, "image_paths": pl.List(pl.String)})
    if not path.is_file():
        report["note_no_text"] = f"{path.name} absent: items have no text"
        return empty
    df, rep = split_lines(path, "\t", ["item", "text"], enc, header=True, min_fields=1)
    report.update({f"text_{k}": v for k, v in rep.items()})
    return df.select(pl.col("item").str.strip_chars(), pl.col("text").fill_null("").str.strip_chars().alias("title"),
                     pl.lit([], dtype=pl.List(pl.String)).alias("categories"), pl.lit("").alias("description"),
                     pl.lit([], dtype=pl.List(pl.String)).alias("image_paths"))


def read_sasrec(raw: Path, meta: dict) -> RawData:
    path = raw / meta["file"]
    lines = read_lines(path, meta.get("encoding", "utf-8")).with_row_index("line", offset=1)
    # any run of whitespace separates: a tab after the user id must not glue user and first item
    tokens = lines.with_columns(pl.col("text").fill_null("").str.strip_chars().str.replace_all(r"\s+", " ")
                                .str.split(" ").list.eval(pl.element().filter(pl.element() != "")).alias("t"))
    blank = tokens.filter(pl.col("t").list.len() == 0).height
    short = tokens.filter(pl.col("t").list.len() == 1)
    if short.height:
        r = short.row(0)
        log.warning("%s:%d: a user with no items (%s) — skipping %d such line(s)", path, r[0], clip(r[1]), short.height)
    good = tokens.filter(pl.col("t").list.len() >= 2)
    if good.height == 0:
        raise SourceError(f"{path}: no line of the form `user item [item ...]`; is this a SASRec-format file?")
    inter = good.select("line", pl.col("t").list.first().alias("user"), pl.col("t").list.slice(1).alias("item")) \
        .explode("item").with_row_index("row")
    inter = inter.select("user", "item", pl.lit(None, dtype=pl.Float64).alias("rating"),
                         pl.int_range(pl.len()).over("user").cast(pl.Int64).alias("timestamp"),
                         pl.col("row").cast(pl.Int64))
    report = {"note_no_timestamps": NO_TIME, "blank_lines": blank, "lines_without_items": short.height,
              "note_no_item_file": "the SASRec format has no item metadata: items have no text or images"}
    items = inter.select(pl.col("item").unique(maintain_order=True)).with_columns(
        pl.lit("").alias("title"), pl.lit([], dtype=pl.List(pl.String)).alias("categories"),
        pl.lit("").alias("description"), pl.lit([], dtype=pl.List(pl.String)).alias("image_paths"))
    return RawData(inter, items, report)
