"""H&M Personalized Fashion Recommendations (Kaggle layout).

`transactions_train.csv` (t_dat YYYY-MM-DD, customer_id, article_id, price, sales_channel_id),
`articles.csv` (article_id, prod_name, product_type_name, product_group_name,
graphical_appearance_name, colour_group_name, detail_desc, ...), optional `customers.csv`, and
`images/<first 3 digits>/<10-digit article_id>.jpg`. Article ids are normalised to the 10-digit,
zero-padded form the image files use. Dates have no time of day: events of one day keep the
file's order (the `row` tie-break), and the report says so. The Kaggle files need an account, so
there is no download: `source` is the unpacked competition folder (images optional).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from pipeline.params import Checked
from pipeline.sources.common import (
    MAX_BAD_LINE_SHARE,
    RawData,
    SourceError,
    clip,
    copy_files,
    copy_tree,
    decode,
)

log = logging.getLogger(__name__)

TX_COLUMNS = ["t_dat", "customer_id", "article_id"]
ARTICLE_COLUMNS = ["article_id", "prod_name", "product_type_name", "colour_group_name", "detail_desc"]
CATEGORY_COLUMNS = ["product_type_name", "product_group_name", "graphical_appearance_name", "colour_group_name",
                    "department_name"]


@dataclass
class HMConfig(Checked):
    source: str | None = None  # the unpacked Kaggle folder
    images: bool = True  # copy images/ when present
    since: str | None = None  # keep transactions on or after this date (YYYY-MM-DD); the full file is 31M rows
    encoding: str = "utf-8"  # the Kaggle files are UTF-8; bytes that are not are an error naming the line

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.since is not None:
            try:
                date.fromisoformat(str(self.since))
            except ValueError:
                raise SourceError(f"datasets.hm.since={self.since!r}: not a date; use the ISO form YYYY-MM-DD, "
                                  "e.g. 2020-06-01") from None


def fetch(cfg: HMConfig, out: Path) -> dict:
    fix = ("Set `source` to the unpacked Kaggle folder of h-and-m-personalized-fashion-recommendations "
           "(transactions_train.csv, articles.csv, images/).")
    if not cfg.source:
        raise SourceError(f"H&M needs a local copy (the data is behind a Kaggle login). {fix}")
    src = Path(cfg.source)
    copy_files(src, out, ["transactions_train.csv", "articles.csv", "customers.csv"],
               ["transactions_train.csv", "articles.csv"], fix)
    images, skipped = None, {}
    if cfg.images and (src / "images").is_dir():
        copy_tree(src / "images", out / "images", src, skipped)
        images = "images"
    return {"format": "hm", "origin": str(src), "images": images, "since": cfg.since, "encoding": cfg.encoding,
            "skipped": skipped}


def _read_csv(path: Path, required: list[str], encoding: str = "utf-8") -> pl.DataFrame:
    """The CSV as strings; bytes invalid in `encoding` are an error naming the line (never decoded
    lossily: two customer ids differing in one bad byte would merge)."""
    text = decode(path, encoding)  # raises the line-numbered error
    try:
        df = pl.read_csv(io.BytesIO(text.encode("utf-8")), infer_schema=False)
    except pl.exceptions.ComputeError as e:
        raise SourceError(f"{path}: not a readable CSV ({str(e).splitlines()[0]})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise SourceError(f"{path}: missing column(s) {missing}; found {df.columns[:12]} — is this the Kaggle file?")
    return df.with_row_index("line", offset=2)  # line 1 is the header


def article_id(col: str) -> pl.Expr:
    return pl.col(col).str.strip_chars().str.zfill(10)


def read(raw: Path, meta: dict) -> RawData:
    report: dict = {"note_same_day_order": "t_dat has no time of day: same-day purchases keep the file order"}
    tx_path = raw / "transactions_train.csv"
    enc = meta.get("encoding", "utf-8")
    tx = _read_csv(tx_path, TX_COLUMNS, enc).with_columns(
        pl.col("t_dat").str.strip_chars().str.to_date("%Y-%m-%d", strict=False).alias("date"))
    ok = pl.col("date").is_not_null() & pl.col("article_id").str.strip_chars().str.contains(r"^\d{1,10}$") & \
        (pl.col("customer_id").str.strip_chars().fill_null("") != "")
    bad = tx.filter(~ok)
    if bad.height:
        r = bad.row(0, named=True)
        msg = (f"{tx_path}:{r['line']}: bad transaction (t_dat {clip(r['t_dat'])}, customer_id "
               f"{clip(r['customer_id'])}, article_id {clip(r['article_id'])})")
        if bad.height > MAX_BAD_LINE_SHARE * max(tx.height, 1):
            raise SourceError(f"{msg}; {bad.height} of {tx.height} rows are bad")
        log.warning("%s — skipping %d such row(s)", msg, bad.height)
    report["transactions_bad_rows"] = bad.height
    tx = tx.filter(ok)
    if meta.get("since"):
        before = tx.height
        tx = tx.filter(pl.col("date") >= pl.lit(meta["since"]).str.to_date())
        report["transactions_before_since"] = before - tx.height
    inter = tx.select(pl.col("customer_id").str.strip_chars().alias("user"), article_id("article_id").alias("item"),
                      pl.lit(None, dtype=pl.Float64).alias("rating"),
                      pl.col("date").cast(pl.Datetime("ms")).dt.epoch("s").cast(pl.Int64).alias("timestamp"),
                      (pl.col("line") - 2).cast(pl.Int64).alias("row"))
    art = _read_csv(raw / "articles.csv", ARTICLE_COLUMNS, enc)
    cats = [c for c in CATEGORY_COLUMNS if c in art.columns]
    items = art.select(
        article_id("article_id").alias("item"),
        pl.col("prod_name").fill_null("").str.strip_chars().alias("title"),
        pl.concat_list([pl.col(c).fill_null("").str.strip_chars() for c in cats])
        .list.eval(pl.element().filter(pl.element() != "")).list.unique(maintain_order=True).alias("categories"),
        pl.col("detail_desc").fill_null("").str.strip_chars().alias("description"))
    dup = items.height - items["item"].n_unique()
    report["articles_duplicate_ids"] = dup
    items = items.unique("item", keep="first", maintain_order=True)
    if meta.get("images"):
        paths = items.select((pl.lit("images/") + pl.col("item").str.slice(0, 3) + "/" + pl.col("item") + ".jpg")
                             .alias("p"))["p"].to_list()
        present = [[p] if (raw / p).is_file() else [] for p in paths]
        items = items.with_columns(pl.Series("image_paths", present, dtype=pl.List(pl.String)))
        report["articles_without_image"] = sum(1 for p in present if not p)
    else:
        items = items.with_columns(pl.lit([], dtype=pl.List(pl.String)).alias("image_paths"))
    return RawData(inter, items, report)
