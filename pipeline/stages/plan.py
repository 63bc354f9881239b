"""Stage `plan`: what the selected model needs from the optional stages, and its code's fingerprint (pipeline/plan.py).

Checks the whole params.yaml first (pipeline/schema.py: every section, data set and model).
Reads `model`, `models.<model>`, `features.extract`. Writes one small file per optional stage
(`text.json`, `image.json`, `keywords.json`, `pretrain.json`: needed or not) and `code.json`.
"""

from pipeline import cli
from pipeline.params import read_params
from pipeline.plan import plan
from pipeline.schema import check_all


def main() -> None:
    args = cli.parser(__doc__, "out").parse_args()
    cli.main(lambda: plan(check_all(read_params(args.params)), args.out))


if __name__ == "__main__":
    main()
