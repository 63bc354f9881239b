"""Shared pieces of the source readers: the normalised frames and a checked line parser."""

from __future__ import annotations

import io
import logging
import os
import shutil
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import polars as pl

log = logging.getLogger(__name__)

# Share of malformed lines above which a file is treated as the wrong format (an error),
# rather than a mostly good file with a few bad lines (a counted, logged skip).
MAX_BAD_LINE_SHARE = 0.10

# A reader's interactions are a DataFrame, or — out-of-core preprocessing (`pipeline.preprocess_disk`)
# with a clean log — a LazyFrame over the parsed log spilled to Parquet; the checks below take either.
Frame = pl.DataFrame | pl.LazyFrame
SPILL: ContextVar[Path | None] = ContextVar("SPILL", default=None)  # where a reader may spill (set by preprocess)


def schema_of(df: Frame) -> pl.Schema:
    return df.collect_schema() if isinstance(df, pl.LazyFrame) else df.schema


def gather(df: Frame, *exprs: pl.Expr) -> tuple:
    """Aggregates over a frame, eager or lazy (one streaming pass over a spilled log)."""
    return df.lazy().select(e.alias(f"_{k}") for k, e in enumerate(exprs)).collect(engine="streaming").row(0)


def settle(df: Frame) -> Frame:
    """A lazy frame's plan run once into a new spill file, so later passes read its values instead of
    parsing the text again (an eager frame as it is)."""
    if not isinstance(df, pl.LazyFrame):
        return df
    out = SPILL.get() / f"step-{len(list(SPILL.get().glob('step-*')))}.parquet"
    df.sink_parquet(out)
    return pl.scan_parquet(out)


def first(df: Frame, keep: pl.Expr, *cols: str | pl.Expr) -> tuple[int, dict | None]:
    """How many rows `keep` selects, and the first of them (its `cols`), eager or lazy."""
    n = gather(df, keep.sum())[0]
    rows = df.lazy().filter(keep).select(*cols).head(1).collect(engine="streaming") if n else None
    return n, rows.row(0, named=True) if rows is not None and rows.height else None

