"""Stage `preprocess`: raw files -> items / interactions / sequences Parquet + stats.json (pipeline/preprocess.py).

Reads `preprocess`. The rules, in order, and what each one drops: pipeline/preprocess.py.
"""

from pipeline import cli
from pipeline.config import PreprocessConfig, load_params
from pipeline.params import from_dict
from pipeline.preprocess import run


def main() -> None:
    args = cli.parser(__doc__, "raw", "out", invalidates=True).parse_args()

    def body() -> None:
        cli.invalidate(args.invalidates)
        run(args.raw, args.out, from_dict(PreprocessConfig, load_params(args.params).get("preprocess"), "preprocess"))

    cli.main(body)


if __name__ == "__main__":
    main()
