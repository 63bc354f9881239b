"""Records are checked per field at the reader boundary (pipeline.sources.common.RawData and the
readers): a list field given a string, an index map that is not one-to-one, look-alike ids, and
text read with the wrong encoding each end in a count or a clear error, never in silently wrong tables."""

from __future__ import annotations

import json

import polars as pl
import pytest

from pipeline.sources import SourceError
from pipeline.sources.common import RawData
from tests.test_sources_amazon import amazon_2018, gz
from tests.test_sources_sequences import fetch_read, write_unisrec


def test_a_list_field_given_one_string_is_a_one_element_list_and_counted(tmp_path):
    amazon_2018(tmp_path / "src")
    meta = tmp_path / "src" / "meta_Cat.json.gz"
    gz(meta, [json.dumps({"asin": "A1", "title": "Scope", "category": "Tools", "imageURLHighRes": "https://img/a.jpg"}),
              json.dumps({"asin": "A2", "title": "Pipette"})] +
       [json.dumps({"asin": f"Z{i}", "title": f"filler {i}"}) for i in range(17)])
    raw = fetch_read(tmp_path, "amazon", {"source": str(tmp_path / "src"), "category": "Cat"})
    a1 = raw.items.filter(pl.col("item") == "A1").row(0, named=True)
    assert a1["categories"] == ["Tools"]  # not ['T', 'o', 'o', 'l', 's']
    assert raw.report["meta_string_as_list"] == {"category": 1, "image_urls": 1}


def test_an_index_map_that_is_not_one_to_one_is_refused(tmp_path):
    write_unisrec(tmp_path / "src")
    path = tmp_path / "src" / "S.item2index"
    lines = path.read_text().splitlines()
    orig, index = lines[0].split("\t")
    path.write_text("\n".join(lines + [f"{orig}\t{int(lines[-1].split(chr(9))[1]) + 1}"]) + "\n")  # one id, two indices
    with pytest.raises(SourceError, match=rf"S.item2index:{len(lines) + 1}: orig '{orig}' again .* one-to-one"):
        fetch_read(tmp_path, "unisrec", {"source": str(tmp_path / "src"), "name": "S"})


def test_look_alike_ids_are_one_entity_and_counted():
    inter = pl.DataFrame({"user": ["Ame\u0301lie", "Amélie", "bo\u200bb", "bob", "007", "7"],
                          "item": ["i1", "i2", "i1", "i2", "i1", "i2"], "rating": [None] * 6,
                          "timestamp": list(range(6)), "row": list(range(6))})
    items = pl.DataFrame({"item": ["i1", "i2"], "title": ["a", "b"], "categories": [[], []],
                          "description": ["", ""], "image_paths": [[], []]})
    raw = RawData(inter, items)
    users = raw.interactions["user"].cast(pl.String).to_list()
    assert users[:4] == ["Amélie", "Amélie", "bob", "bob"] and users[4:] == ["007", "7"]
    assert raw.report["ids_normalised"] == 2 and raw.report["ids_differing_only_in_leading_zeros"] == 1


def test_text_read_with_the_wrong_encoding_is_refused(tmp_path):
    src = tmp_path / "ml-1m"
    src.mkdir()
    (src / "ratings.dat").write_text("".join(f"{u}::{i}::5::97830{u}{i:03d}\n" for u in range(1, 4) for i in (10, 20, 30)))
    movies = "10::Amélie (2001)::Comedy\n20::Café Society (2016)::Drama\n30::Señor (1990)::Drama\n"
    (src / "movies.dat").write_bytes(movies.encode("utf-8"))  # a UTF-8 copy of a latin-1 file
    with pytest.raises(SourceError, match=r"look like UTF-8 read with a one-byte encoding .* set the data set's "
                                          r"`encoding: utf-8`"):
        fetch_read(tmp_path / "a", "ml-1m", {"source": str(src)})
    raw = fetch_read(tmp_path / "b", "ml-1m", {"source": str(src), "encoding": "utf-8"})
    assert raw.items.filter(pl.col("item") == "10")["title"][0] == "Amélie"


def test_images_are_bounded_on_both_sides_and_turned_upright(tmp_path):
    from collections import Counter

    from PIL import Image

    from pipeline.features.images import load_image

    counts = Counter()
    Image.new("RGB", (20000, 1)).save(tmp_path / "strip.png")  # 20,000 pixels: under the pixel limit
    assert load_image(tmp_path / "strip.png", counts) is None and counts["extreme_aspect"] == 1
    img = Image.new("RGB", (40, 20), "white")
    img.putpixel((0, 0), (255, 0, 0))
    exif = img.getexif()
    exif[0x0112] = 6  # stored turned: display rotated 90° clockwise
    img.save(tmp_path / "phone.jpg", exif=exif, quality=100)
    got = load_image(tmp_path / "phone.jpg", counts)
    assert got.size == (20, 40) and counts["exif_rotated"] == 1