# Source ids are categorical: a 4-byte code per row and each distinct id string once, so a 100M-row
# log does not hold 200M strings (preprocess works on the codes and maps the survivors back).
INTERACTION_COLUMNS = {"user": pl.Categorical, "item": pl.Categorical, "rating": pl.Float64, "timestamp": pl.Int64,
                       "row": pl.Int64}
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

    interactions: user, item (source ids, categorical: strings to the reader, codes to preprocess),
        rating (null if the source has none),
        timestamp (int64; the file order stands in when the source has none), row (0-based order
        in the source file, the tie-break for equal timestamps).
    items: item, title, categories, description, image_paths (relative to the raw folder).
    report: counts of everything skipped while parsing, and notes (e.g. "no timestamps").
    """

    interactions: Frame
    items: pl.DataFrame
    report: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        lazy = isinstance(self.interactions, pl.LazyFrame)  # a spilled log: its ids stay strings (DuckDB's keys)
        have = schema_of(self.interactions)

        def cast(c: str, t):
            col = pl.col(c)
            if t == pl.Categorical and (lazy or have[c] != pl.Categorical):
                col = col.cast(pl.String)  # ids of any type become their string, then a code
            return col.cast(pl.String if lazy and t == pl.Categorical else t)

        self.interactions = self.interactions.select([cast(c, t) for c, t in INTERACTION_COLUMNS.items()])
        self.items = self.items.select([pl.col(c).cast(t) for c, t in ITEM_COLUMNS.items()])
        self.normalise_ids()
        check_mojibake(self.items, self.interactions)

    def distinct(self, frame: Frame, col: str) -> pl.DataFrame:
        """A column's distinct values as strings (`v`), eager or lazy."""
        return frame.lazy().select(pl.col(col).cast(pl.String).unique().alias("v")).collect(engine="streaming")

    def normalise_ids(self) -> None:
        """One spelling per id: Unicode NFC, format characters (zero-width marks, …) and surrounding
        blanks removed, so ids that print the same are the same entity (`ids_normalised` counts the
        ids changed). Ids that differ only in leading zeros ("007", "7") are kept apart but counted
        and named in a warning (`ids_differing_only_in_leading_zeros`)."""
        changed, zeros = 0, 0
        frames = {"interactions": self.interactions, "items": self.items}
        for frame, cols in (("interactions", ("user", "item")), ("items", ("item",))):
            df = frames[frame]
            for c in cols:
                values = self.distinct(df, c)
                fixed = values.with_columns(canonical_id(pl.col("v")).alias("n")).filter(pl.col("v") != pl.col("n"))
                if fixed.height and isinstance(df, pl.LazyFrame):  # a join streams (Expr.replace would hold the whole column)
                    df = (df.join(fixed.lazy().rename({"v": c}), on=c, how="left", maintain_order="left")
                          .with_columns(pl.coalesce("n", c).alias(c)).drop("n"))
                elif fixed.height:
                    expr = pl.col(c).cast(pl.String).replace(fixed["v"], fixed["n"])
                    df = df.with_columns(expr.cast(schema_of(df)[c]))
                changed += fixed.height if frame == "interactions" else 0
                if frame == "interactions":
                    digits = values.filter(pl.col("v").str.contains(r"^0*\d+$"))
                    zeros += digits.height - digits.select(pl.col("v").str.strip_chars_start("0")).n_unique()
            frames[frame] = df
        self.interactions, self.items = frames["interactions"], frames["items"]
        self.report["ids_normalised"] = changed  # an id left empty is dropped by preprocessing (dropped.missing_id)
        self.report["ids_differing_only_in_leading_zeros"] = zeros
        if zeros:
            log.warning("%d id(s) differ from another only in leading zeros (e.g. '007' and '7'): kept as different "
                        "entities — if they are one, write them one way", zeros)


def canonical_id(col: pl.Expr) -> pl.Expr:
    """An id's one spelling: NFC, without format characters (Unicode Cf) or surrounding blanks."""
    return col.str.normalize("NFC").str.replace_all(r"\p{Cf}", "").str.strip_chars()


MOJIBAKE = r"[ÂÃâ][\x{80}-\x{BF}]|Ã[\x{A0}-\x{BF}]|â€"  # UTF-8 bytes decoded as latin-1 / cp1252


def check_mojibake(items: pl.DataFrame, interactions: Frame) -> None:
    """Refuse item texts or ids that read as UTF-8 decoded with a one-byte encoding ("AmÃ©lie"): the
    data set's `encoding` is wrong, and every such title or id would be silently garbled."""
    text = pl.col("title").fill_null("") + " " + pl.col("description").fill_null("")
    ids = pl.concat([interactions.lazy().select(pl.col(c).cast(pl.String).unique().alias("v")).collect(
        engine="streaming") for c in ("user", "item")])
    for what, table, expr in (("item texts", items, text), ("ids", ids, pl.col("v"))):
        bad = table.filter(expr.str.contains(MOJIBAKE))
        if bad.height and (bad.height >= max(3, 0.01 * table.height) or bad.height * 10 >= table.height):
            example = bad.select(expr.alias("x"))["x"][0]
            raise SourceError(f"{bad.height:,} of {table.height:,} {what} look like UTF-8 read with a one-byte "
                              f"encoding (e.g. {clip(example)}): set the data set's `encoding: utf-8` in params.yaml")


