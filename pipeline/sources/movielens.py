"""GroupLens MovieLens-100K, optionally with TMDB posters and plot overviews.

Offline: `source` points at the unpacked `ml-100k` folder and `posters` at a folder holding
`posters/<movie_id>.jpg` and `tmdb_overviews.csv` (movie_id, overview). Online: with
`source: null` the official zip is downloaded and checked against its published MD5; with
`tmdb: true` and a TMDB API key in `$TMDB_API_KEY`, posters and overviews are fetched from TMDB.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import polars as pl

from pipeline.params import Checked
from pipeline.sources import fetch as net
from pipeline.sources.common import (
    RawData,
    SourceError,
    copy_files,
    copy_tree,
    decode,
    image_paths_for,
    parse_rating,
    parse_time_column,
    read_interaction_lines,
    source_id,
    split_lines,
)

log = logging.getLogger(__name__)

URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
MD5 = "0e33842e24a9c977be4e0107933c0723"
FILES = ["u.data", "u.item", "u.user", "u.genre", "u.occupation", "u.info", "README"]
REQUIRED = ["u.data", "u.item"]
GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]
TMDB_API = "https://api.themoviedb.org/3"
TMDB_IMAGES = "https://image.tmdb.org/t/p/w185"


@dataclass
class MovieLensConfig(Checked):
    source: str | None = None  # unpacked ml-100k folder; null downloads the official zip
    url: str = URL
    md5: str = MD5
    posters: str | None = None  # folder with posters/<id>.jpg and tmdb_overviews.csv; optional
    tmdb: bool = False  # with posters null: fetch posters/overviews from TMDB ($TMDB_API_KEY)
    encoding: str = "latin-1"  # the official files' (u.item); a re-saved UTF-8 copy: utf-8


def local_or_download(source: str | None, url: str, md5: str, out: Path, files: list[str], required: list[str],
                      fix: str) -> tuple[list[str], str]:
    """Copy `files` from a local unpacked folder, or download the archive (MD5-checked) and extract them."""
    if source:
        return copy_files(Path(source), out, files, required, fix), str(source)
    archive = net.download(url, net.CACHE / Path(urllib.parse.urlparse(url).path).name, md5)
    return net.safe_extract(archive, out, files), url


def with_overviews_and_posters(items: pl.DataFrame, raw: Path, report: dict) -> pl.DataFrame:
    """Join TMDB overviews (tmdb_overviews.csv) as descriptions and posters/<id>.jpg as images, when present."""
    overviews = raw / "tmdb_overviews.csv"
    if overviews.is_file():
        text = pl.read_csv(io.StringIO(decode(overviews, "utf-8")), schema={"movie_id": pl.String, "overview": pl.String})
        items = items.join(text.rename({"movie_id": "item", "overview": "description"}), on="item", how="left")
        report["items_without_overview"] = int(items["description"].fill_null("").str.strip_chars().eq("").sum())
    else:
        items = items.with_columns(pl.lit("").alias("description"))
    items = items.with_columns(pl.col("description").fill_null(""), image_paths_for(items["item"], raw, "posters"))
    if (raw / "posters").is_dir():
        report["items_without_poster"] = int((items["image_paths"].list.len() == 0).sum())
    return items


def fetch(cfg: MovieLensConfig, out: Path) -> dict:
    fix = ("Point `datasets.<name>.source` at the unpacked ml-100k folder (u.data, u.item, ...), "
           "or set it to null to download the official archive.")
    files, origin = local_or_download(cfg.source, cfg.url, cfg.md5, out, FILES, REQUIRED, fix)
    meta = {"format": "ml-100k", "origin": origin, "files": files, "posters": None, "encoding": cfg.encoding}
    if cfg.posters:
        src = Path(cfg.posters)
        copy_files(src, out, ["tmdb_overviews.csv"], ["tmdb_overviews.csv"],
                   "Set `posters` to a folder with posters/<movie_id>.jpg and tmdb_overviews.csv, or to null.")
        if (src / "posters").is_dir():
            copy_tree(src / "posters", out / "posters", src, meta.setdefault("skipped", {}))
        meta["posters"] = str(src)
    elif cfg.tmdb:
        key = os.environ.get("TMDB_API_KEY")
        if not key:
            raise SourceError("tmdb: true needs a TMDB API key in $TMDB_API_KEY (or set tmdb: false)")
        fetch_tmdb(out, key)
        meta["posters"] = "tmdb"
    return meta


def fetch_tmdb(out: Path, api_key: str, opener: Callable = urllib.request.urlopen) -> dict:
    """Look every movie up on TMDB by title and year; write posters/<id>.jpg and tmdb_overviews.csv."""
    items = read_items(out, {})
    (out / "posters").mkdir(exist_ok=True)
    rows, missing = [], 0
    for item, title, year in zip(items["item"], items["title"], items["year"]):
        query = urllib.parse.urlencode({"api_key": api_key, "query": title, **({"year": year} if year else {})})
        try:
            with opener(f"{TMDB_API}/search/movie?{query}", timeout=30) as r:
                hits = json.loads(r.read()).get("results") or []
        except OSError as e:
            log.warning("TMDB lookup of %r failed: %s", title, e)
            hits = []
        if not hits:
            missing += 1
            rows.append((item, ""))
            continue
        rows.append((item, hits[0].get("overview") or ""))
        if hits[0].get("poster_path"):
            try:
                with opener(TMDB_IMAGES + hits[0]["poster_path"], timeout=30) as r:
                    (out / "posters" / f"{item}.jpg").write_bytes(r.read())
            except OSError as e:
                log.warning("poster of %r failed: %s", title, e)
    with open(out / "tmdb_overviews.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["movie_id", "overview"])
        w.writerows(rows)
    log.info("TMDB: %d of %d movies not found", missing, len(rows))
    return {"tmdb_not_found": missing}


def read_items(raw: Path, report: dict, encoding: str = "latin-1") -> pl.DataFrame:
    path = raw / "u.item"
    names = ["item", "title_year", "release", "video_release", "imdb_url"] + [f"g{i}" for i in range(len(GENRES))]
    df, rep = split_lines(path, "|", names, encoding)
    report.update({f"item_{k}": v for k, v in rep.items()})
    genre_flags = pl.concat_list([pl.when(pl.col(f"g{i}") == "1").then(pl.lit(g)) for i, g in enumerate(GENRES)])
    year = pl.col("title_year").str.extract(r"\((\d{4})\)\s*$", 1)
    return df.select(
        pl.col("item").str.strip_chars(),
        pl.col("title_year").str.replace(r"\s*\(\d{4}\)\s*$", "").str.strip_chars().alias("title"),
        year.alias("year"),
        genre_flags.list.drop_nulls().alias("categories"),
    )


def read(raw: Path, meta: dict) -> RawData:
    path = raw / "u.data"
    df, report = read_interaction_lines(path, "\t", ["user", "item", "rating", "timestamp"], ["user", "item"],
                                        meta.get("encoding", "latin-1"))
    df = parse_time_column(df, "timestamp", path, report, "inter_bad_timestamp")
    df = parse_rating(df, "rating", path, report, "inter")
    inter = df.select(
        source_id(df, "user"),
        source_id(df, "item"),
        pl.col("rating"),
        pl.col("timestamp"),
        (pl.col("line") - 1).cast(pl.Int64).alias("row"),
    )
    items = with_overviews_and_posters(read_items(raw, report, meta.get("encoding", "latin-1")), raw, report)
    return RawData(inter, items.drop("year"), report)


# ---------------------------------------------------------------- MovieLens-1M
URL_1M = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
MD5_1M = "c4d9eecfca2ab87c1945afe126590906"  # GroupLens publishes it beside the zip (ml-1m.zip.md5)
FILES_1M = ["ratings.dat", "movies.dat", "users.dat", "README"]


@dataclass
class MovieLens1MConfig(Checked):
    source: str | None = None  # unpacked ml-1m folder; null downloads the official zip
    url: str = URL_1M
    md5: str = MD5_1M
    posters: str | None = None  # optional folder with posters/<movie_id>.jpg (+ tmdb_overviews.csv)
    encoding: str = "latin-1"  # the official files' (movies.dat); a re-saved UTF-8 copy: utf-8


def fetch_1m(cfg: MovieLens1MConfig, out: Path) -> dict:
    fix = ("Point `datasets.<name>.source` at the unpacked ml-1m folder (ratings.dat, movies.dat, ...), "
           "or set it to null to download the official archive.")
    files, origin = local_or_download(cfg.source, cfg.url, cfg.md5, out, FILES_1M, ["ratings.dat", "movies.dat"], fix)
    meta = {"format": "ml-1m", "origin": origin, "files": files, "posters": None, "encoding": cfg.encoding}
    if cfg.posters:
        src = Path(cfg.posters)
        copy_files(src, out, ["tmdb_overviews.csv"], [], "")
        if (src / "posters").is_dir():
            copy_tree(src / "posters", out / "posters", src, meta.setdefault("skipped", {}))
        meta["posters"] = str(src)
    return meta


def read_1m(raw: Path, meta: dict) -> RawData:
    """`ratings.dat` UserID::MovieID::Rating::Timestamp and `movies.dat` MovieID::Title (Year)::A|B, in the
    data set's `encoding` (latin-1, the official files'; a UTF-8 copy read as latin-1 is refused)."""
    path = raw / "ratings.dat"
    df, rep = split_lines(path, "::", ["user", "item", "rating", "timestamp"], meta.get("encoding", "latin-1"))
    report = {f"inter_{k}": v for k, v in rep.items()}
    df = parse_time_column(df, "timestamp", path, report, "inter_bad_timestamp")
    df = parse_rating(df, "rating", path, report, "inter")
    inter = df.select(pl.col("user").str.strip_chars(), pl.col("item").str.strip_chars(), pl.col("rating"),
                      pl.col("timestamp"),
                      (pl.col("line") - 1).cast(pl.Int64).alias("row"))
    mpath = raw / "movies.dat"
    movies, rep = split_lines(mpath, "::", ["item", "title_year", "genres"], meta.get("encoding", "latin-1"))
    report.update({f"item_{k}": v for k, v in rep.items()})
    items = movies.select(
        pl.col("item").str.strip_chars(),
        pl.col("title_year").str.replace(r"\s*\(\d{4}\)\s*$", "").str.strip_chars().alias("title"),
        pl.col("genres").fill_null("").str.split("|").list.eval(pl.element().filter(pl.element() != ""))
        .alias("categories"))
    return RawData(inter, with_overviews_and_posters(items, raw, report), report)
