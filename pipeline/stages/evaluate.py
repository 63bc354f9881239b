"""Stage `evaluate`: exact full-ranking metrics of the checkpoint on valid and test, and every query's rank (pipeline/evaluate.py).

Reads `protocol` (and checks `model`, `models.<model>`, `train`, `preprocess.max_len` against what
the checkpoint was trained with). The only stage that reads the test targets.
"""

from pipeline import cli
from pipeline.evaluate import run_stage


def main() -> None:
    args = cli.parser(__doc__, "prepared", "checkpoint", "out", "ranks").parse_args()
    cli.main(lambda: run_stage(args.params, args.prepared, args.checkpoint, args.out, args.ranks, __spec__.name))


if __name__ == "__main__":
    main()
