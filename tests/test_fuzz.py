"""A fuzzing harness over the source readers (Hypothesis): small valid files of each format are
mutated — truncated, re-encoded, a field swapped for another type, look-alike ids inserted,
timestamps rewritten in other forms and units, lines duplicated, reordered or blanked — and read
through the real download + reader. Every outcome must be one of:

- a clear error: a project error (SourceError / ConfigError / TableError) in one line;
- tables whose counts reconcile with an independent count of the mutated file: every data line is
  either an interaction or counted under a skip key, and every interaction's (user, item) is one the
  file holds (ids compared in their canonical spelling).

Anything else (a raw exception, a lost or invented line) fails. CI runs MMREC_FUZZ_EXAMPLES (default
25) examples per reader; a longer run (docs/reliability.md) sets it higher:

    MMREC_FUZZ_EXAMPLES=5000 MMREC_FUZZ_RANDOM=1 python -m pytest -s tests/test_fuzz.py
"""

from __future__ import annotations

import gzip
import json
import os
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.download import download
from pipeline.params import ConfigError
from pipeline.sources import SOURCES, SourceError
from pipeline.tables import TableError

EXAMPLES = int(os.environ.get("MMREC_FUZZ_EXAMPLES", "25"))
RANDOM = bool(os.environ.get("MMREC_FUZZ_RANDOM"))  # fresh random draws (a long run); CI: the same draws every time
SKIP_KEYS = ("inter_malformed_lines", "inter_bad_timestamp", "truncated_last_line", "reviews_malformed_lines")
ODD_VALUES = ["", "x", "1e30", "NaN", "-1", "1,600,000,000", "2020-06-01", "2020-06-01T10:00:00+02:00", "\u200b",
              "🙂", "16000", "1600000000.25", "0x1F", " 7 ", "None"]
USERS = ["u1", "u2", "André", "007", "7", "bob"]
ITEMS = ["i1", "i2", "i3", "Café", "i5"]


