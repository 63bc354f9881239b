"""Stage `keywords`: images -> their best words -> Sentence-BERT vectors (MSM4SR §III-A).

Reads `features.keywords` and `features.text.encoder`; the library: pipeline/features/keywords.py.
"""

from pipeline.features import keywords
from pipeline.features.common import command


def main() -> None:
    command("keywords", keywords.run, __doc__, __spec__.name)


if __name__ == "__main__":
    main()
