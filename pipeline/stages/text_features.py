"""Stage `text_features`: item text -> pooled vectors and per-sentence stacks (MSM4SR eq. 1).

Reads `features.text`; the library is pipeline/features/text.py (what runs, what is skipped and
counted: pipeline/features/common.command).
"""

from pipeline import cli
from pipeline.features import text
from pipeline.features.common import run_stage

PATHS = ("prepared", "out")  # plus the plan stage's file (run only when needed) and the timing file


def main() -> None:
    args = cli.parser(__doc__, *PATHS, optional=("plan", "timing")).parse_args()
    cli.main(lambda: run_stage("text", text.run, args.params, args.prepared, None, args.out, args.plan,
                               args.timing, __spec__.name))


if __name__ == "__main__":
    main()
