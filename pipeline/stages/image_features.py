"""Stage `image_features`: item images -> one pooled vector per image, stacked per item.

Reads `features.image` and the images under --raw; the library is pipeline/features/image.py.
"""

from pipeline.features import image
from pipeline.features.common import command


def main() -> None:
    command("image", image.run, __doc__, __spec__.name)


if __name__ == "__main__":
    main()