def canonical(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFC", s) if unicodedata.category(c) != "Cf").strip()


class Format:
    """One reader's valid fixture and how to count its data lines independently."""

    def __init__(self, fmt, file, sep, header, section, write_extra=None, json_lines=False, encoding="utf-8"):
        self.fmt, self.file, self.sep, self.header, self.section = fmt, file, sep, header, section
        self.write_extra, self.json_lines, self.encoding = write_extra, json_lines, encoding

    def lines(self, events) -> list[str]:
        if self.json_lines:
            return [json.dumps({"reviewerID": u, "asin": i, "overall": r, "unixReviewTime": t}) for u, i, r, t in events]
        return [self.sep.join(str(x) for x in e) for e in events]

    def write(self, folder, body: bytes):
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / self.file
        path.write_bytes(gzip.compress(body) if self.file.endswith(".gz") else body)
        if self.write_extra:
            self.write_extra(folder)

    def data_lines(self, body: bytes) -> list[str] | None:
        """The independent count: the non-blank lines after the header. UTF-8 is the truth where the
        bytes decode as UTF-8 (a one-byte encoding decodes any bytes, so it comes second), else the
        format's declared encoding (None: neither decodes, or NUL bytes: not text)."""
        for enc in dict.fromkeys(("utf-8", self.encoding)):
            try:
                text = body.decode(enc)
                break
            except UnicodeDecodeError:
                continue
        else:
            return None
        if "\x00" in text:
            return None
        lines = text.replace("\r\n", "\n").split("\n")
        if text.startswith("\ufeff"):
            lines[0] = lines[0][1:]
        lines = lines[1:] if self.header else lines
        return [line for line in lines if line.strip()]

    def pairs(self, lines: list[str]) -> set[tuple[str, str]]:
        out = set()
        for line in lines:
            if self.json_lines:
                try:
                    d = json.loads(line)
                    out.add((canonical(str(d.get("reviewerID"))), canonical(str(d.get("asin")))))
                except (ValueError, AttributeError):
                    pass
            else:
                f = line.split(self.sep)
                if len(f) >= 2:
                    out.add((canonical(f[0]), canonical(f[1])))
        return out


def ml100k_items(folder):
    (folder / "u.item").write_bytes("".join(f"{i}|Movie {i} (1995)|01-Jan-1995||http://x|" + "|".join("0" * 19) + "\n"
                                            for i in ITEMS).encode("latin-1"))


def ml1m_movies(folder):
    (folder / "movies.dat").write_bytes("".join(f"{i}::Movie {i} (1995)::Drama\n" for i in ITEMS).encode("latin-1"))


def amazon_meta(folder):
    (folder / "meta_Cat.json.gz").write_bytes(gzip.compress("".join(json.dumps({"asin": i, "title": f"t {i}"}) + "\n"
                                                                    for i in ITEMS).encode()))


FORMATS = {
    "recbole": Format("recbole", "x.inter", "\t", "user_id:token\titem_id:token\trating:float\ttimestamp:float",
                      {"name": "x"}),
    "ml-100k": Format("ml-100k", "u.data", "\t", None, {}, ml100k_items, encoding="latin-1"),
    "ml-1m": Format("ml-1m", "ratings.dat", "::", None, {}, ml1m_movies, encoding="latin-1"),
    "amazon": Format("amazon", "Cat_5.json.gz", None, None, {"category": "Cat"}, amazon_meta, json_lines=True),
}


@st.composite
def mutated(draw, fmt: Format):
    n = draw(st.integers(12, 30))
    events = [(draw(st.sampled_from(USERS)), draw(st.sampled_from(ITEMS)), draw(st.integers(1, 5)),
               1_600_000_000 + k * 60) for k in range(n)]
    lines = fmt.lines(events)
    kind = draw(st.sampled_from(["truncate", "reencode", "swap", "lookalike", "times", "duplicate", "reorder", "blank",
                                 "crlf", "none"]))
    for _ in range(draw(st.integers(1, 3)) if kind in ("swap", "lookalike", "duplicate", "blank") else 1):
        k = draw(st.integers(0, len(lines) - 1))
        if kind == "swap" and not fmt.json_lines:
            f = lines[k].split(fmt.sep)
            f[draw(st.integers(0, len(f) - 1))] = draw(st.sampled_from(ODD_VALUES))
            lines[k] = fmt.sep.join(f)
        elif kind == "swap":
            d = json.loads(lines[k])
            d[draw(st.sampled_from(sorted(d)))] = draw(st.sampled_from(ODD_VALUES + [None, [1], {"a": 1}]))
            lines[k] = json.dumps(d)
        elif kind == "lookalike":
            u = events[k][0]
            twin = draw(st.sampled_from([unicodedata.normalize("NFD", u), u + "\u200b", "\ufeff" + u, f" {u} "]))
            lines[k] = lines[k].replace(u, twin, 1) if not fmt.json_lines else json.dumps(
                {**json.loads(lines[k]), "reviewerID": twin})
        elif kind == "duplicate":
            lines.insert(k, lines[k])
        elif kind == "blank":
            lines.insert(k, draw(st.sampled_from(["", "   ", "\t"])))
    if kind == "times":
        form = draw(st.sampled_from(["ms", "fraction", "iso", "thousands", "mixed_units"]))
        new = {"ms": lambda t, k: str(t * 1000), "fraction": lambda t, k: f"{t}.{k % 7}5",
               "iso": lambda t, k: f"2020-06-01T10:{k % 60:02d}:00+02:00", "thousands": lambda t, k: f"{t:,}",
               "mixed_units": lambda t, k: str(t * 1000 if k % 2 else t)}[form]
        lines = fmt.lines([(u, i, r, new(t, k)) for k, (u, i, r, t) in enumerate(events)])
        if fmt.json_lines:  # a JSON number, or a string where one is expected
            lines = [line.replace(f'"{v}"', v) if v.replace(".", "").isdigit() else line
                     for line, v in zip(lines, [new(t, k) for k, (_, _, _, t) in enumerate(events)])]
    if kind == "reorder":
        lines = draw(st.permutations(lines))
    text = "\n".join(([fmt.header] if fmt.header else []) + list(lines)) + "\n"
    if kind == "crlf":
        text = text.replace("\n", "\r\n")
    body = text.encode(fmt.encoding, errors="replace")  # the format's own encoding (MovieLens: latin-1)
    if kind == "reencode":
        body = text.encode(draw(st.sampled_from(["utf-8", "latin-1", "utf-16", "cp1252"])), errors="replace")
    if kind == "truncate":
        body = body[:draw(st.integers(0, len(body)))]
    return kind, body


def check(fmt: Format, kind: str, body: bytes, folder) -> str:
    fmt.write(folder / "src", body)
    params = {"dataset": "x", "datasets": {"x": {"format": fmt.fmt, "source": str(folder / "src"), **fmt.section}}}
    try:
        meta = download(params, folder / "raw")
        raw = SOURCES[meta["format"]].read(folder / "raw", meta)
    except (SourceError, ConfigError, TableError) as e:
        assert "\n" not in str(e).strip() and len(str(e)) > 15, f"{kind}: not a one-line error: {e!r}"
        return "error"
    plain = body if not fmt.file.endswith(".gz") else body
    lines = fmt.data_lines(plain)
    assert lines is not None, f"{kind}: a file that is not UTF-8 was read without an error"
    skipped = sum(int(raw.report.get(k, 0) or 0) for k in SKIP_KEYS)
    assert raw.interactions.height + skipped == len(lines), (
        f"{kind}: {raw.interactions.height} interactions + {skipped} counted skips != {len(lines)} data lines "
        f"(report {raw.report})")
    got = set(zip(raw.interactions["user"].cast(str).to_list(), raw.interactions["item"].cast(str).to_list()))
    invented = got - fmt.pairs(lines)
    assert not invented, f"{kind}: interactions the file does not hold: {sorted(invented)[:3]}"
    return "counted" if skipped else "read"


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_mutated_files_end_in_a_clear_error_or_reconciled_tables(name, tmp_path_factory):
    fmt = FORMATS[name]
    outcomes: dict[str, int] = {}

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=not RANDOM,
              database=None)
    @given(mutated(fmt))
    def run(case):
        kind, body = case
        outcome = check(fmt, kind, body, tmp_path_factory.mktemp(name))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    run()
    print(f"\n{name}: {sum(outcomes.values())} mutated inputs: {outcomes}")  # `pytest -s` shows the long run's counts
    assert sum(outcomes.values()) >= min(EXAMPLES, 10), outcomes
