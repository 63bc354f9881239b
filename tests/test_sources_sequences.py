"""UniSRec / RecBole processed sequences and the SASRec text format (issue 7 sources)."""

import polars as pl
import pytest

from pipeline.config import PreprocessConfig
from pipeline.download import download
from pipeline.preprocess import run
from pipeline.sources import SOURCES, SourceError
from pipeline.tables import read_json, read_table

SEQS = {"u1": ["i1", "i2", "i3", "i4", "i5", "i6"], "u2": ["i3", "i1", "i7", "i2"], "u3": ["i5", "i6", "i7"]}


def write_unisrec(folder, seqs=SEQS, cap=3, swap_train=False):
    """UniSRec's layout: one line per prefix (lists capped at `cap`), a user's prefixes longest first."""
    folder.mkdir(parents=True, exist_ok=True)
    items = sorted({i for s in seqs.values() for i in s})
    index = {it: str(k) for k, it in enumerate(items)}
    users = {u: str(k) for k, u in enumerate(seqs)}
    rows = {"train": [], "valid": [], "test": []}
    for u, s in seqs.items():
        ids = [index[i] for i in s]
        for t in range(len(ids) - 3, 0, -1):
            rows["train"].append((users[u], ids[max(0, t - cap):t], ids[t]))
        rows["valid"].append((users[u], ids[max(0, len(ids) - 2 - cap):len(ids) - 2], ids[-2]))
        rows["test"].append((users[u], ids[max(0, len(ids) - 1 - cap):len(ids) - 1], ids[-1]))
    if swap_train:
        rows["train"][0], rows["train"][1] = rows["train"][1], rows["train"][0]
    for split, lines in rows.items():
        body = "".join(f"{u}\t{' '.join(lst)}\t{t}\n" for u, lst, t in lines)
        (folder / f"S.{split}.inter").write_text("user_id:token\titem_id_list:token_seq\titem_id:token\n" + body)
    (folder / "S.text").write_text("item_id:token\ttext:token_seq\n" + "".join(f"{i}\tthe item {i}\n" for i in items))
    (folder / "S.item2index").write_text("".join(f"{i}\t{k}\n" for i, k in index.items()))
    (folder / "S.user2index").write_text("".join(f"{u}\t{k}\n" for u, k in users.items()))


def fetch_read(tmp_path, fmt, section):
    params = {"dataset": "x", "datasets": {"x": {"format": fmt, **section}}}
    meta = download(params, tmp_path / "raw")
    return SOURCES[meta["format"]].read(tmp_path / "raw", meta)


def test_unisrec_sequences_are_rebuilt_exactly_even_past_the_list_cap(tmp_path):
    write_unisrec(tmp_path / "src")
    raw = fetch_read(tmp_path, "unisrec", {"source": str(tmp_path / "src"), "name": "S"})
    got = raw.interactions.sort("row").group_by("user", maintain_order=True).agg("item")
    assert dict(zip(got["user"], got["item"].to_list())) == SEQS  # u1 has 6 items, lists hold 3
    # u1 (6 items) is longer than its test line's 3-item list + target: 2 earlier events
    assert raw.report["users_longer_than_test_list"] == 1 and raw.report["events_before_test_list"] == 2
    assert raw.interactions["rating"].is_null().all()
    assert "no timestamps" in raw.report["note_no_timestamps"]
    assert raw.items.filter(pl.col("item") == "i7")["title"][0] == "the item i7"


def test_unisrec_lines_out_of_order_are_an_error_naming_the_line(tmp_path):
    write_unisrec(tmp_path / "src", swap_train=True)
    with pytest.raises(SourceError, match=r"S\.train\.inter:\d+: user '0'.*not in UniSRec's layout"):
        fetch_read(tmp_path, "unisrec", {"source": str(tmp_path / "src"), "name": "S"})


def test_unisrec_user_without_test_line_is_clear(tmp_path):
    write_unisrec(tmp_path / "src")
    lines = (tmp_path / "src" / "S.test.inter").read_text().splitlines()
    (tmp_path / "src" / "S.test.inter").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(SourceError, match="has no test line"):
        fetch_read(tmp_path, "unisrec", {"source": str(tmp_path / "src"), "name": "S"})


def test_sasrec_text_format_per_user_lines_and_pair_lines(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "seq.txt").write_text("1 10 11 12\n2 11 13\n\n3\n")
    raw = fetch_read(tmp_path, "sasrec", {"source": str(tmp_path / "src"), "file": "seq.txt"})
    got = raw.interactions.group_by("user", maintain_order=True).agg("item")
    assert dict(zip(got["user"], got["item"].to_list())) == {"1": ["10", "11", "12"], "2": ["11", "13"]}
    assert raw.report["lines_without_items"] == 1 and raw.report["blank_lines"] == 1
    (tmp_path / "src" / "pairs.txt").write_text("1 10\n1 11\n2 11\n1 12\n2 13\n")  # SASRec's own data files
    raw = fetch_read(tmp_path / "p", "sasrec", {"source": str(tmp_path / "src"), "file": "pairs.txt"})
    got = raw.interactions.group_by("user", maintain_order=True).agg("item")
    assert dict(zip(got["user"], got["item"].to_list())) == {"1": ["10", "11", "12"], "2": ["11", "13"]}
    (tmp_path / "src" / "bad.txt").write_text("just-one-token-per-line\n" * 3)
    with pytest.raises(SourceError, match="bad.txt: no line of the form"):
        fetch_read(tmp_path / "b", "sasrec", {"source": str(tmp_path / "src"), "file": "bad.txt"})


