"""Stage `text_features`: item text -> pooled vectors and per-sentence stacks (MSM4SR eq. 1).

Reads `features.text`; the library is pipeline/features/text.py (what runs, what is skipped and
counted: pipeline/features/common.command).
"""

from pipeline.features import text
from pipeline.features.common import command


def main() -> None:
    command("text", text.run, __doc__, __spec__.name, raw=False)


if __name__ == "__main__":
    main()
