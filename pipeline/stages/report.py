"""Stage `report`: this run's page (data/report/index.html) and its per-run plot CSVs (pipeline/report.py).

Everything on the page comes from hashed inputs (metrics, curve, checkpoint, items, text features),
so it is byte-identical for the same run. Every experiment's page: `python -m pipeline.report`.
"""

from pathlib import Path

from pipeline import cli
from pipeline.report import report


def main() -> None:
    args = cli.parser(__doc__, "out", params=False).parse_args()
    cli.main(lambda: report(Path("."), args.out, run_only=True))  # "." = the project root, where DVC runs stages


if __name__ == "__main__":
    main()