def test_real_amazon_scientific_unisrec_files(shared_datasets, tmp_path):
    src = shared_datasets / "amazon-scientific-unisrec"
    params = {"dataset": "sci", "datasets": {"sci": {"format": "unisrec", "source": str(src), "name": "Scientific"}},
              "preprocess": {"user_core": 5, "item_core": 5}}
    download(params, tmp_path / "raw")
    stats = run(tmp_path / "raw", tmp_path / "prepared", PreprocessConfig(user_core=5, item_core=5, max_len=50))
    assert stats["users"] == 8442 and stats["items"] == 4385
    # the README's 59,384 sums the test lines, whose lists UniSRec caps at 50 items: 3 users are longer
    assert stats["interactions"] == 59427
    assert stats["parse"]["users_longer_than_test_list"] == 3 and stats["parse"]["events_before_test_list"] == 43
    items = read_table(tmp_path / "prepared" / "items.parquet", "items")
    assert (items["title"].str.len_chars() > 0).mean() > 0.99
    assert "no timestamps" in json_dumps(read_json(tmp_path / "prepared" / "stats.json"))


def json_dumps(obj) -> str:
    import json

    return json.dumps(obj)


def test_movielens_1m_layout(tmp_path):
    src = tmp_path / "ml-1m"
    src.mkdir()
    more = b"".join(b"3::%d::4::9783%05d\n" % (10 + 10 * (k % 3), k) for k in range(8))  # one bad timestamp in 12: skipped
    (src / "ratings.dat").write_bytes(b"1::10::5::978300760\n1::20::3::978302109\n2::10::4::978301968\n" + more +
                                      b"2::30::4::not-a-time\n")
    (src / "movies.dat").write_bytes("10::Amélie (2001)::Comedy|Romance\n20::Heat (1995)::Action\n"
                                     "30::Se7en (1995)::Thriller\n".encode("latin-1"))
    raw = fetch_read(tmp_path / "out", "ml-1m", {"source": str(src)})
    assert raw.interactions.height == 11 and raw.report["inter_bad_timestamp"] == 1
    amelie = raw.items.filter(pl.col("item") == "10").row(0, named=True)
    assert amelie["title"] == "Amélie" and amelie["categories"] == ["Comedy", "Romance"]
    (src / "ratings.dat").write_text("1\t10\t5\t978300760\n" * 5)  # the 100K layout given as 1M
    with pytest.raises(SourceError, match=r"ratings.dat:1: expected 4 fields separated by '::'"):
        fetch_read(tmp_path / "out2", "ml-1m", {"source": str(src)})


@pytest.mark.parametrize("prefiltered", [True, False])
def test_a_published_set_is_used_as_published_and_a_large_filter_is_said(tmp_path, caplog, prefiltered):
    """SASRec files are the paper's filtered set (`prefiltered: true` by default): the k-core is
    skipped. Filtered again, the 5-core removes most of this file, and the log and stats say so."""
    src = tmp_path / "src"
    src.mkdir()
    lines = [f"u{u} " + " ".join(f"i{(u + k) % 20}" for k in range(6 if u < 40 else 3)) for u in range(60)]
    (src / "seq.txt").write_text("\n".join(lines) + "\n")
    params = {"dataset": "x", "datasets": {"x": {"format": "sasrec", "source": str(src), "file": "seq.txt",
                                                 "prefiltered": prefiltered}}}
    download(params, tmp_path / "raw")
    stats = run(tmp_path / "raw", tmp_path / "prepared", PreprocessConfig(allow_degenerate=True))
    assert stats["prefiltered"] is prefiltered
    if prefiltered:
        assert stats["dropped"]["kcore"] == 0 and stats["large_filter"] is None and stats["users"] == 60
    else:
        assert stats["large_filter"]["events_share"] > 0.05 and "declare it `prefiltered: true`" in caplog.text


def test_a_time_split_on_a_source_without_times_is_refused(tmp_path):
    """UniSRec / SASRec files carry order, not time: quantiles of positions would cut every user at
    the same rank, not at a moment, so `split: time` is one clear error."""
    from pipeline.params import ConfigError

    write_unisrec(tmp_path / "src")
    params = {"dataset": "x", "datasets": {"x": {"format": "unisrec", "source": str(tmp_path / "src"), "name": "S"}}}
    download(params, tmp_path / "raw")
    with pytest.raises(ConfigError, match="needs event times, and this source has none"):
        run(tmp_path / "raw", tmp_path / "prepared", PreprocessConfig(user_core=0, item_core=0, split="time",
                                                                      allow_degenerate=True))
