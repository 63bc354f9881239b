"""Stage `pretrain`: a pre-training model's own losses on the cached features (pipeline/pretrain.py).

Reads `pretrain` and `models.<pretrain.model>` (MSM4SR: NIP + CMCL, §III-C). Runs only when the
plan stage's file says the selected model starts from pre-trained weights (`--always`: anyway),
else writes a marker. A killed run resumes from its last completed epoch.
"""

from pipeline import cli
from pipeline.pretrain import run_stage


def main() -> None:
    ap = cli.parser(__doc__, "prepared", "features", "out", optional=("plan", "timing"))
    ap.add_argument("--always", action="store_true", help="pre-train even if the selected model reads no weights")
    args = ap.parse_args()
    cli.main(lambda: run_stage(args.params, args.prepared, args.features, args.out, args.plan, args.timing,
                               args.always))


if __name__ == "__main__":
    main()
