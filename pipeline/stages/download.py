"""Stage `download`: the selected data set's raw files into --out (pipeline/download.py).

Reads `dataset` and `datasets.<dataset>`. The folder is built under a temporary name and renamed
into place, so an interrupted download never leaves a raw folder that looks whole.
"""

from pipeline import cli
from pipeline.config import load_params
from pipeline.download import download


def main() -> None:
    args = cli.parser(__doc__, "out", invalidates=True).parse_args()

    def body() -> None:
        cli.invalidate(args.invalidates)
        download(load_params(args.params), args.out)

    cli.main(body)


if __name__ == "__main__":
    main()
