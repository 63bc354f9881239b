"""Stage `train`: the selected model trained on the training view -> checkpoint, curve, summary (pipeline/train.py).

Reads `model`, `models.<model>`, `train`, `protocol`, `preprocess.max_len`. With `train.nproc` > 1
the command re-runs itself as that many torchrun workers (DDP); by hand:
`torchrun --nproc_per_node=8 -m pipeline.stages.train ...` with this stage's arguments.
"""

from pipeline import cli
from pipeline.train import run_stage


def main() -> None:
    args = cli.parser(__doc__, "prepared", "features", "pretrain", "out", optional=("timing",),
                      invalidates=True).parse_args()
    def body() -> None:
        cli.invalidate(args.invalidates)
        run_stage(args.params, args.prepared, args.features, args.pretrain, args.out, args.timing, __spec__.name)

    cli.main(body)


if __name__ == "__main__":
    main()
