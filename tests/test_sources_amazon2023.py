"""Amazon Reviews 2023 (`format: amazon2023`): the category JSON lines, the metadata and the
official benchmark split CSVs, read from a local `source` folder; small files built here with the
release's real field layout (parent_asin items, millisecond times, features/description/details)."""

from __future__ import annotations

import gzip
import json

import polars as pl
import pytest

from pipeline.config import PreprocessConfig
from pipeline.download import download
from pipeline.preprocess import run
from pipeline.sources import SOURCES, SourceError
from pipeline.tables import read_table

T0 = 1588687728923  # a real-looking unix time in milliseconds


def review(user, parent, t, rating=5.0, asin=None):
    return json.dumps({"rating": rating, "title": "Great", "text": "Works well.", "images": [],
                       "asin": asin or parent + "-v", "parent_asin": parent, "user_id": user, "timestamp": t,
                       "helpful_vote": 0, "verified_purchase": True})


def meta(parent, title, **extra):
    return json.dumps({"main_category": "All Beauty", "title": title, "average_rating": 4.1, "rating_number": 9,
                       "features": extra.get("features", []), "description": extra.get("description", []),
                       "price": None, "images": extra.get("images", []), "videos": [], "store": "Acme",
                       "categories": extra.get("categories", []), "details": extra.get("details", {}),
                       "parent_asin": parent, "bought_together": None})


def folder_full(tmp_path, gzipped=True, extra=()):
    src = tmp_path / "src"
    src.mkdir(parents=True)
    lines = [review("U1", "P1", T0), review("U1", "P2", T0 + 1000, 4.0), review("U2", "P1", T0 + 500),
             review("U2", "P2", T0 + 2000, asin="P2-red"), *extra]
    body = "".join(x + "\n" for x in lines).encode()
    (src / ("All_Beauty.jsonl.gz" if gzipped else "All_Beauty.jsonl")).write_bytes(gzip.compress(body) if gzipped
                                                                                    else body)
    metas = [meta("P1", "Rose serum", features=["30 ml", "vegan"], description=["A light serum."],
                  details={"Brand": "Acme", "Item Weight": "2 ounces"}, categories=["Beauty", "Skin"],
                  images=[{"thumb": "t1", "large": "https://img/p1-large.jpg", "variant": "MAIN",
                           "hi_res": "https://img/p1.jpg"}]),
             meta("P2", "Clay mask"), "{broken"] + [meta(f"Z{i}", f"filler {i}") for i in range(30)]
    (src / "meta_All_Beauty.jsonl").write_text("".join(x + "\n" for x in metas))
    return src


def read(tmp_path, section):
    params = {"dataset": "x", "datasets": {"x": {"format": "amazon2023", **section}}}
    m = download(params, tmp_path / "raw")
    return SOURCES["amazon2023"].read(tmp_path / "raw", m), m


def test_reviews_and_metadata_in_the_2023_layout(tmp_path):
    raw, m = read(tmp_path, {"source": str(folder_full(tmp_path)), "category": "All_Beauty"})
    inter = raw.interactions.sort("row")
    assert inter["item"].cast(pl.String).to_list() == ["P1", "P2", "P1", "P2"]  # parent_asin: variants share it
    assert inter["timestamp"].to_list() == [T0, T0 + 1000, T0 + 500, T0 + 2000]  # milliseconds kept as given
    assert inter["rating"].to_list() == [5.0, 4.0, 5.0, 5.0]
    items = {r["item"]: r for r in raw.items.to_dicts()}
    p1 = items["P1"]
    assert p1["title"] == "Rose serum" and p1["categories"] == ["Beauty", "Skin"]
    assert p1["description"] == "30 ml vegan A light serum. Brand: Acme Item Weight: 2 ounces"
    assert raw.report["meta_malformed_lines"] == 1 and m["prefiltered"] is False


def test_seconds_are_refused_naming_the_line(tmp_path):
    with pytest.raises(SourceError, match=r"All_Beauty.jsonl:5: timestamp 1588687728 is not in milliseconds"):
        read(tmp_path, {"source": str(folder_full(tmp_path, gzipped=False, extra=[review("U3", "P1", 1588687728)])),
                        "category": "All_Beauty"})


def benchmark(tmp_path, split="last_out", kcore="5core"):
    src = folder_full(tmp_path)
    d = src / kcore / split
    d.mkdir(parents=True)
    header = "user_id,parent_asin,rating,timestamp,history\n"
    rows = {"train": [("U1", "P1", T0), ("U1", "P2", T0 + 10), ("U2", "P2", T0 + 20), ("U2", "P1", T0 + 30)],
            "valid": [("U1", "P3", T0 + 40), ("U2", "P3", T0 + 50)],
            "test": [("U1", "P4", T0 + 60), ("U2", "P1", T0 + 70)]}
    for part, rs in rows.items():
        (d / f"All_Beauty.{part}.csv").write_text(header + "".join(f"{u},{i},5.0,{t},P1 P2\n" for u, i, t in rs))
    return src


def test_the_official_benchmark_split_files(tmp_path):
    raw, m = read(tmp_path, {"source": str(benchmark(tmp_path)), "category": "All_Beauty", "reviews": "benchmark"})
    assert raw.interactions.height == 8 and m["prefiltered"] is True  # the publisher's 5-core: used as published
    off = raw.report["official_split"]
    assert off["kind"] == "last_out" and off["events"] == {"train": 4, "valid": 2, "test": 2}
    assert off["users_whose_last_two_are_valid_test"] == 2  # leave-one-out reproduces it
    raw, _ = read(tmp_path / "t", {"source": str(benchmark(tmp_path / "t", "timestamp")), "category": "All_Beauty",
                                   "reviews": "benchmark", "split": "timestamp"})
    assert raw.report["official_split"]["cuts"] == [T0 + 40, T0 + 60]


def test_a_missing_benchmark_file_says_which_settings_to_check(tmp_path):
    src = folder_full(tmp_path)
    with pytest.raises(SourceError, match="5core/last_out/All_Beauty.train.csv: missing .* check `category`"):
        read(tmp_path, {"source": str(src), "category": "All_Beauty", "reviews": "benchmark"})


def test_through_preprocessing_with_the_official_time_cuts(tmp_path):
    """A benchmark `timestamp` split followed with the cuts the report gives: the pipeline's time
    split puts exactly the official valid and test rows in validation and test."""
    raw, m = read(tmp_path, {"source": str(benchmark(tmp_path, "timestamp")), "category": "All_Beauty",
                             "reviews": "benchmark", "split": "timestamp"})
    cuts = raw.report["official_split"]["cuts"]
    stats = run(tmp_path / "raw", tmp_path / "prepared",
                PreprocessConfig(user_core=0, item_core=0, split="time", split_cuts=[float(c) for c in cuts],
                                 allow_degenerate=True))
    assert stats["split"]["events"] == {"train": 4, "valid": 2, "test": 2}
    inter = read_table(tmp_path / "prepared" / "interactions.parquet", "interactions")
    assert inter.filter(pl.col("split") == "test").height == 2
