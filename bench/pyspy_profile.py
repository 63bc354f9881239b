"""Profile any benchmark command with py-spy and summarise where the time goes.

    python -m bench.pyspy_profile --out bench/results/profile-preprocess.txt -- \\
        python -m bench.preprocess_scale --sizes 1000000

py-spy samples the command (and its subprocesses, native frames included) and writes collapsed
stacks; this script prints the top functions by self time and by inclusive time, as percentages
of all samples, and saves the raw stacks next to the summary.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
from pathlib import Path

OURS = ("pipeline/", "models/", "bench/")


def _frame(f: str) -> tuple[str, str]:
    """'func (path/file.py:12)' -> ('func', 'path/file.py'); native frames -> (symbol, library)."""
    name, _, where = f.partition(" (")
    return name, where.rstrip(")").rsplit(":", 1)[0]


def summarise(raw: Path, top: int = 12) -> str:
    """Inclusive time of our own functions (file:function), and self time grouped by library."""
    ours: collections.Counter = collections.Counter()
    libs: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";")[1:]]  # [0] is the process
        for key in {f"{path}:{name}" for name, path in frames if path.startswith(OURS)}:
            ours[key] += n
        name, path = frames[-1] if frames else ("?", "?")
        lib = path.rsplit("/", 1)[-1] if path else name
        libs["python: " + path.split("/")[0] if path.endswith(".py") else lib] += n
    out = [f"{total} samples", "", "inclusive time of our functions:"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in ours.most_common(top)]
    out += ["", "self time by where it was spent (native library, or Python package):"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in libs.most_common(top)]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="summary file; raw stacks go to <out>.stacks")
    ap.add_argument("--rate", type=int, default=50, help="samples per second")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stacks = out.with_suffix(out.suffix + ".stacks")
    subprocess.run([spy, "record", "--subprocesses", "--native", "--rate", str(args.rate), "--format", "raw",
                    "--output", str(stacks), "--", *cmd], check=True)
    summary = summarise(stacks)
    out.write_text(f"$ {' '.join(cmd)}\n{summary}\n")
    print(summary)


if __name__ == "__main__":
    main()
