"""Keep finished study cells across a code change that provably changes no behaviour.

    python -m pipeline.rekey studies/*.yaml --from <commit>

A cell's result counts only while its key matches: its parameters and the SHA-256 of every file of
its model's source closure (`pipeline.plan.code_hashes`). Editing a shared file such as
`models/common.py` therefore makes every finished cell stale, even when the edit only adds an
option — and a study of many core-hours would be run again for nothing.

`rekey` accepts such an edit per model configuration only when an experiment shows it changes
nothing: for each stale cell it checks that the cell ran with `--from`'s version of the files
(its stored key is what that version gives), then trains the cell's exact model configuration on
a tiny fixed-seed demo (2 epochs, one thread) once with the old files and once with the current
ones, and compares the behaviour digests (the validation curve and every metric, to the bit). Equal:
the cell's key is rewritten to the current one and the file records why (`rekeyed`). Different, or
run with yet other code: the cell stays stale, and `run` re-runs it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline.params import ConfigError, setup_logging
from pipeline.plan import code_hashes

ROOT = Path(__file__).resolve().parents[1]
TINY = ["dataset=demo", "datasets.demo.n_items=300", "datasets.demo.n_users=250", "datasets.demo.seed=3",
        "datasets.demo.image_size=16", "preprocess.user_core=3", "preprocess.item_core=3", "preprocess.max_len=20",
        "train.epochs=2", "train.patience=2", "train.patience_steps=0", "train.batch_size=64", "train.threads=1",
        "features.threads=1", "features.shard_size=128", "pretrain.epochs=1", "pretrain.pairs_per_epoch=512",
        "pretrain.threads=1", "pretrain.one_pass_windows=0"]


def digest(params: dict) -> str:
    """The behaviour digest of a cell's model configuration: trained on the tiny demo (TINY) from a
    fixed seed; SHA-256 of its validation curve and metrics."""
    from pipeline import cells

    p = cells.with_settings(params, TINY)
    p["train"]["seed"] = 0
    with tempfile.TemporaryDirectory() as tmp:
        row = cells.run_cell(p, Path(tmp) / "work", f"{p['model']}", 0, Path(tmp) / "results")
    keep = {k: v for k, v in row.items() if k.startswith(("valid/", "test/", "cold_seq/")) or k in ("curve", "best_epoch")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()


def digest_in(tree: Path, params: dict) -> str:
    """`digest` run by the code in `tree` (a subprocess: its own imports)."""
    out = subprocess.run([sys.executable, "-m", "pipeline.rekey", "--digest", json.dumps(params)], cwd=tree,
                         env=os.environ | {"PYTHONPATH": str(tree)}, capture_output=True, text=True)
    if out.returncode:
        raise ConfigError(f"the behaviour digest failed in {tree}: {out.stderr.strip().splitlines()[-1:]}")
    return out.stdout.strip().splitlines()[-1]


def old_tree(commit: str, files: list[str], into: Path) -> dict[str, str]:
    """The tracked files of this checkout copied into `into`, with the `models` package as it was at
    `commit`; returns the {path: SHA-256} of `files` (a model's closure) at `commit`."""
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.splitlines()
    for f in tracked:
        src = ROOT / f
        if src.is_file():
            (into / f).parent.mkdir(parents=True, exist_ok=True)
            (into / f).write_bytes(src.read_bytes())
    hashes = {}
    at_commit = subprocess.run(["git", "ls-tree", "-r", "--name-only", commit, "models"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.splitlines()
    for f in sorted(set(at_commit) | set(files)):  # the whole models package as it was: the registry imports all
        got = subprocess.run(["git", "show", f"{commit}:{f}"], cwd=ROOT, capture_output=True)
        if got.returncode:
            raise ConfigError(f"{f} does not exist at {commit}: pass the commit the cells ran with (--from)")
        (into / f).write_bytes(got.stdout)
        if f in files:
            hashes[f] = hashlib.sha256(got.stdout).hexdigest()
    return hashes


def rekey(paths: list[Path], commit: str) -> list[str]:
    """Rewrite the keys of the stale cells of these studies that ran with `commit`'s model code and
    whose behaviour digest is unchanged; returns one line per stale cell saying what happened."""
    from pipeline import study as st

    said, cache = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            s = st.load(path)
            for row in (r for r in s.rows if r.model):
                for seed in s.seeds:
                    file = st.result_file(s, row, seed)
                    if not file.is_file():
                        continue
                    payload = json.loads(file.read_text())
                    params = st.cell_params(s, row, seed)
                    now = st.cell_key(params)
                    if payload.get("key") == now:
                        continue
                    files = sorted(code_hashes(params["model"]))
                    tree = Path(tmp) / f"{commit}-{len(cache)}"
                    key_files = (commit, tuple(files))
                    if key_files not in cache:
                        tree.mkdir()
                        cache[key_files] = (tree, old_tree(commit, files, tree))
                    tree, old = cache[key_files]
                    if payload.get("key") != st.cell_key(params, old):
                        said.append(f"{s.name}/{row.id} s{seed}: stale, and not run with {commit}'s code: re-run")
                        continue
                    base = params | {"train": params["train"] | {"seed": 0}}
                    pair = cache.setdefault(("digest", json.dumps(base, sort_keys=True, default=str)),
                                            (digest_in(tree, base), digest_in(ROOT, base)))
                    if pair[0] != pair[1]:
                        said.append(f"{s.name}/{row.id} s{seed}: the code change changes its behaviour: re-run")
                        continue
                    payload["key"] = now
                    payload["rekeyed"] = payload.get("rekeyed", []) + [{"from": commit, "digest": pair[1]}]
                    file.write_text(json.dumps(payload, indent=1))
                    said.append(f"{s.name}/{row.id} s{seed}: same behaviour as at {commit} (digest "
                                f"{pair[1][:12]}): kept")
    return said


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("studies", nargs="*", type=Path)
    ap.add_argument("--from", dest="commit", help="the commit whose model code the stale cells ran with")
    ap.add_argument("--digest", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.digest:
        return print(digest(json.loads(args.digest)))
    setup_logging()
    if not args.commit or not args.studies:
        raise SystemExit("usage: python -m pipeline.rekey studies/*.yaml --from <commit>")
    try:
        for line in rekey(args.studies, args.commit) or ["no stale cell"]:
            print(line)
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
