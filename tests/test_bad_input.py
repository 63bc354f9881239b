"""The bad-input corpus: every case is built here, in its source's exact layout, run through the
real download + preprocess stages, and must end in its documented behaviour — a clear error that
names the file (and line) and what to fix, or a counted skip visible in stats.json. docs/reliability.md
lists the same cases (by id) with what happens; image cases live in test_features.py."""

from __future__ import annotations

import gzip
import io
import json
import urllib.request
import zipfile

import polars as pl
import pytest

from pipeline.config import PreprocessConfig
from pipeline.download import download
from pipeline.params import ConfigError
from pipeline.preprocess import run
from pipeline.sources import SourceError
from pipeline.sources import fetch as net
from pipeline.tables import read_table

INTER_HEADER = "user_id:token\titem_id:token\ttimestamp:float\n"


def inter(rows, header=INTER_HEADER):
    return header + "".join("\t".join(map(str, r)) + "\n" for r in rows)


def grid(users=6, items=6, t0=0):
    """Every user rates every item: survives a 3-core."""
    return [(f"u{u}", f"i{i}", t0 + u * 100 + i) for u in range(users) for i in range(items)]


def item_file(rows):
    return "item_id:token\ttitle:token_seq\n" + "".join(f"{i}\t{t}\n" for i, t in rows)


def gz(lines):
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as f:
        f.write("".join(line + "\n" for line in lines).encode())
    return buf.getvalue()


def review(u, a, t):
    return json.dumps({"reviewerID": u, "asin": a, "overall": 5.0, "unixReviewTime": t})


AMAZON_REVIEWS = [review(f"U{u}", f"A{i}", u * 10 + i) for u in range(6) for i in range(6)]
AMAZON_META = [json.dumps({"asin": f"A{i}", "title": f"thing {i}"}) for i in range(6)]
HM_ART = ("article_id,prod_name,product_type_name,product_group_name,graphical_appearance_name,colour_group_name,"
          "detail_desc\n" + "".join(f"{100 + i},Top {i},Vest top,Upper,Solid,Black,Soft.\n" for i in range(6)))
HM_TX = "t_dat,customer_id,article_id,price,sales_channel_id\n" + "".join(
    f"2020-01-{1 + i:02d},c{u},{100 + i},0.1,1\n" for u in range(6) for i in range(6))


def unisrec_files(seqs, cap=50):
    rows = {"train": [], "valid": [], "test": []}
    for u, s in seqs.items():
        for t in range(len(s) - 3, 0, -1):
            rows["train"].append((u, s[max(0, t - cap):t], s[t]))
        rows["valid"].append((u, s[:-2][-cap:], s[-2]))
        rows["test"].append((u, s[:-1][-cap:], s[-1]))
    head = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    files = {f"S.{k}.inter": head + "".join(f"{u}\t{' '.join(lst)}\t{t}\n" for u, lst, t in v) for k, v in rows.items()}
    items = sorted({i for s in seqs.values() for i in s})
    files["S.text"] = "item_id:token\ttext:token_seq\n" + "".join(f"{i}\tthing {i}\n" for i in items)
    files["S.item2index"] = "".join(f"orig{i}\t{i}\n" for i in items)
    return files


UNI = {str(u): [str((u + k) % 8) for k in range(7)] for u in range(6)}


def swapped_unisrec():
    files = unisrec_files(UNI)
    lines = files["S.train.inter"].splitlines()
    lines[1], lines[2] = lines[2], lines[1]
    files["S.train.inter"] = "\n".join(lines) + "\n"
    return files


def missing_index_unisrec():
    files = unisrec_files(UNI)
    files["S.item2index"] = "".join(line + "\n" for line in files["S.item2index"].splitlines()[:-1])
    return files


RB = {"format": "recbole", "name": "d"}
CORE3 = {"user_core": 3, "item_core": 3}
RATED = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def rated(rows):
    return inter([(u, i, r, t) for (u, i, t), r in zip(grid(), rows)], RATED)


def mixed_units():
    """Users 0-4 in seconds, user 5 in milliseconds: sorted as numbers, user 5 would be fine, but a
    user with both would have every ms event after every s event."""
    return [(u, i, 1_600_000_000 + t if u != "u5" else (1_600_000_000 + t) * 1000) for u, i, t in grid()]


