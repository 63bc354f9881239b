"""Shared pieces of the source readers: the normalised frames and a checked line parser."""

from __future__ import annotations

import io
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

log = logging.getLogger(__name__)

# Share of malformed lines above which a file is treated as the wrong format (an error),
# rather than a mostly good file with a few bad lines (a counted, logged skip).
MAX_BAD_LINE_SHARE = 0.10

INTERACTION_COLUMNS = {"user": pl.String, "item": pl.String, "rating": pl.Float64, "timestamp": pl.Int64, "row": pl.Int64}
ITEM_COLUMNS = {
    "item": pl.String,
    "title": pl.String,
    "categories": pl.List(pl.String),
    "description": pl.String,
    "image_paths": pl.List(pl.String),
}


class SourceError(ValueError):
    """A source file is missing or malformed; the message names the file and what to fix."""


@dataclass
class RawData:
    """What every reader returns.

    interactions: user, item (source ids as strings), rating (null if the source has none),
        timestamp (int64; the file order stands in when the source has none), row (0-based order
        in the source file, the tie-break for equal timestamps).
    items: item, title, categories, description, image_paths (relative to the raw folder).
    report: counts of everything skipped while parsing, and notes (e.g. "no timestamps").
    """

    interactions: pl.DataFrame
    items: pl.DataFrame
    report: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.interactions = self.interactions.select(
            [pl.col(c).cast(t) for c, t in INTERACTION_COLUMNS.items()]
        )
        self.items = self.items.select([pl.col(c).cast(t) for c, t in ITEM_COLUMNS.items()])


def require_file(path: Path, what: str, fix: str) -> Path:
    if not path.is_file():
        raise SourceError(f"{path}: missing ({what}). {fix}")
    return path


def decode(path: Path, encoding: str) -> str:
    try:
        return path.read_bytes().decode(encoding)
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise SourceError(
            f"{path}:{line}: not valid {encoding} ({e.reason} at byte {e.start}); "
            f"re-encode the file as {encoding} or set the source's encoding"
        ) from None


def read_lines(path: Path, encoding: str = "utf-8") -> pl.DataFrame:
    """A file's lines as one string column `text` (blank lines kept as null, line numbers intact).

    UTF-8 files are read by polars without a Python string per line; other encodings are decoded
    first. Invalid bytes are an error naming the line (see `decode`).
    """
    opts = {"separator": "\x1f", "has_header": False, "new_columns": ["text"], "schema": {"text": pl.String},
            "quote_char": None}
    if encoding.lower().replace("-", "") in ("utf8", "utf8sig"):
        try:
            return pl.read_csv(path, **opts)
        except pl.exceptions.ComputeError:
            decode(path, encoding)  # raises the line-numbered error if the bytes are the problem
            raise
    return pl.read_csv(io.BytesIO(decode(path, encoding).encode("utf-8")), **opts)


def split_lines(
    path: Path, sep: str, names: list[str], encoding: str = "utf-8", header: bool = False, min_fields: int | None = None
) -> tuple[pl.DataFrame, dict]:
    """Split a delimited text file into string columns `names`, checking every line's field count.

    Lines with fewer than `min_fields` (default: all) fields or more than len(names) are skipped and
    counted; if more than MAX_BAD_LINE_SHARE of the lines are bad the file is rejected with an
    error naming the first bad line. Blank lines are ignored (and counted).

    Returns the frame (plus a `line` column, 1-based) and {"blank_lines": n, "malformed_lines": n}.
    """
    lines = read_lines(path, encoding).with_row_index("line", offset=1)
    if header:
        lines = lines.slice(1)
    is_blank = pl.col("text").fill_null("").str.strip_chars() == ""
    blank = lines.filter(is_blank)
    lines = lines.filter(~is_blank)
    parts = lines.with_columns(pl.col("text").str.split(sep).alias("f")).with_columns(pl.col("f").list.len().alias("n"))
    lo = min_fields if min_fields is not None else len(names)
    good_mask = (pl.col("n") >= lo) & (pl.col("n") <= len(names))
    bad = parts.filter(~good_mask)
    if bad.height:
        first = bad.row(0, named=True)
        msg = (
            f"{path}:{first['line']}: expected {len(names)} fields separated by {sep!r} "
            f"({', '.join(names)}), found {first['n']}: {first['text'][:120]!r}"
        )
        if bad.height > MAX_BAD_LINE_SHARE * max(parts.height, 1):
            raise SourceError(
                f"{msg}. {bad.height} of {parts.height} lines are malformed: is this the right file and format?"
            )
        log.warning("%s — skipping %d malformed line(s) of %d", msg, bad.height, parts.height)
    good = parts.filter(good_mask)
    frame = good.select(
        [pl.col("line")] + [pl.col("f").list.get(i, null_on_oob=True).alias(n) for i, n in enumerate(names)]
    )
    return frame, {"blank_lines": blank.height, "malformed_lines": bad.height}


def parse_int_column(df: pl.DataFrame, col: str, path: Path, report: dict, key: str) -> pl.DataFrame:
    """Cast a string column to int64 (accepting '12.0'); rows that do not parse are counted and dropped."""
    parsed = df.with_columns(pl.col(col).str.strip_chars().cast(pl.Float64, strict=False).alias("_v"))
    bad = parsed.filter(pl.col("_v").is_null() | ~pl.col("_v").is_finite())
    if bad.height:
        r = bad.row(0, named=True)
        log.warning("%s:%s: %s %r is not a number — skipping %d such row(s)", path, r["line"], col, r[col], bad.height)
    report[key] = report.get(key, 0) + bad.height
    return parsed.filter(pl.col("_v").is_not_null() & pl.col("_v").is_finite()).with_columns(
        pl.col("_v").floor().cast(pl.Int64).alias(col)
    ).drop("_v")


def copy_files(src: Path, dst: Path, names: list[str], required: list[str], fix: str) -> list[str]:
    """Copy `names` from `src` to `dst`; a missing required file is an error, a missing optional one is skipped."""
    if not src.is_dir():
        raise SourceError(f"{src}: source folder does not exist. {fix}")
    copied = []
    for name in names:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
            copied.append(name)
        elif name in required:
            raise SourceError(f"{src / name}: missing (required file of this source). {fix}")
    return copied


def image_paths_for(ids: pl.Series, raw_dir: Path, folder: str, exts=(".jpg", ".jpeg", ".png")) -> pl.Series:
    """For each item id, the list of `folder/<id><ext>` files that exist (relative to raw_dir)."""
    present = {}
    base = raw_dir / folder
    if base.is_dir():
        for p in base.iterdir():
            if p.suffix.lower() in exts:
                present.setdefault(p.stem, []).append(f"{folder}/{p.name}")
    return pl.Series("image_paths", [sorted(present.get(i, [])) for i in ids.to_list()], dtype=pl.List(pl.String))
