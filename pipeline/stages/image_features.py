"""Stage `image_features`: item images -> one pooled vector per image, stacked per item.

Reads `features.image` and the images under --raw; the library is pipeline/features/image.py.
"""

from pipeline import cli
from pipeline.features import image
from pipeline.features.common import run_stage

PATHS = ("prepared", "raw", "out")  # plus the plan stage's file (run only when needed) and the timing file


def main() -> None:
    args = cli.parser(__doc__, *PATHS, optional=("plan", "timing")).parse_args()
    cli.main(lambda: run_stage("image", image.run, args.params, args.prepared, args.raw, args.out, args.plan,
                               args.timing, __spec__.name))


if __name__ == "__main__":
    main()