def hm_two_customers_one_bad_byte():
    tx = HM_TX.encode()
    return tx + "".join(f"2020-02-{1 + i:02d},c\xffN,{100 + i},0.1,1\n" for i in range(6)).encode("latin-1") + \
        "".join(f"2020-02-{1 + i:02d},c\xfeN,{100 + i},0.1,1\n" for i in range(6)).encode("latin-1")

# id, format section, files, preprocess overrides, expectation:
#   ("error", regex)  or  ("stat", dotted path in stats.json, expected value)
CASES = [
    ("recbole-untyped-header", RB, {"d.inter": inter(grid(), "user_id\titem_id\ttimestamp\n")}, {},
     ("error", r"d\.inter:1: header field 'user_id' is not `name:type`")),
    ("recbole-no-item-column", RB, {"d.inter": "user_id:token\ttimestamp:float\nu\t1\n"}, {},
     ("error", r"d\.inter:1: no `item_id` field")),
    ("recbole-few-malformed-lines", RB, {"d.inter": inter(grid(6, 6) + [("u1", "i1")])}, CORE3,
     ("stat", "parse.inter_malformed_lines", 1)),
    ("recbole-mostly-malformed", RB, {"d.inter": inter([("u", "i")] * 10 + grid(1, 2))}, {},
     ("error", r"d\.inter:2: expected 3 fields.*10 of 12 lines are malformed")),
    ("recbole-not-utf8", RB, {"d.inter": INTER_HEADER.encode() + b"u1\tcaf\xe9\t1\n"}, {},
     ("error", r"d\.inter:2: not valid utf-8")),
    ("recbole-latin1-declared", RB | {"encoding": "latin-1"},
     {"d.inter": inter(grid()).encode("latin-1"), "d.item": item_file([("i0", "Café crème")]).encode("latin-1")},
     CORE3, ("title", "i0", "Café crème")),
    ("recbole-empty-titles", RB, {"d.inter": inter(grid()), "d.item": item_file([(f"i{i}", "") for i in range(6)])},
     CORE3, ("stat", "metadata.items_with_empty_title", 6)),
    ("recbole-duplicate-events", RB, {"d.inter": inter(grid() + grid()[:5])}, CORE3, ("stat", "dropped.duplicate", 5)),
    ("recbole-equal-timestamps", RB, {"d.inter": inter([(u, i, 7) for u, i, _ in grid()])}, CORE3,
     ("stat", "ties.equal_timestamp_groups", 6)),
    ("recbole-unicode-and-space-ids", RB, {"d.inter": inter([(f" ü{u} ", f"ítem {i}\u00a0", t) for u, i, t in grid()])},
     CORE3, ("stat", "users", 6)),
    ("recbole-users-vanish-under-kcore", RB, {"d.inter": inter(grid() + [("lonely", "i0", 9999)])}, CORE3,
     ("stat", "dropped.kcore", 1)),
    ("recbole-items-without-metadata", RB, {"d.inter": inter(grid()), "d.item": item_file([("i0", "only one")])},
     CORE3, ("stat", "metadata.items_without_metadata", 5)),
    ("recbole-metadata-without-interactions", RB,
     {"d.inter": inter(grid()), "d.item": item_file([(f"i{i}", "x") for i in range(9)])}, CORE3,
     ("stat", "metadata.metadata_rows_without_interactions", 3)),
    ("recbole-bad-timestamp", RB, {"d.inter": inter(grid() + [("u1", "i1", "yesterday")])}, CORE3,
     ("stat", "parse.inter_bad_timestamp", 1)),
    ("recbole-blank-lines", RB, {"d.inter": inter(grid()) + "\n\n"}, CORE3, ("stat", "parse.inter_blank_lines", 2)),
    ("recbole-missing-inter", RB, {"other.txt": "x"}, {}, ("error", r"d\.inter: missing \(required file")),
    ("recbole-everything-filtered", RB, {"d.inter": inter(grid(2, 2))}, {"user_core": 5, "item_core": 5},
     ("error", r"no interactions left after filtering")),
    ("ml100k-wrong-separator", {"format": "ml-100k"},
     {"u.data": "1,2,3,4\n" * 10, "u.item": "1|Toy Story (1995)|||" + "|0" * 19 + "\n"}, {},
     ("error", r"u\.data:1: expected 4 fields separated by '\\t'")),
    ("ml1m-tab-separated", {"format": "ml-1m"},
     {"ratings.dat": "1\t2\t3\t4\n" * 5, "movies.dat": "2::Heat (1995)::Action\n"}, {},
     ("error", r"ratings\.dat:1: expected 4 fields separated by '::'")),
    ("amazon-truncated-gzip", {"format": "amazon", "category": "C"},
     {"C_5.json.gz": gz(AMAZON_REVIEWS)[:60], "meta_C.json.gz": gz(AMAZON_META)}, CORE3,
     ("error", r"C_5\.json\.gz: not a complete gzip file")),
    ("amazon-malformed-json-line", {"format": "amazon", "category": "C"},
     {"C_5.json.gz": gz(AMAZON_REVIEWS + ['{"reviewerID": "U1", "asin": ']), "meta_C.json.gz": gz(AMAZON_META)}, CORE3,
     ("stat", "parse.reviews_malformed_lines", 1)),
    ("amazon-2014-code-in-metadata", {"format": "amazon", "category": "C", "version": 2014},
     {"reviews_C_5.json.gz": gz(AMAZON_REVIEWS),
      "meta_C.json.gz": gz([str({"asin": f"A{i}", "title": "t"}) for i in range(12)] + ["__import__('os').getcwd()"])},
     CORE3, ("stat", "parse.meta_malformed_lines", 1)),
    ("amazon-duplicate-metadata", {"format": "amazon", "category": "C"},
     {"C_5.json.gz": gz(AMAZON_REVIEWS), "meta_C.json.gz": gz(AMAZON_META + [AMAZON_META[0]])},
     CORE3, ("stat", "parse.meta_duplicate_asins", 1)),
    ("amazon-no-metadata-file", {"format": "amazon", "category": "C"}, {"C_5.json.gz": gz(AMAZON_REVIEWS)}, CORE3,
     ("stat", "metadata.items_without_metadata", 6)),
    ("hm-missing-column", {"format": "hm"},
     {"transactions_train.csv": HM_TX, "articles.csv": "article_id,name\n100,x\n"}, CORE3,
     ("error", r"articles\.csv: missing column\(s\)")),
    ("hm-bad-date", {"format": "hm"}, {"transactions_train.csv": HM_TX + "someday,c1,101,0.1,1\n", "articles.csv": HM_ART},
     CORE3, ("stat", "parse.transactions_bad_rows", 1)),
    ("hm-unpadded-article-ids", {"format": "hm"}, {"transactions_train.csv": HM_TX, "articles.csv": HM_ART}, CORE3,
     ("title", "0000000100", "Top 0")),
    ("unisrec-lines-out-of-order", {"format": "unisrec", "name": "S"}, swapped_unisrec(), CORE3,
     ("error", r"S\.train\.inter:\d+: user '0'.*not in UniSRec's layout")),
    ("unisrec-index-not-listed", {"format": "unisrec", "name": "S"}, missing_index_unisrec(), CORE3,
     ("error", r"S\.item2index: \d+ interaction\(s\) use item indices not listed")),
    ("unisrec-no-timestamps-noted", {"format": "unisrec", "name": "S"}, unisrec_files(UNI), CORE3,
     ("stat", "parse.note_no_timestamps", "no timestamps in this format: each user's order in the file is the "
      "chronological order")),
    ("sasrec-user-without-items", {"format": "sasrec", "file": "s.txt"},
     {"s.txt": "".join(f"u{u} " + " ".join(f"i{i}" for i in range(6)) + "\n" for u in range(6)) + "lonely\n"}, CORE3,
     ("stat", "parse.lines_without_items", 1)),
    ("sasrec-not-this-format", {"format": "sasrec", "file": "s.txt"}, {"s.txt": "onlyone\n" * 4}, CORE3,
     ("error", r"s\.txt: no line of the form `user item")),
    # ---- the cases the first corpus missed (Reliability II)
    ("recbole-mixed-timestamp-units", RB, {"d.inter": inter(mixed_units())}, CORE3,
     ("error", r"d\.inter: timestamps in mixed units — 30 look like seconds \(e\.g\. line 2: .*6 look like milliseconds")),
    ("amazon-mixed-timestamp-units", {"format": "amazon", "category": "C"},
     {"C_5.json.gz": gz([review(f"U{u}", f"A{i}", 1_600_000_000 + u * 10 + i if u else (1_600_000_000 + i) * 1000)
                         for u in range(6) for i in range(6)]), "meta_C.json.gz": gz(AMAZON_META)}, CORE3,
     ("error", r"C_5\.json\.gz: timestamps in mixed units")),
    ("recbole-nan-empty-text-ratings", RB, {"d.inter": rated(["nan", "", "five"] + ["4"] * 33)},
     CORE3 | {"min_rating": 1}, ("stat", "dropped.unrated", 3)),
    ("recbole-rating-parse-counts", RB, {"d.inter": rated(["nan", "", "five"] + ["4"] * 33)}, CORE3,
     ("stat", "parse", {"inter_rating_missing": 1, "inter_rating_unparseable": 2})),
    ("amazon-text-rating", {"format": "amazon", "category": "C"},
     {"C_5.json.gz": gz(AMAZON_REVIEWS[:-1] + [json.dumps({"reviewerID": "U5", "asin": "A5", "overall": "five",
                                                           "unixReviewTime": 55})]),
      "meta_C.json.gz": gz(AMAZON_META)}, CORE3, ("stat", "parse.reviews_rating_unparseable", 1)),
    ("hm-non-utf8-customer-ids", {"format": "hm"},
     {"transactions_train.csv": hm_two_customers_one_bad_byte(), "articles.csv": HM_ART}, CORE3,
     ("error", r"transactions_train\.csv:38: not valid utf-8")),
    ("hm-latin1-declared", {"format": "hm", "encoding": "latin-1"},
     {"transactions_train.csv": hm_two_customers_one_bad_byte(), "articles.csv": HM_ART}, CORE3,
     ("stat", "users", 8)),  # c\xffN and c\xfeN stay two customers
    ("hm-since-not-a-date", {"format": "hm", "since": "June 2020"},
     {"transactions_train.csv": HM_TX, "articles.csv": HM_ART}, CORE3,
     ("error", r"since='June 2020': not a date; use the ISO form YYYY-MM-DD")),
    ("sasrec-tab-after-user", {"format": "sasrec", "file": "s.txt"},
     {"s.txt": "".join(f"u{u}\t" + " ".join(f"i{i}" for i in range(6)) + "\n" for u in range(6))}, CORE3,
     ("stat", "interactions", 36)),  # the tab separates: user u0 and item i0, not one id 'u0\ti0'
    ("recbole-one-item-catalogue", RB, {"d.inter": inter([(f"u{u}", "i0", u * 10 + k) for u in range(60) for k in range(3)])},
     {"user_core": 0, "item_core": 0, "allow_degenerate": False}, ("error", r"1 items \(fewer than 50")),
    ("sasrec-handful-of-items", {"format": "sasrec", "file": "s.txt"},
     {"s.txt": "".join(f"u{u} i1 i2 i3 i1 i2\n" for u in range(60))}, {"user_core": 0, "item_core": 0,
                                                                       "allow_degenerate": False},
     ("error", r"3 items \(fewer than 50")),
    ("recbole-item-id-twice-in-header", RB, {"d.inter": inter(grid(), "user_id:token\titem_id:token\titem_id:token\n")},
     {}, ("error", r"d\.inter:1: the header names \['item_id'\] more than once")),
    ("recbole-0x1f-inside-a-field", RB, {"d.inter": inter(grid()), "d.item": item_file([("i0", "Caf\x1fé")])}, CORE3,
     ("title", "i0", "Caf\x1fé")),
    ("recbole-timestamp-1e30", RB, {"d.inter": inter(grid() + [("u1", "i1", "1e30")])}, CORE3,
     ("stat", "parse.inter_bad_timestamp", 1)),
    ("recbole-zero-byte-file", RB, {"d.inter": ""}, {}, ("error", r"d\.inter: the file is empty \(no header line\)")),
    ("recbole-header-only", RB, {"d.inter": INTER_HEADER}, {}, ("error", r"d\.inter: a header but no interaction lines")),
    ("recbole-byte-order-mark", RB, {"d.inter": "\ufeff" + inter(grid())}, CORE3, ("stat", "users", 6)),
    ("recbole-crlf-line-ends", RB, {"d.inter": inter(grid()).replace("\n", "\r\n")}, CORE3,
     ("stat", "parse.inter_bad_timestamp", 0)),
    ("amazon-trailing-garbage-after-gzip", {"format": "amazon", "category": "C"},
     {"C_5.json.gz": gz(AMAZON_REVIEWS) + b"<html>oops</html>", "meta_C.json.gz": gz(AMAZON_META)}, CORE3,
     ("error", r"C_5\.json\.gz: has 17 bytes of trailing data after its gzip stream")),
    ("amazon-two-gzip-members", {"format": "amazon", "category": "C"},
     {"C_5.json.gz": gz(AMAZON_REVIEWS[:18]) + gz(AMAZON_REVIEWS[18:]), "meta_C.json.gz": gz(AMAZON_META)}, CORE3,
     ("stat", "interactions", 36)),  # concatenated members are valid gzip: all read
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_case(case, tmp_path):
    _, section, files, pre, (kind, *expect) = case
    src = tmp_path / "src"
    src.mkdir()
    for name, body in files.items():
        (src / name).write_bytes(body if isinstance(body, bytes) else body.encode())
    params = {"dataset": "x", "datasets": {"x": section | {"source": str(src)}}}
    cfg = PreprocessConfig(**({"user_core": 5, "item_core": 5, "allow_degenerate": True} | pre))

    def go():
        download(params, tmp_path / "raw")
        return run(tmp_path / "raw", tmp_path / "prepared", cfg)

    if kind == "error":
        with pytest.raises((SourceError, ConfigError), match=expect[0]):
            go()
        return
    stats = go()
    if kind == "title":
        items = read_table(tmp_path / "prepared" / "items.parquet", "items")
        assert items.filter(pl.col("orig_id") == expect[0])["title"][0] == expect[1]
        return
    node = stats
    for part in expect[0].split("."):
        node = node[part]
    if isinstance(expect[1], dict):  # a subset of keys
        node = {k: node.get(k) for k in expect[1]}
    assert node == expect[1], stats


def test_archive_member_climbing_out_is_refused(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t1\t5\t1\n")
        zf.writestr("../../evil.sh", "rm -rf /")
    with pytest.raises(SourceError, match=r"member '\.\./\.\./evil\.sh' would extract outside"):
        net.safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "evil.sh").exists()


class Resp(io.BytesIO):
    status = 200
    headers = {"Content-Length": "5"}

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_checksum_mismatch_and_plain_http_are_refused(tmp_path):
    def opener(req, timeout):
        assert isinstance(req, urllib.request.Request)
        return Resp(b"wrong")

    with pytest.raises(SourceError, match="checksum mismatch"):
        net.download("https://example.org/x.zip", tmp_path / "x.zip", md5="0" * 32, opener=opener)
    assert not (tmp_path / "x.zip").exists() and not (tmp_path / "x.zip.part").exists()
    with pytest.raises(SourceError, match="only https downloads are allowed"):
        net.download("http://example.org/x.zip", tmp_path / "y.zip", opener=opener)


def recbole_with_images(tmp_path):
    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "d.inter").write_text(inter(grid()))
    (src / "d.item").write_text(item_file([(f"i{i}", f"thing {i}") for i in range(6)]))
    (src / "images" / "i0.png").write_bytes(b"\x89PNG fake")
    return src


