"""One image file as pixels in [0, 1]: 8-bit modes through PIL's conversions, high-depth
grayscale (16-bit PNG, PIL modes ``I;16*`` and ``I``) divided by 65535, float images refused
(their range is unknown)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["open_image", "check_mode"]

_SIXTEEN_BIT = 65535.0


def check_mode(mode):
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")


def _high_depth(im, path: Path):
    """A 16-bit grayscale image as a PIL 'F' image in [0, 1] (PIL's convert('L') would clip
    every value above 255 to white)."""
    from PIL import Image
    a = np.asarray(im).astype(np.float64)
    if im.mode == "I" and (a.min() < 0 or a.max() > _SIXTEEN_BIT):
        raise ValueError(f"cannot read image {path}: 32-bit integer pixels outside 0..65535 "
                         f"(min {a.min():g}, max {a.max():g}); save it as 8- or 16-bit")
    return Image.fromarray((a / _SIXTEEN_BIT).astype(np.float32), mode="F")


def open_image(path: Path, size: int, mode: str, converted=None) -> np.ndarray:
    """Resize the shorter side to ``size`` and center-crop; (C, size, size) in [0, 1].
    ``converted`` (a Counter) counts the source modes that were converted to ``mode``."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            if converted is not None and im.mode != mode:
                converted[im.mode] += 1
            if im.mode == "F":
                raise ValueError("floating-point pixels have no known range; save it as 8- or 16-bit")
            deep = im.mode == "I" or im.mode.startswith("I;16")
            im = _high_depth(im, path) if deep else im.convert(mode)
            w, h = im.size
            scale = size / min(w, h)
            im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            a = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from None
    if deep:  # gray in [0, 1]; RGB repeats it, as PIL's convert('RGB') of an 'L' image
        a = np.clip(a, 0.0, 1.0)[None]
        return np.repeat(a, 3, 0) if mode == "RGB" else a
    a = a / 255.0
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
