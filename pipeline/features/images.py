"""Loading item images defensively: every image either becomes an RGB picture or a counted skip.

Rules (the image and keyword stages report each count):

- The format is read from the file's bytes, not its name: a PNG named `.jpg` loads (counted as
  `extension_mismatch`, not skipped).
- Skips, by reason: `missing` (no such file), `unreadable` (not an image, corrupt or truncated),
  `too_large` (more pixels than `max_pixels`, Pillow's decompression-bomb guard turned into a skip
  instead of a warning or a crash), `extreme_aspect` (one side more than MAX_ASPECT times the
  other: a 20000 x 1 strip passes the pixel limit, but resizing its short side to the encoder's
  input would make it 5 million pixels long). So what reaches the encoder's resize is bounded on
  both sides: at most MAX_ASPECT x its short side.
- EXIF orientation is applied (a phone photo stored sideways is turned upright; counted `exif_rotated`).
- Modes: CMYK and palette images are converted to RGB; transparency (RGBA, LA, P with a
  transparent colour) is composited onto white; 16- and 32-bit greyscale is rescaled to 8 bits
  from its own range (Pillow's plain convert would clip it to white). Each conversion is counted.
- JPEGs are decoded at a reduced scale when that still covers `min_side` (Pillow's `draft`),
  which is most of the decode cost for large posters.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

SKIP_REASONS = ("missing", "unreadable", "too_large", "extreme_aspect")
MAX_ASPECT = 10  # longest side / shortest side; posters are ~1.5, banners ~4
EXTENSIONS = {"JPEG": (".jpg", ".jpeg"), "PNG": (".png",), "WEBP": (".webp",), "GIF": (".gif",),
              "BMP": (".bmp",), "TIFF": (".tif", ".tiff")}


def load_image(path: Path, counts: Counter, max_pixels: int = 89_478_485, min_side: int = 256) -> Image.Image | None:
    """Return an RGB image, or None after counting why it was skipped in `counts`."""
    if not path.is_file():
        counts["missing"] += 1
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > max_pixels:
                    counts["too_large"] += 1
                    return None
                if max(img.size) > MAX_ASPECT * max(min(img.size), 1):
                    counts["extreme_aspect"] += 1
                    return None
                if img.format and path.suffix.lower() not in EXTENSIONS.get(img.format, (path.suffix.lower(),)):
                    counts["extension_mismatch"] += 1
                if img.format == "JPEG":
                    img.draft("RGB", (min_side, min_side))
                img.load()
                if img.getexif().get(0x0112, 1) != 1:  # EXIF Orientation: the picture is stored turned
                    counts["exif_rotated"] += 1
                    img = ImageOps.exif_transpose(img)
                return to_rgb(img, counts)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        counts["too_large"] += 1
    except (OSError, ValueError, SyntaxError, Image.UnidentifiedImageError):
        counts["unreadable"] += 1
    return None


def to_rgb(img: Image.Image, counts: Counter) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img.copy()
    counts[f"mode_{mode}"] += 1
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        return Image.fromarray(a.round().astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")