@dataclass(frozen=True)
class Source:
    """A data format: its settings (a dataclass: the fields of `datasets.<name>` in params.yaml besides
    `format`), `fetch(cfg, out) -> dict` that puts its raw files in `out` (data/raw: copied from a
    local `source` folder, downloaded, or generated) and returns what goes into source.json —
    `format` there names the reader — and `read(raw, meta) -> RawData` that parses them. `read`
    None: `fetch` writes another registered format's layout (the demo writes RecBole atomic files)."""

    config: type
    fetch: Callable[[Any, Path], dict]
    read: Callable[[Path, dict], "RawData"] | None = None


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


def clip(value: object, n: int = 80) -> str:
    """repr of a value for a message, cut to n characters (a 5 MB field must not fill the log)."""
    text = repr(value)
    return text if len(text) <= n else f"{text[:n]}…({len(text):,} characters)"


def utf8_lines(data: bytes, path: Path) -> pl.DataFrame:
    """A file's bytes as a `text` column with 1-based `line` numbers; bytes that are not UTF-8 are an
    error naming the line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise SourceError(f"{path}:{line}: not valid UTF-8 ({e.reason}); the publisher's files are UTF-8") from None
    return pl.DataFrame([pl.Series("text", text.splitlines(), dtype=pl.String)]).with_row_index("line", offset=1)


def bad_lines(path: Path, bad: pl.DataFrame, total: int, what: str) -> None:
    """Bad lines of a file (`line` + `text` columns, or any row): a logged, counted skip while they
    are few, an error naming the first when more than MAX_BAD_LINE_SHARE of the lines are bad."""
    if bad.height == 0:
        return
    first = bad.row(0, named=True)
    msg = f"{path}:{first['line']}: {what}: {clip(first.get('text') or str(first), 120)}"
    if bad.height > MAX_BAD_LINE_SHARE * max(total, 1):
        raise SourceError(f"{msg}. {bad.height} of {total} lines are bad: is this the right file?")
    log.warning("%s — skipping %d such line(s) of %d", msg, bad.height, total)


# Control bytes the line reader may use as its never-occurring "field separator"; the first one a
# file does not contain is taken, so a 0x1F inside a field cannot split a line.
_SEPARATORS = (b"\x1f", b"\x1e", b"\x1d", b"\x1c", b"\x07", b"\x00")


def read_lines(path: Path, encoding: str = "utf-8") -> pl.DataFrame:
    """A file's lines as one string column `text` (blank lines kept as null, line numbers intact).

    UTF-8 files are read by polars without a Python string per line; other encodings are decoded
    first. A UTF-8 byte-order mark is dropped, CRLF line ends are handled. Invalid bytes are an
    error naming the line (see `decode`).
    """
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\x00" in data:
        line = data[:data.index(b"\x00")].count(b"\n") + 1
        raise SourceError(f"{path}:{line}: NUL bytes in a text file — UTF-16 or not text at all? Re-encode it as "
                          f"UTF-8, or set the data set's `encoding` ({encoding} now)")
    if encoding.lower().replace("-", "") not in ("utf8", "utf8sig"):
        data = decode(path, encoding).encode("utf-8")
    sep = next((c for c in _SEPARATORS if c not in data), None)
    if sep is None:
        raise SourceError(f"{path}: contains every control byte {_SEPARATORS} — not a text file?")
    opts = {"separator": sep.decode(), "has_header": False, "new_columns": ["text"], "schema": {"text": pl.String},
            "quote_char": None, "eol_char": "\n"}
    if not data:
        return pl.DataFrame(schema={"text": pl.String})
    try:
        lines = pl.read_csv(io.BytesIO(data), **opts)
    except pl.exceptions.ComputeError:
        decode(path, encoding)  # raises the line-numbered error if the bytes are the problem
        raise
    return lines.with_columns(pl.col("text").str.strip_suffix("\r"))


def scan_clean(path: Path, sep: str, names: list[str], ids: list[str], encoding: str = "utf-8",
               header: bool = False, strings: tuple[str, ...] = ("timestamp",)) -> Frame | None:
    """The fast path of `split_lines` for large interaction logs: polars' typed, streaming CSV reader.

    Returns the file as a `line` column (1-based, numbered as `split_lines` numbers it) and `names`:
    the `ids` columns stripped and categorical (strings, and the frame a LazyFrame over the log spilled
    to Parquet, when preprocessing runs out of core: `SPILL`, `spill_clean`), `strings` (timestamps: `parse_time_column` reads them
    exactly) as text, every other column Float64, parsed chunk by chunk
    so no line, split list or id string per row is ever held (10M rows: 0.5 GB instead of ~3 GB).
    Returns None when the file is not clean, and the caller then runs the checked parser, which
    finds, counts and reports each bad line: when a line has more or fewer fields than `names`, a
    field is empty, a line is blank, or a number column holds something that is not a number —
    anything that would make the two paths differ. Only UTF-8 without a byte-order mark and a
    one-byte separator take this path. The values it returns are the checked parser's after its
    own conversions (ids stripped, numbers through the same float parser), so the tables written
    from either path are identical (tested).
    """
    if encoding.lower().replace("-", "") != "utf8" or len(sep.encode()) != 1:
        return None
    with open(path, "rb") as f:
        if f.read(3) == b"\xef\xbb\xbf":
            return None
    schema = {n: pl.String if n in ids or n in strings else pl.Float64 for n in names}
    lazy = (pl.scan_csv(path, separator=sep, has_header=False, skip_rows=1 if header else 0, schema=schema,
                        quote_char=None, eol_char="\n", glob=False)  # the file itself, even if its name has [ or *
            .with_row_index("line", offset=2 if header else 1))
    if SPILL.get() is not None:
        return spill_clean(lazy.with_columns(pl.col(c).str.strip_chars() for c in ids), path, SPILL.get())
    lazy = lazy.with_columns(pl.col(c).str.strip_chars().cast(pl.Categorical) for c in ids)
    try:
        df = lazy.collect(engine="streaming")
    except (pl.exceptions.PolarsError, OSError) as e:  # a ragged line, a non-number, ...: the checked parser says which
        log.info("%s: not a clean %d-field file (%s); reading it line by line", path, len(names), str(e).split("\n")[0])
        return None
    if df.height == 0 or df.select(pl.any_horizontal(pl.all().is_null()).any()).item():
        return None  # blank lines, short lines or empty fields: counted by the checked parser
    return df.with_columns(pl.col("line").cast(pl.Int64))


def spill_clean(lazy: pl.LazyFrame, path: Path, folder: Path) -> pl.LazyFrame | None:
    """`scan_clean` for out-of-core preprocessing: the parsed log streamed to Parquet in `folder` (ids as
    stripped strings) and returned as a LazyFrame over that file, never held whole; None when the file
    is not clean (the checked parser then reads it in memory, and says so)."""
    out = folder / f"{path.name}.parquet"
    try:
        lazy.sink_parquet(out)
        spilled = pl.scan_parquet(out)
        rows, nulls = gather(spilled, pl.len(), pl.any_horizontal(pl.all().is_null()).any())
    except (pl.exceptions.PolarsError, OSError) as e:
        rows, nulls = 0, str(e).split("\n")[0]
    if rows and not nulls:
        return spilled.with_columns(pl.col("line").cast(pl.Int64))
    out.unlink(missing_ok=True)
    log.warning("%s: not a clean file (%s); reading it line by line in memory — the out-of-core engine needs every "
                "line to have its fields", path, nulls or "no lines")
    return None


def source_id(df: Frame, col: str) -> pl.Expr:
    """A reader's id column, stripped (a `scan_clean` column is categorical and already stripped)."""
    return pl.col(col) if schema_of(df)[col] == pl.Categorical else pl.col(col).str.strip_chars()


