"""Regenerate the generated blocks of docs/ (the tables in docs/performance.md from bench/results/*.json,
the study index in docs/benchmarks.md, the model contract in docs/adding-a-model.md from
models/contract.py), or check that they agree.

    python -m bench.docs_tables --write-docs     # rewrite every generated block in place
    python -m bench.docs_tables --check          # exit 1 (and show the diff) if a block is stale

A generated block in the Markdown page is

    <!-- generated: bench.automlp_report bench/results/automlp-search/runs-s*.json -->
    ...the command's stdout...
    <!-- end generated -->

The marker names a bench module and its arguments; globs are expanded (natural order: row2 before
row10) against the project root, `python -m <module>` runs with the project's Python, and its
stdout replaces the block. So a re-run of a
benchmark updates the page with one command, and tests/test_docs_tables.py fails when the page and
the JSON disagree. Text outside the blocks (findings, verdicts) is written by hand.
"""

from __future__ import annotations

import argparse
import difflib
import glob
import re
import shlex
import subprocess
import sys
from pathlib import Path

from models.contract import with_markdown

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "performance.md"
INDEX_PAGE = ROOT / "docs" / "benchmarks.md"
MODEL_PAGES = ROOT / "docs" / "models"  # their verdict tables, from the study pages
CONTRACT_PAGE = ROOT / "docs" / "adding-a-model.md"
BLOCK = re.compile(r"(<!-- generated: (?P<cmd>.+?) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.DOTALL)


def natural(name: str) -> list:
    """Sort key that puts row2 before row10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def expand(cmd: str) -> list[str]:
    """The marker's words with globs expanded (natural order) against the project root; a glob
    matching nothing is an error."""
    out = []
    for word in shlex.split(cmd):
        if any(c in word for c in "*?["):
            hits = sorted(glob.glob(word, root_dir=ROOT), key=natural)
            if not hits:
                raise SystemExit(f"{PAGE.name}: '{word}' in <!-- generated: {cmd} --> matches no file")
            out += hits
        else:
            out.append(word)
    return out


def render(cmd: str) -> str:
    argv = expand(cmd)
    if not argv or not re.fullmatch(r"bench\.\w+|pipeline\.study", argv[0]):
        raise SystemExit(f"{PAGE.name}: a generated block runs a bench module (bench.<name>) or pipeline.study, "
                         f"got {cmd!r}")
    res = subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"{PAGE.name}: `{cmd}` failed (exit {res.returncode}):\n{res.stderr[-2000:]}")
    return res.stdout.strip("\n") + "\n"


def regenerate(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + render(m.group("cmd")) + m.group(4), text)


def pages(page: Path) -> dict[Path, str]:
    """{page: regenerated text}: the page, and with the default page the study index and the contract too."""
    out = {page: regenerate(page.read_text())}
    if page == PAGE:
        out[INDEX_PAGE] = regenerate(INDEX_PAGE.read_text())
        out |= {p: regenerate(p.read_text()) for p in sorted(MODEL_PAGES.glob("*.md")) if BLOCK.search(p.read_text())}
        out[CONTRACT_PAGE] = with_markdown(CONTRACT_PAGE.read_text())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--write-docs", action="store_true")
    what.add_argument("--check", action="store_true")
    ap.add_argument("--page", default=str(PAGE))
    args = ap.parse_args()
    page = Path(args.page)
    n = len(BLOCK.findall(page.read_text()))
    stale = []
    for path, new in pages(page).items():
        old = path.read_text()
        if args.write_docs:
            tmp = path.with_suffix(".md.tmp")
            tmp.write_text(new)
            tmp.replace(path)
        elif new != old:
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True), str(path),
                                                       "regenerated"))
            stale.append(str(path))
    if stale:
        raise SystemExit(f"{', '.join(stale)}: disagrees with what generates it: run python -m bench.docs_tables "
                         "--write-docs")
    print(f"{page}: {n} generated block(s) {'rewritten' if args.write_docs else 'agree with bench/results'}")


if __name__ == "__main__":
    main()
