"""Source readers on fixtures in their real layouts, the demo generator, downloads and bad input."""

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.config import PreprocessConfig
from pipeline.download import download
from pipeline.params import ConfigError
from pipeline.preprocess import run
from pipeline.sources import SOURCES, SourceError
from pipeline.sources import fetch as net
from pipeline.sources.demo import DemoConfig, make_items, make_sequences
from pipeline.tables import read_json, read_table
from tests.conftest import tiny_params


def write_ml100k(folder: Path, data_lines: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text("\n".join(data_lines) + "\n")
    flags = "|".join(["0"] * 19)
    (folder / "u.item").write_bytes(
        ("1|Toy Story (1995)|01-Jan-1995||http://x|" + flags.replace("0", "1", 1) + "\n"
         "2|Caf\xe9 au Lait (1994)|01-Jan-1994||http://x|" + flags + "\n").encode("latin-1"))
    return folder


def params_for(source: Path, fmt="ml-100k", **extra):
    return {"dataset": "x", "datasets": {"x": {"format": fmt, "source": str(source), **extra}}}


def test_ml100k_fixture_reads_latin1_titles_and_genres(tmp_path):
    src = write_ml100k(tmp_path / "src", [f"{u}\t{i}\t4\t{100 + u * 10 + i}" for u in (1, 2) for i in (1, 2)])
    meta = download(params_for(src), tmp_path / "raw")
    data = SOURCES[meta["format"]].read(tmp_path / "raw", meta)
    assert data.interactions.height == 4
    titles = dict(zip(data.items["item"], data.items["title"]))
    assert titles == {"1": "Toy Story", "2": "Café au Lait"}
    assert data.items["categories"][0].to_list() == ["unknown"]


def test_missing_and_malformed_source_files_are_clear_errors(tmp_path):
    with pytest.raises(SourceError, match="source folder does not exist"):
        download(params_for(tmp_path / "nowhere"), tmp_path / "raw")
    src = tmp_path / "src"
    src.mkdir()
    (src / "u.data").write_text("1\t2\t3\t4\n")
    with pytest.raises(SourceError, match=r"u.item: missing"):
        download(params_for(src), tmp_path / "raw")
    bad = write_ml100k(tmp_path / "bad", ["1,1,4,100", "1,2,4,101", "2,1,5,102"])  # commas, not tabs
    meta = download(params_for(bad), tmp_path / "raw2")
    with pytest.raises(SourceError, match=r"u.data:1: expected 4 fields.*right file"):
        SOURCES[meta["format"]].read(tmp_path / "raw2", meta)
    assert not (tmp_path / "raw").exists()  # a failed download leaves nothing that looks whole


def test_a_few_malformed_lines_are_skipped_and_counted(tmp_path, caplog):
    lines = [f"{u}\t{i}\t4\t{u * 100 + i}" for u in range(1, 6) for i in range(1, 5)]
    lines.insert(3, "1\t2\tthree")  # short line
    lines.insert(7, "2\t1\t4\tnot-a-time")
    src = write_ml100k(tmp_path / "src", lines)
    download(params_for(src), tmp_path / "raw")
    stats = run(tmp_path / "raw", tmp_path / "prep", PreprocessConfig(user_core=0, item_core=0, allow_degenerate=True))
    assert stats["parse"]["inter_malformed_lines"] == 1
    assert stats["parse"]["inter_bad_timestamp"] == 1
    assert stats["interactions"] == 20
    assert "skipping 1 malformed" in caplog.text


def test_unknown_dataset_and_format_are_clear(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset='nope' is not one of"):
        download({"dataset": "nope", "datasets": {"demo": {"format": "demo"}}}, tmp_path / "raw")
    with pytest.raises(ConfigError, match=r"format`: 'csv\?\?' is not allowed: one of"):
        download({"dataset": "d", "datasets": {"d": {"format": "csv??"}}}, tmp_path / "raw")
    with pytest.raises(ConfigError, match="unknown key"):
        download({"dataset": "d", "datasets": {"d": {"format": "demo", "n_itemz": 3}}}, tmp_path / "raw")


def test_recbole_atomic_files_and_bad_header(tmp_path):
    src = tmp_path / "rb"
    src.mkdir()
    (src / "toy.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n"
                                   + "".join(f"u{u}\ti{i}\t{u + i}.0\n" for u in range(3) for i in range(4)))
    (src / "toy.item").write_text("item_id:token\tmovie_title:token_seq\tclass:token_seq\n"
                                  "i0\tFirst One\tA B\ni1\tSecond\tB\n")
    meta = download(params_for(src, "recbole", name="toy"), tmp_path / "raw")
    data = SOURCES["recbole"].read(tmp_path / "raw", meta)
    assert data.interactions.height == 12
    assert data.items.filter(pl.col("item") == "i0")["categories"][0].to_list() == ["A", "B"]
    (src / "toy.inter").write_text("user_id\titem_id\n1\t2\n")
    meta = download(params_for(src, "recbole", name="toy"), tmp_path / "raw")
    with pytest.raises(SourceError, match="typed header"):
        SOURCES["recbole"].read(tmp_path / "raw", meta)


def test_recbole_ml100k_matches_grouplens_ml100k(shared_datasets, tmp_path):
    p = {"dataset": "a", "datasets": {
        "a": {"format": "ml-100k", "source": str(shared_datasets / "ml-100k")},
        "b": {"format": "recbole", "source": str(shared_datasets / "ml-100k-recbole"), "name": "ml-100k"}}}
    download(p, tmp_path / "ra")
    download(p | {"dataset": "b"}, tmp_path / "rb")
    sa = run(tmp_path / "ra", tmp_path / "pa", PreprocessConfig())
    sb = run(tmp_path / "rb", tmp_path / "pb", PreprocessConfig())
    assert (sa["users"], sa["items"], sa["interactions"]) == (sb["users"], sb["items"], sb["interactions"])
    qa = read_table(tmp_path / "pa" / "sequences.parquet", "sequences")
    qb = read_table(tmp_path / "pb" / "sequences.parquet", "sequences")
    assert qa["item_ids"].to_list() == qb["item_ids"].to_list()


def test_demo_is_deterministic_and_structured(tmp_path):
    p = tiny_params()
    download(p, tmp_path / "a")
    download(p, tmp_path / "b")
    for name in ("demo.inter", "demo.item", "images/P00007.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert read_json(tmp_path / "a" / "source.json")["format"] == "recbole"  # read like any RecBole source
    # content structure: consecutive items share a category far more often than chance
    cfg = DemoConfig(n_items=400, n_users=200, seed=1)
    rng = np.random.default_rng(cfg.seed)
    a = make_items(cfg, rng)
    seqs = make_sequences(cfg, a, rng)
    cat = a["category"]
    same = np.mean([np.mean(cat[s[1:]] == cat[s[:-1]]) for s in seqs])
    assert same > 0.5 > 1 / 8 * 2
    assert a["cold"].mean() > 0.05  # a rare tail exists


def test_safe_extract_refuses_path_traversal(tmp_path):
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t1\t1\t1\n")
        zf.writestr("../../etc/evil", "x")
    with pytest.raises(SourceError, match="outside"):
        net.safe_extract(z, tmp_path / "out")


class FakeResponse(io.BytesIO):
    status = 200
    headers = {}

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_download_verifies_checksum(tmp_path):
    payload = b"zip bytes"
    opener = lambda req, timeout: FakeResponse(payload)  # noqa: E731
    good = hashlib.md5(payload).hexdigest()
    path = net.download("https://example.invalid/f.zip", tmp_path / "f.zip", good, opener=opener)
    assert path.read_bytes() == payload
    with pytest.raises(SourceError, match="checksum mismatch"):
        net.download("https://example.invalid/g.zip", tmp_path / "g.zip", "0" * 32, opener=opener)
    assert not (tmp_path / "g.zip").exists() and not (tmp_path / "g.zip.part").exists()
    with pytest.raises(SourceError, match="only https"):
        net.download("http://example.invalid/h.zip", tmp_path / "h.zip", good, opener=opener)


def test_non_utf8_bytes_are_an_error_naming_the_line(tmp_path):
    src = tmp_path / "rb"
    src.mkdir()
    (src / "t.inter").write_bytes(b"user_id:token\titem_id:token\n1\t2\n1\t\xff\xfe\n")
    meta = download(params_for(src, "recbole", name="t"), tmp_path / "raw")
    with pytest.raises(SourceError, match=r"t.inter:3: not valid utf-8"):
        SOURCES["recbole"].read(tmp_path / "raw", meta)


def test_tmdb_fetch_writes_overviews_and_posters(tmp_path):
    from pipeline.sources.movielens import fetch_tmdb

    raw = write_ml100k(tmp_path / "raw", ["1\t1\t4\t100"])
    seen = []

    def opener(url, timeout):
        seen.append(url)
        if "search/movie" in url:
            found = "Toy" in url
            body = {"results": [{"overview": "Toys come alive.", "poster_path": "/toy.jpg"}] if found else []}
            return FakeResponse(json.dumps(body).encode())
        return FakeResponse(b"\xff\xd8jpeg")

    report = fetch_tmdb(raw, "KEY", opener=opener)
    assert report == {"tmdb_not_found": 1}
    assert (raw / "posters" / "1.jpg").read_bytes() == b"\xff\xd8jpeg"
    assert any("year=1995" in u and "api_key=KEY" in u for u in seen)
    data = SOURCES["ml-100k"].read(raw, {})
    desc = dict(zip(data.items["item"], data.items["description"]))
    assert desc == {"1": "Toys come alive.", "2": ""}
    assert data.items.filter(pl.col("item") == "1")["image_paths"][0].to_list() == ["posters/1.jpg"]


def write_recbole(folder: Path, lines: list[str], header="user_id:token\titem_id:token\trating:float\ttimestamp:float",
                  prefix: bytes = b"") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "x.inter").write_bytes(prefix + ("\n".join([header, *lines]) + "\n").encode())
    return folder


CLEAN = ["u1\ti1\t5\t100", "u1\ti2\t3.5\t100", "u2\ti1\t1\t90", " u2 \ti3\t2\t95.7", "u1\ti1\t5\t100"]


@pytest.mark.parametrize("case,lines,prefix", [
    ("blank line", CLEAN[:2] + [""] + CLEAN[2:], b""),
    ("short line", CLEAN + ["u3\ti1\t4"], b""),
    ("long line", CLEAN + ["u3\ti1\t4\t5\t6"], b""),
    ("empty field", CLEAN + ["u3\t\t4\t5"], b""),
    ("not a number", CLEAN + ["u3\ti1\tgood\t5"], b""),
    ("padded number", CLEAN + ["u3\ti1\t4 \t5"], b""),  # the typed reader refuses a trailing blank
    ("byte-order mark", CLEAN, b"\xef\xbb\xbf"),
])
def test_the_typed_reader_leaves_every_unclean_file_to_the_checked_parser(tmp_path, case, lines, prefix):
    """`scan_clean` takes a file only when both parsers would agree line by line; anything the checked
    parser counts or converts differently makes it step aside (None)."""
    from pipeline.sources.common import scan_clean

    names = ["user_id", "item_id", "rating", "timestamp"]
    path = write_recbole(tmp_path, lines, prefix=prefix) / "x.inter"
    assert scan_clean(path, "\t", names, names[:2], header=True) is None, case
    clean = write_recbole(tmp_path / "ok", CLEAN) / "x.inter"
    df = scan_clean(clean, "\t", names, names[:2], header=True)
    assert df["line"].to_list() == [2, 3, 4, 5, 6] and df["user_id"].dtype == pl.Categorical
    assert df["user_id"].cast(pl.String).to_list() == ["u1", "u1", "u2", "u2", "u1"]  # stripped, as the checked parser
    assert df["timestamp"].to_list() == ["100", "100", "90", "95.7", "100"]  # text: parse_time_column reads it exactly
    assert scan_clean(clean, "\t", names, names[:2], encoding="latin-1", header=True) is None  # decoded first
    assert scan_clean(clean, "::", names, names[:2], header=True) is None  # polars reads one-byte separators


@pytest.mark.parametrize("policy", ["exact", "first", "none"])
def test_typed_and_checked_reads_write_the_same_tables(tmp_path, monkeypatch, policy):
    """A clean log read by the typed streaming reader and by the line-by-line checked parser gives
    byte-identical prepared tables and the same stats (ties, repeats and duplicates included)."""
    from pipeline.sources import common

    rng = np.random.default_rng(0)
    draws = zip(rng.integers(0, 60, 3000), rng.integers(0, 40, 3000), rng.integers(1, 6, 3000), rng.integers(0, 30, 3000))
    lines = [f"u{u}\ti{i}\t{r}\t {t}" for u, i, r, t in draws]  # a leading blank: both parsers read the number
    write_recbole(tmp_path / "src", lines)
    download({"dataset": "x", "datasets": {"x": {"format": "recbole", "source": str(tmp_path / "src"), "name": "x"}}},
             tmp_path / "raw")
    config = PreprocessConfig(duplicates=policy, min_rating=2 if policy == "none" else None, user_fraction=0.8,
                              allow_degenerate=True)
    fast = run(tmp_path / "raw", tmp_path / "fast", config)
    taken = []
    monkeypatch.setattr(common, "scan_clean", lambda *a, **k: taken.append(1))  # always the checked parser
    checked = run(tmp_path / "raw", tmp_path / "checked", config)
    assert taken and fast == checked and fast["ties"]["equal_timestamp_groups"] > 100
    assert fast["dropped"]["duplicate"] > 0 or policy == "none"
    for table in ("items", "interactions", "sequences"):
        assert (tmp_path / "fast" / f"{table}.parquet").read_bytes() == (tmp_path / "checked" / f"{table}.parquet").read_bytes()


def test_the_typed_reader_reads_the_named_file_even_with_glob_characters(tmp_path):
    """polars treats a scan path as a glob by default: `x[1].inter` would read `x1.inter`."""
    from pipeline.sources.common import scan_clean

    names = ["user_id", "item_id", "rating", "timestamp"]
    for name, user in (("x1.inter", "decoy"), ("x[1].inter", "real"), ("y2.inter", "other")):
        (tmp_path / name).write_text(f"{chr(9).join(names)}\n{user}\ti1\t5\t100\n")
    for name, user in (("x[1].inter", "real"), ("y2.inter", "other")):
        df = scan_clean(tmp_path / name, "\t", names, names[:2], header=True)
        assert df["user_id"].cast(pl.String).to_list() == [user]
    (tmp_path / "y*.inter").write_text(f"{chr(9).join(names)}\nstar\ti1\t5\t100\n")
    assert scan_clean(tmp_path / "y*.inter", "\t", names, names[:2], header=True)["user_id"].cast(pl.String).to_list() == ["star"]
