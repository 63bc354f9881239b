"""Stage `keywords`: images -> their best words -> Sentence-BERT vectors (MSM4SR §III-A).

Reads `features.keywords` and `features.text.encoder`; the library: pipeline/features/keywords.py.
"""

from pipeline import cli
from pipeline.features import keywords
from pipeline.features.common import run_stage

PATHS = ("prepared", "raw", "out")  # plus the plan stage's file (run only when needed) and the timing file


def main() -> None:
    args = cli.parser(__doc__, *PATHS, optional=("plan", "timing")).parse_args()
    cli.main(lambda: run_stage("keywords", keywords.run, args.params, args.prepared, args.raw, args.out, args.plan,
                               args.timing, __spec__.name))


if __name__ == "__main__":
    main()
