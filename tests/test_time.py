"""Exact time (pipeline.sources.common.parse_time_column): integers never pass through a float,
fractions keep every digit in the sort key, ISO-8601 dates with zones are instants, and a file that
is mostly not times, mixes numbers and dates, or was cut mid-line says so."""

from __future__ import annotations

import polars as pl
import pytest

from pipeline.download import download
from pipeline.sources import SOURCES
from pipeline.sources.common import SourceError, parse_time_column

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"


def read_recbole(tmp_path, stamps: list[str], end: str = "\n") -> tuple[pl.DataFrame, dict]:
    """A RecBole log with one event per stamp (user u, item i<k>), read through the real source."""
    src = tmp_path / "src"
    src.mkdir(parents=True, exist_ok=True)
    lines = [HEADER] + [f"u\ti{k}\t5\t{t}" for k, t in enumerate(stamps)]
    (src / "x.inter").write_text("\n".join(lines) + end)
    download({"dataset": "x", "datasets": {"x": {"format": "recbole", "source": str(src), "name": "x"}}},
             tmp_path / "raw")
    raw = SOURCES["recbole"].read(tmp_path / "raw", {"name": "x"})
    return raw.interactions, raw.report


def order(inter: pl.DataFrame) -> list[str]:
    return inter.sort("timestamp", "row")["item"].cast(pl.String).to_list()


def test_fractional_seconds_keep_their_order_and_every_digit(tmp_path):
    inter, report = read_recbole(tmp_path, ["1600000000.5", "1600000000.25", "1600000000.125", "1600000000"])
    assert order(inter) == ["i3", "i2", "i1", "i0"]  # floored to whole seconds these would all tie
    assert inter["timestamp"].to_list() == [1600000000500, 1600000000250, 1600000000125, 1600000000000]
    assert report["timestamp_decimals"] == 3


def test_nanosecond_integers_are_exact(tmp_path):
    base = 1_600_000_000_000_000_000
    inter, _ = read_recbole(tmp_path, [str(base + 100), str(base), str(base + 1)])  # 100 ns apart: distinct
    assert inter["timestamp"].to_list() == [base + 100, base, base + 1] and order(inter) == ["i1", "i2", "i0"]


def test_iso_8601_dates_with_zones_are_instants(tmp_path):
    inter, report = read_recbole(tmp_path, ["2020-06-01T12:00:00+02:00", "2020-06-01T11:00:00Z", "2020-06-01",
                                            "2020-06-01 10:30:00.25"])
    assert order(inter) == ["i2", "i0", "i3", "i1"]  # 00:00, 10:00 UTC, 10:30:00.25, 11:00
    assert "ISO-8601" in report["timestamp_unit"]


@pytest.mark.parametrize("stamps, says", [
    (["1,600,000,000"] * 12, r"'1,600,000,000' is neither an integer, a decimal nor an ISO-8601 date \(12 of 12 values\)"),
    (["1600000000"] * 6 + ["2020-06-01"] * 6, "the file mixes 6 numbers and 6 dates"),
    (["1600000000", "1600000000000"] * 6, "timestamps in mixed units"),
])
def test_a_file_that_is_not_one_kind_of_time_is_refused_with_counts(tmp_path, stamps, says):
    with pytest.raises(SourceError, match=says):
        read_recbole(tmp_path, stamps)


def test_a_few_bad_stamps_are_skipped_and_counted(tmp_path):
    inter, report = read_recbole(tmp_path, ["1600000000"] * 19 + ["yesterday"])
    assert inter.height == 19 and report["inter_bad_timestamp"] == 1


def test_a_last_line_cut_mid_number_is_dropped_and_counted(tmp_path):
    """`1600000000` cut to `16000` without its line end would become the user's first event."""
    inter, report = read_recbole(tmp_path, [str(1600000000 + k) for k in range(10)] + ["16000"], end="")
    assert inter.height == 10 and report["truncated_last_line"] == 1 and "i10" not in order(inter)
    inter, report = read_recbole(tmp_path / "b", [str(1600000000 + k) for k in range(10)], end="")
    assert inter.height == 10 and "line 11 has no line end" in report["note_last_line_without_newline"]


def test_a_value_far_outside_the_range_is_kept_and_counted(tmp_path, caplog):
    inter, report = read_recbole(tmp_path, [str(1600000000 + k) for k in range(10)] + ["5"])
    assert inter.height == 11 and report["timestamp_far_outside_range"] == 1
    assert "far outside the file's range" in caplog.text


def test_the_parser_on_a_frame(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("x\n")
    df = pl.DataFrame({"line": [1, 2, 3], "t": ["-0.5", ".25", "3"]})
    out = parse_time_column(df, "t", path, report := {}, "bad")
    assert out["t"].to_list() == [-50, 25, 300] and report["timestamp_decimals"] == 2 and report["bad"] == 0