def read_interaction_lines(path: Path, sep: str, names: list[str], ids: list[str], encoding: str = "utf-8",
                           header: bool = False) -> tuple[pl.DataFrame, dict]:
    """`scan_clean` when the file is clean, else the checked `split_lines`; the same frame either way
    (ids may be categorical), with the checked parser's report keys (`inter_blank_lines`,
    `inter_malformed_lines`)."""
    df = scan_clean(path, sep, names, ids, encoding, header)
    if df is not None:
        return df, {"inter_blank_lines": 0, "inter_malformed_lines": 0}
    df, rep = split_lines(path, sep, names, encoding, header)
    return df, {f"inter_{k}": v for k, v in rep.items()}


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
            f"({', '.join(names)}), found {first['n']}: {clip(first['text'], 120)}"
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


INT64_LIMIT = 9.2e18  # |values| beyond this do not fit an int64
MAX_BAD_TIME_SHARE = MAX_BAD_LINE_SHARE  # more timestamps than this share that are neither numbers nor dates: refused
FAR_OUTSIDE = 1000.0  # a timestamp below median / 1000 or above median x 1000 is far outside the file's range
_INT = r"^[+-]?\d+$"
_DEC = r"^[+-]?(\d+\.\d*|\.\d+)$"


def iso_instants(col: pl.Expr) -> pl.Expr:
    """ISO-8601 dates and times as UTC nanoseconds since 1970 (null where a value is not one): with a
    zone (Z, +02:00, +0530) it is honoured; without one the time is taken as UTC; a bare date is its
    midnight."""
    def parsed(fmt: str, zoned: bool) -> pl.Expr:
        e = col.str.to_datetime(fmt, strict=False, time_unit="ns", time_zone="UTC" if zoned else None)
        return e if zoned else e.dt.replace_time_zone("UTC")
    return pl.coalesce(parsed("%+", True), parsed("%Y-%m-%d %H:%M:%S%.f%:z", True), parsed("%Y-%m-%d %H:%M:%S%.f%z", True),
                       parsed("%Y-%m-%dT%H:%M:%S%.f", False), parsed("%Y-%m-%d %H:%M:%S%.f", False),
                       col.str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("ns")).dt.replace_time_zone("UTC")
                       ).dt.epoch("ns")


