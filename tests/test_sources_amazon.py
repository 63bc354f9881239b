"""Amazon 2018 / 2014 review + metadata files, and the image downloader."""

import gzip
import io
import json
import urllib.error

import polars as pl
import pytest
from PIL import Image

from pipeline.sources import SourceError
from pipeline.sources.images import download_images
from tests.test_sources_sequences import fetch_read


def gz(path, lines):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))


def review(user, asin, t, rating=5.0):
    return json.dumps({"reviewerID": user, "asin": asin, "overall": rating, "unixReviewTime": t, "reviewText": "ok"})


def amazon_2018(folder, extra_reviews=()):
    folder.mkdir(parents=True, exist_ok=True)
    filler = [review(f"F{i}", f"Z{i}", 5) for i in range(17)]  # enough good lines that one bad line is a skip
    gz(folder / "Cat_5.json.gz", [review("U1", "A1", 10), review("U1", "A2", 20), review("U2", "A1", 15),
                                  *filler, *extra_reviews])
    gz(folder / "meta_Cat.json.gz", [
        json.dumps({"asin": "A1", "title": "Microscope", "description": ["A lab ", "microscope."], "brand": "Zeiss",
                    "category": ["Industrial & Scientific", "Lab"], "imageURLHighRes": ["https://img/a1.jpg"]}),
        json.dumps({"asin": "A2", "title": "Pipette", "category": [], "description": []}),
        json.dumps({"asin": "A2", "title": "Pipette (again)"}),
        "{not json",
        *(json.dumps({"asin": f"Z{i}", "title": f"filler {i}"}) for i in range(17)),
    ])


def test_amazon_2018_reviews_and_metadata(tmp_path):
    amazon_2018(tmp_path / "src", extra_reviews=["{broken"])
    raw = fetch_read(tmp_path, "amazon", {"source": str(tmp_path / "src"), "category": "Cat"})
    assert raw.interactions.height == 20 and raw.report["reviews_malformed_lines"] == 1
    a1 = raw.items.filter(pl.col("item") == "A1").row(0, named=True)
    assert a1["title"] == "Microscope" and a1["categories"] == ["Industrial & Scientific", "Lab"]
    assert a1["description"] == "A lab  microscope. Brand: Zeiss."
    assert raw.report["meta_malformed_lines"] == 1 and raw.report["meta_duplicate_asins"] == 1
    assert raw.items.filter(pl.col("item") == "A2")["title"][0] == "Pipette"  # the first record wins


def test_amazon_2014_python_literal_metadata(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    gz(src / "reviews_Beauty_5.json.gz", [review("U1", "B1", 1), review("U1", "B2", 2)])
    gz(src / "meta_Beauty.json.gz", [
        str({"asin": "B1", "title": "Soap", "categories": [["Beauty", "Bath"]], "imUrl": "https://img/b1.jpg"}),
        *(str({"asin": f"Z{i}", "title": "x"}) for i in range(12)),
        "__import__('os').system('echo pwned')",  # never evaluated: literal_eval refuses it
    ])
    raw = fetch_read(tmp_path, "amazon", {"source": str(src), "category": "Beauty", "version": 2014})
    b1 = raw.items.filter(pl.col("item") == "B1").row(0, named=True)
    assert b1["categories"] == ["Beauty", "Bath"] and raw.report["meta_malformed_lines"] == 1


def test_truncated_gzip_is_an_error_naming_the_file(tmp_path):
    amazon_2018(tmp_path / "src")
    data = (tmp_path / "src" / "Cat_5.json.gz").read_bytes()
    (tmp_path / "src" / "Cat_5.json.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match=r"Cat_5.json.gz: not a complete gzip file"):
        fetch_read(tmp_path, "amazon", {"source": str(tmp_path / "src"), "category": "Cat"})


def test_mostly_malformed_reviews_are_an_error(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    gz(src / "Cat_5.json.gz", [review("U1", "A1", 1)] + ["{bad"] * 5)
    with pytest.raises(SourceError, match=r"Cat_5.json.gz:2: not a JSON review.*5 of 6 lines are bad"):
        fetch_read(tmp_path, "amazon", {"source": str(src), "category": "Cat"})


def png_bytes():
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


class FakeResponse:
    def __init__(self, body, ctype):
        self.body, self.headers = body, {"Content-Type": ctype, "Content-Length": str(len(body))}

    def read(self, n=-1):
        return self.body if n < 0 else self.body[:n]

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_image_download_checks_retries_resumes_and_records_failures(tmp_path):
    calls = []
    flaky = {"n": 0}

    def opener(req, timeout):
        url = req.full_url
        calls.append(url)
        if url.endswith("ok.png"):
            return FakeResponse(png_bytes(), "image/png")
        if url.endswith("flaky.png"):
            flaky["n"] += 1
            if flaky["n"] < 2:
                raise urllib.error.URLError("connection reset")
            return FakeResponse(png_bytes(), "image/png")
        if url.endswith("html"):
            return FakeResponse(b"<html>", "text/html")
        if url.endswith("big.png"):
            return FakeResponse(png_bytes() + b"\0" * 5000, "image/png")
        if url.endswith("corrupt.jpg"):
            return FakeResponse(b"\xff\xd8 not a jpeg", "image/jpeg")
        raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)

    urls = {"ok": ["https://x/ok.png"], "flaky": ["https://x/flaky.png"], "html": ["https://x/page.html"],
            "big": ["https://x/big.png"], "corrupt": ["https://x/corrupt.jpg"], "gone": ["https://x/gone.png"],
            "http": ["http://x/ok.png"], "none": [], "fallback": ["https://x/gone.png", "https://x/ok.png"]}
    out = tmp_path / "images"
    res = download_images(urls, out, workers=3, max_bytes=2000, opener=opener, sleep=lambda s: None)
    manifest = json.loads((out / "manifest.json").read_text())
    assert res == {"ok": 3, "kept": 0, "failed": 6}
    assert set(manifest["failed"]) == {"html", "big", "corrupt", "gone", "http", "none"}
    assert "not an image" in manifest["failed"]["html"] and "404" in manifest["failed"]["gone"]
    assert "not https" in manifest["failed"]["http"] and "2000" in manifest["failed"]["big"]
    assert "do not decode" in manifest["failed"]["corrupt"]
    assert sorted(p.name for p in out.iterdir()) == ["fallback.png", "flaky.png", "manifest.json", "ok.png"]
    # a rerun keeps verified files and re-fetches a half-written one
    (out / "flaky.png").write_bytes(png_bytes()[:20])
    calls.clear()
    res = download_images({k: urls[k] for k in ("ok", "flaky")}, out, opener=opener, sleep=lambda s: None)
    assert res == {"ok": 1, "kept": 1, "failed": 0} and calls == ["https://x/flaky.png"]
