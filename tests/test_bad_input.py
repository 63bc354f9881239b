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

from pipeline.download import download
from pipeline.params import ConfigError
from pipeline.preprocess import PreprocessConfig, run
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