def unterminated_last_line(path: Path, header: bool = False) -> int | None:
    """The 1-based number of the file's last line when it has no line end (a file cut short), else None."""
    size = path.stat().st_size
    if size == 0:
        return None
    with open(path, "rb") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return None
        f.seek(0)
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 24), b"")) + 1


def parse_time_column(df: Frame, col: str, path: Path, report: dict, key: str) -> Frame:
    """Timestamps read exactly into an int64 sort key, whatever their form:

    - integers (unix seconds, ms, µs, ns or ordinals) are taken as they are, never through a float;
    - decimals keep every digit: the key is the value x 10^d, d = the most fraction digits in the
      file (trailing zeros aside), so 1.25 and 1.5 stay apart and in order (`report["timestamp_decimals"]`);
    - ISO-8601 dates and times (with or without a zone) become UTC nanoseconds (`report["timestamp_unit"]`).

    A file mixes numbers and dates, or holds more than MAX_BAD_TIME_SHARE of values that are neither
    (thousands separators, other date forms): an error with the counts and the first such line;
    below that share they are skipped and counted (`key`). Mixed units are refused
    (`check_timestamp_units`). A last line without its line end whose value is far outside the
    file's range (a line cut mid-number) is dropped and counted (`truncated_last_line`); other values
    far outside the range are kept, counted and named in a warning (`timestamp_far_outside_range`).
    """
    text = pl.col(col).cast(pl.String).str.strip_chars()
    numeric = text.str.contains(_INT) | text.str.contains(_DEC)
    n, n_num = gather(df, pl.len(), numeric.sum())
    dated = (iso_instants(text).is_not_null() & ~numeric) if n_num < n else pl.lit(False)  # all numbers: no dates
    n_date = gather(df, dated.sum())[0] if n_num < n else 0
    use_dates = n_date > n_num
    if n_num and n_date:
        _, row = first(df, dated if not use_dates else numeric, "line", text.alias("raw"))
        raise SourceError(f"{path}:{row['line']}: {col} {clip(row['raw'])} — the file mixes {n_num:,} numbers and "
                          f"{n_date:,} dates; write every {col} one way")
    ok = dated if use_dates else numeric
    n_bad, row = first(df, ~ok, "line", text.alias("raw")) if (n_date if use_dates else n_num) < n else (0, None)
    if n_bad:
        msg = (f"{path}:{row['line']}: {col} {clip(row['raw'])} is neither an integer, a decimal nor an ISO-8601 "
               f"date ({n_bad:,} of {n:,} values)")
        if n_bad > MAX_BAD_TIME_SHARE * max(n, 1):
            raise SourceError(msg + "; is this the right file? (thousands separators or other date forms: convert "
                                    "the column first)")
        log.warning("%s — skipping those rows", msg)
        df = df.filter(ok)
    report[key] = report.get(key, 0) + n_bad
    if use_dates:
        df = settle(df.with_columns(iso_instants(text).alias(col)))
        report["timestamp_unit"] = "ns since 1970-01-01 UTC (ISO-8601 dates in the file)"
    else:
        whole = text.str.extract(r"^([+-]?\d*)").str.replace(r"^([+-]?)$", "${1}0")
        frac = text.str.extract(r"\.(\d*)$").fill_null("").str.strip_chars_end("0")
        digits = int(gather(df, frac.str.len_chars().max())[0] or 0)
        if digits > 9:
            raise SourceError(f"{path}: {col} values with {digits} fraction digits; more than nanoseconds cannot be "
                              "kept exactly — round the column to 9 digits")
        ints = whole.cast(pl.Int64, strict=False)
        nulls, largest = gather(df, ints.null_count(), ints.abs().max())
        if nulls or (digits and largest >= INT64_LIMIT / 10 ** digits):
            raise SourceError(f"{path}: {col} values too large for an exact int64 key with {digits} fraction digits")
        sign = pl.when(text.str.starts_with("-")).then(-1).otherwise(1)
        fraction = sign * frac.str.pad_end(digits, "0").cast(pl.Int64) if digits else pl.lit(0, pl.Int64)
        # (no Expr.replace here: polars' streaming engine holds the whole column for it — 8 GB at 100M rows)
        df = settle(df.with_columns((whole.cast(pl.Int64) * 10 ** digits + fraction).alias(col)))
        check_timestamp_units(df.with_columns(pl.col(col) // 10 ** digits), path, col)
        if digits:
            report["timestamp_decimals"] = digits
    return far_outside(df, col, path, report)


def far_outside(df: Frame, col: str, path: Path, report: dict) -> Frame:
    """Count (and warn of) timestamps far outside the file's range; drop an unterminated last line's."""
    median = gather(df, pl.col(col).median())[0]
    if not median or median <= 0:
        return df
    far = (pl.col(col) < median / FAR_OUTSIDE) | (pl.col(col) > median * FAR_OUTSIDE)
    cut = unterminated_last_line(path)
    if cut is not None:
        n_last, last = first(df, (pl.col("line") == cut) & far, col)
        if n_last:
            log.warning("%s:%d: the last line has no line end and its %s %s is far outside the file's range — a line "
                        "cut short: dropped", path, cut, col, last[col])
            report["truncated_last_line"] = 1
            df = df.filter(pl.col("line") != cut)
        else:
            report["note_last_line_without_newline"] = f"line {cut} has no line end (kept: its values are in range)"
    n_far, r = first(df, far, "line", col)
    if n_far:
        log.warning("%s:%s: %s %s is far outside the file's range (median %s); %d such value(s) kept — check them",
                    path, r["line"], col, r[col], median, n_far)
    report["timestamp_far_outside_range"] = n_far
    return df


def parse_int_column(df: pl.DataFrame, col: str, path: Path, report: dict, key: str) -> pl.DataFrame:
    """Cast a string column to int64 (accepting '12.0'); rows that do not parse, or do not fit an int64
    (e.g. 1e30), are counted and dropped. A Float64 column (`scan_clean`) was parsed by the same
    float parser and goes through the same checks."""
    value = pl.col(col) if df.schema[col] == pl.Float64 else pl.col(col).str.strip_chars().cast(pl.Float64, strict=False)
    ok = value.is_not_null() & value.is_finite() & (value.abs() < INT64_LIMIT)
    bad = df.filter(~ok)
    if bad.height:
        r = bad.row(0, named=True)
        log.warning("%s:%s: %s %s is not a number that fits an int64 — skipping %d such row(s)", path, r["line"], col,
                    clip(r[col]), bad.height)
        df = df.filter(ok)
    report[key] = report.get(key, 0) + bad.height
    return df.with_columns(value.floor().cast(pl.Int64).alias(col))


def parse_rating(df: Frame, col: str | None, path: Path, report: dict, prefix: str) -> Frame:
    """Replace string column `col` by a float `rating` (null when absent). Empty values are counted
    under `<prefix>_rating_missing`, non-numbers and NaN under `<prefix>_rating_unparseable`; both
    become null (unrated), so `preprocess.min_rating` drops them under their own reason. A Float64
    column (`scan_clean`: no empty field reaches it) is checked for NaN only."""
    if col is None:
        return df.with_columns(pl.lit(None, dtype=pl.Float64).alias("rating"))
    if schema_of(df)[col] == pl.Float64:
        value = shown = pl.col(col)
        missing, bad_rows = value.is_null(), value.is_nan()
    else:
        shown = pl.col(col).cast(pl.String).str.strip_chars()
        value = shown.cast(pl.Float64, strict=False)
        missing = shown.is_null() | (shown == "")
        bad_rows = (shown.fill_null("") != "") & (value.is_null() | value.is_nan())
    n_bad, r = first(df, bad_rows, shown.alias("_t"), *(["line"] if "line" in schema_of(df) else []))
    report[f"{prefix}_rating_missing"] = gather(df, missing.sum())[0]
    report[f"{prefix}_rating_unparseable"] = n_bad
    if n_bad:
        where = f"{path}:{r['line']}" if "line" in r else str(path)
        log.warning("%s: rating %s is not a number — %d such rating(s) kept as unrated", where, clip(r["_t"]), n_bad)
    rating = pl.when(value.is_nan()).then(None).otherwise(value).alias("rating")
    return df.with_columns(rating).drop(*([col] if col != "rating" else []))


# Unix time of 1973-03-03 .. 5138-11-16 in seconds; the same instants in ms, µs and ns are 1e3, 1e6,
# 1e9 times larger. Values below 1e8 (ordinals, file order) are not classified.
UNIT_RANGES = {"seconds": (1e8, 1e11), "milliseconds": (1e11, 1e14), "microseconds": (1e14, 1e17),
               "nanoseconds": (1e17, INT64_LIMIT)}


def check_timestamp_units(df: Frame, path: Path, col: str = "timestamp") -> None:
    """Refuse a file whose unix timestamps mix units (seconds and milliseconds, …): sorted as numbers,
    a user's millisecond events would all come after their second events — their oldest items would
    become the validation and test targets. The error names a line of each unit."""
    found = {}
    for unit, (lo, hi) in UNIT_RANGES.items():
        n, row = first(df, (pl.col(col).abs() >= lo) & (pl.col(col).abs() < hi), pl.all())
        if n:
            found[unit] = (n, row)
    if len(found) > 1:
        detail = "; ".join(f"{n:,} look like {u} (e.g. line {r.get('line', '?')}: {r[col]})" for u, (n, r) in found.items())
        raise SourceError(f"{path}: timestamps in mixed units — {detail}. Sorted as numbers these would reorder "
                          "each user's events; convert the file to one unit (e.g. divide the millisecond values by "
                          "1000) before reading it")


def _outside(path: Path, root: Path) -> bool:
    return not path.resolve().is_relative_to(root.resolve())


def copy_files(src: Path, dst: Path, names: list[str], required: list[str], fix: str) -> list[str]:
    """Copy `names` from `src` to `dst`; a missing required file is an error, a missing optional one is
    skipped. Nothing outside `src` is read: a file that is a symlink to a place outside it is an error."""
    if not src.is_dir():
        raise SourceError(f"{src}: source folder does not exist. {fix}")
    copied = []
    for name in names:
        path = src / name
        if path.is_symlink() and path.exists() and _outside(path, src):
            raise SourceError(f"{path}: a symlink to {path.resolve()}, outside the source folder; nothing outside "
                              "`source` is read — copy the file into the folder (or point `source` at its folder)")
        if path.is_file():
            shutil.copy2(path, dst / name)
            copied.append(name)
        elif name in required:
            raise SourceError(f"{path}: missing (required file of this source). {fix}")
    return copied


def copy_tree(src: Path, dst: Path, root: Path, skipped: dict) -> None:
    """Copy folder `src` (inside the source folder `root`) to `dst` without ever reading outside `root`.

    Symlinks whose target resolves outside `root` are skipped (`links_outside_source`); dangling
    links and link loops are skipped (`dangling_links`, `link_loops`); a link to a file inside `root`
    is copied as that file; a link to a folder is not followed (`linked_folders_skipped`: what it
    points to inside `root` is copied from its own place, anything else is outside). Each count is
    added to `skipped` (download's `source.json` → `stats.json → download`) and logged once.
    """
    counts = {"links_outside_source": 0, "dangling_links": 0, "link_loops": 0, "linked_folders_skipped": 0}
    first: dict[str, Path] = {}

    def skip(reason: str, path: Path) -> None:
        counts[reason] += 1
        first.setdefault(reason, path)

    def usable(path: Path) -> bool:
        if not path.is_symlink():
            return True
        try:
            target = path.resolve(strict=True)
        except FileNotFoundError:
            skip("dangling_links", path)
            return False
        except (RuntimeError, OSError):  # a loop (ELOOP)
            skip("link_loops", path)
            return False
        if not target.is_relative_to(root.resolve()):
            skip("links_outside_source", path)
            return False
        if target.is_dir():
            skip("linked_folders_skipped", path)
            return False
        return True

    if usable(src) and src.is_dir():
        for folder, dirs, files in os.walk(src, followlinks=False):
            here = Path(folder)
            out = dst / here.relative_to(src)
            out.mkdir(parents=True, exist_ok=True)
            for d in list(dirs):
                if (here / d).is_symlink():
                    dirs.remove(d)
                    usable(here / d)  # counted: never followed
            for f in files:
                if usable(here / f) and (here / f).is_file():
                    shutil.copy2(here / f, out / f)
    for reason, n in counts.items():
        if n:
            skipped[reason] = skipped.get(reason, 0) + n
            log.warning("%s: skipped %d file(s) or folder(s) under %s: %s (first: %s)", src, n, root,
                        reason.replace("_", " "), first[reason])


def image_paths_for(ids: pl.Series, raw_dir: Path, folder: str, exts=(".jpg", ".jpeg", ".png")) -> pl.Series:
    """For each item id, the list of `folder/<id><ext>` files that exist (relative to raw_dir)."""
    present = {}
    base = raw_dir / folder
    if base.is_dir():
        for p in base.iterdir():
            if p.suffix.lower() in exts:
                present.setdefault(p.stem, []).append(f"{folder}/{p.name}")
    return pl.Series("image_paths", [sorted(present.get(i, [])) for i in ids.to_list()], dtype=pl.List(pl.String))
