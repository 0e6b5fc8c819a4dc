"""Reading an image folder: its PNG/JPEG files, each resized and center-cropped, and its classes
when the images sit in one subfolder per class (the files :func:`biaskit.data.image_folder`
reads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .pixels import open_image  # one image file as pixels (16-bit aware)

__all__ = ["IMAGE_SUFFIXES", "image_files", "folder_classes", "open_image"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def image_files(path) -> list[Path]:
    """The PNG/JPEG files under ``path`` (recursively), sorted."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"image folder not found: {path}")
    if not path.is_dir():
        raise ValueError(f"not a directory: {path}")
    try:
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    except OSError as e:
        raise ValueError(f"cannot read image folder {path}: {e}") from None
    if not files:
        raise ValueError(f"no PNG/JPEG images found in {path}")
    return files


def folder_classes(path, files) -> tuple[tuple, np.ndarray] | None:
    """(class names, label per file) when every file sits directly in a subfolder of ``path``
    (one subfolder per class, classes in sorted name order), else None."""
    parents = [f.relative_to(path).parts for f in files]
    if any(len(p) != 2 for p in parents):
        return None
    classes = tuple(sorted({p[0] for p in parents}))
    index = {c: k for k, c in enumerate(classes)}
    return classes, np.array([index[p[0]] for p in parents], dtype=np.int64)