def fetch_recbole(tmp_path, src):
    params = {"dataset": "x", "datasets": {"x": RB | {"source": str(src), "images": "images"}}}
    download(params, tmp_path / "raw")
    return run(tmp_path / "raw", tmp_path / "prepared", PreprocessConfig(**CORE3, allow_degenerate=True))


@pytest.mark.parametrize("case", ["file-link-outside", "folder-link-outside", "dangling", "loop", "inside"])
def test_symlinks_never_read_outside_the_source_folder(tmp_path, case):
    src = recbole_with_images(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.txt").write_text("password")
    (outside / "i1.png").write_bytes(b"\x89PNG outside")
    images = src / "images"
    if case == "file-link-outside":
        (images / "i1.png").symlink_to(outside / "secret.txt")
    elif case == "folder-link-outside":
        (images / "more").symlink_to(outside, target_is_directory=True)
    elif case == "dangling":
        (images / "i2.png").symlink_to(tmp_path / "nothing-here.png")
    elif case == "loop":
        (images / "a").symlink_to(images / "b")
        (images / "b").symlink_to(images / "a")
    else:  # a link to a file inside the source is a file of the source
        (images / "i3.png").symlink_to(images / "i0.png")
    stats = fetch_recbole(tmp_path, src)
    copied = {p.name for p in (tmp_path / "raw" / "images").rglob("*")}
    assert "secret.txt" not in copied and not any("outside" in p.read_bytes().decode("latin-1")
                                                  for p in (tmp_path / "raw").rglob("*.png"))
    expected = {"file-link-outside": "links_outside_source", "folder-link-outside": "links_outside_source",
                "dangling": "dangling_links", "loop": "link_loops", "inside": None}[case]
    skipped = stats["download"]["skipped"]
    if expected:
        assert skipped[expected] >= 1, skipped
    else:
        assert skipped == {} and (tmp_path / "raw" / "images" / "i3.png").read_bytes() == b"\x89PNG fake"


def test_an_images_folder_linked_outside_is_refused_whole(tmp_path):
    src = recbole_with_images(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "i0.png").write_bytes(b"\x89PNG outside")
    import shutil

    shutil.rmtree(src / "images")
    (src / "images").symlink_to(outside, target_is_directory=True)
    stats = fetch_recbole(tmp_path, src)
    assert stats["download"]["skipped"] == {"links_outside_source": 1}
    assert not list((tmp_path / "raw").rglob("*.png"))


def test_a_data_file_linked_outside_is_an_error(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "real.inter").write_text(inter(grid()))
    (src / "d.inter").symlink_to(tmp_path / "real.inter")
    with pytest.raises(SourceError, match=r"d\.inter: a symlink to .*outside the source folder"):
        download({"dataset": "x", "datasets": {"x": RB | {"source": str(src)}}}, tmp_path / "raw")


def zip_with(tmp_path, members: dict[str, bytes]):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, body in members.items():
            zf.writestr(name, body)
    return archive


def test_zip_bombs_and_clashing_member_names_are_refused(tmp_path):
    bomb = zip_with(tmp_path, {"ml-100k/u.data": b"0" * 5_000_000})  # 5 MB of zeros packs into ~5 kB
    with pytest.raises(SourceError, match=r"expands to 5,000,000 bytes or more from [\d,]+ compressed.*zip bomb"):
        net.safe_extract(bomb, tmp_path / "out")
    with pytest.raises(SourceError, match=r"limits: 1,000 bytes"):
        net.safe_extract(bomb, tmp_path / "out", max_bytes=1000, max_ratio=1e9)
    assert not (tmp_path / "out" / "u.data").exists()
    assert net.safe_extract(bomb, tmp_path / "ok", max_ratio=1e6) == ["u.data"]  # a genuine archive: raise the limit
    clash = zip_with(tmp_path, {"a/u.data": b"1\t1\t5\t1\n", "b/u.data": b"2\t2\t5\t2\n"})
    with pytest.raises(SourceError, match=r"share a file name and would overwrite each other"):
        net.safe_extract(clash, tmp_path / "out2")


def test_a_huge_bad_value_is_clipped_in_the_log(tmp_path, caplog):
    src = tmp_path / "src"
    src.mkdir()
    (src / "d.inter").write_text(inter(grid() + [("u1", "i1", "x" * 5_000_000)]))
    download({"dataset": "x", "datasets": {"x": RB | {"source": str(src)}}}, tmp_path / "raw")
    stats = run(tmp_path / "raw", tmp_path / "prepared", PreprocessConfig(**CORE3, allow_degenerate=True))
    assert stats["parse"]["inter_bad_timestamp"] == 1
    assert "5,000,002 characters" in caplog.text and max(len(r.getMessage()) for r in caplog.records) < 1000
