"""Region masks for a sweep's localisation metrics: an expert's mask (vessels, lesions, NIfTI
labels) and a field of view per example, read beside the inputs.

``masks`` / ``fov`` name where each example's file is:

* a folder: the file named like the example's stem with an image or NIfTI suffix
  (``masks/`` of :func:`jaxretina.data.make_fake_dataset`: ``<image name>.png``);
* a template with ``{stem}`` (the example's file name without suffixes), ``{prefix}`` (the
  stem up to its first ``_``) or ``{name}`` (its path in the data folder): DRIVE's vessels are
  ``DRIVE/training/1st_manual/{prefix}_manual1.gif``, its fields of view
  ``DRIVE/training/mask/{prefix}_training_mask.gif``.

A mask is a binary image (any value above 0 is inside; DRIVE's GIFs hold 0/255) or a NIfTI
volume (labels above 0), with the example's own geometry: images are resized to the sweep's
``size`` as the inputs are, by nearest neighbour; otherwise the sizes must agree.  A missing,
unreadable or mis-sized file fails that example with the reason, like a bad input.

Example::

    >>> root = data.make_fake_dataset("lesions", per_class=1)
    >>> regions = sweep.regions.RegionFiles(str(root / "masks"))
    >>> regions.load("1000_right.png", (64, 64), resize=True).shape
    (64, 64)
"""

from __future__ import annotations

import os
import string
from pathlib import Path

import numpy as np

from jaxretina.sweep.inputs import MAX_FILE_BYTES, BadInput

__all__ = ["RegionFiles", "SUFFIXES"]

SUFFIXES = (".png", ".gif", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg", ".nii.gz", ".nii")
_FIELDS = ("stem", "prefix", "name")


def _stem(name: str) -> str:
    base = os.path.basename(name)
    for suffix in SUFFIXES:   # ".nii.gz" before ".nii"
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return os.path.splitext(base)[0]


class RegionFiles:
    """Where each example's region file is (a folder or a template, module docstring) and how it
    is read; ``what`` names it in messages ("mask", "fov")."""

    def __init__(self, where: str, *, what: str = "mask"):
        self.where, self.what = os.path.expanduser(where), what
        self.template = "{" in self.where
        if self.template:
            fields = [f for _, f, _, _ in string.Formatter().parse(self.where) if f is not None]
            bad = sorted(set(fields) - set(_FIELDS))
            if bad or not fields:
                raise ValueError(f"sweep: {what} template {where!r}: expected fields among "
                                 f"{['{' + f + '}' for f in _FIELDS]}; found {fields}")
        elif not os.path.isdir(self.where):
            raise ValueError(f"sweep: {what} {where!r} is neither a folder nor a template with {{stem}}")

    def path(self, name: str) -> Path:
        """The file of example ``name`` (its path in the data folder)."""
        stem = _stem(name)
        if self.template:
            return Path(self.where.format(stem=stem, prefix=stem.split("_")[0], name=name))
        for suffix in SUFFIXES:
            candidate = Path(self.where) / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
        return Path(self.where) / f"{stem}.png"

    def load(self, name: str, shape: tuple[int, ...], *, resize: bool = False) -> np.ndarray:
        """Example ``name``'s region as booleans of the input's spatial ``shape`` (an image
        ``resize``-d to it by nearest neighbour, as the sweep's ``size`` resizes the inputs);
        raises :class:`~jaxretina.sweep.BadInput` with the reason."""
        path = self.path(name)
        if not path.is_file():
            raise BadInput(f"no {self.what} file for {name}: expected {path}")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise BadInput(f"{self.what} {path}: too large ({path.stat().st_size} bytes)")
        if path.name.lower().endswith((".nii", ".nii.gz")):
            region = self._volume(path)
        else:
            region = self._image(path, shape, resize)
        if region.shape != tuple(shape):
            raise BadInput(f"{self.what} {path}: shape {region.shape} does not match the input's {tuple(shape)}")
        return region

    def _volume(self, path: Path) -> np.ndarray:
        from jaxretina.data.nifti import read_nifti

        try:
            labels = read_nifti(path).array
        except (ValueError, FileNotFoundError) as e:
            raise BadInput(f"{self.what} {path}: {e}") from None
        return np.asarray(labels[..., 0] if labels.ndim == 4 and labels.shape[-1] == 1 else labels) > 0

    def _image(self, path: Path, shape: tuple[int, ...], resize: bool) -> np.ndarray:
        from PIL import Image

        from jaxretina.sweep.inputs import open_image

        try:
            with open_image(path) as im:
                gray = im.convert("L")
                if resize and len(shape) == 2 and gray.size != (shape[1], shape[0]):
                    gray = gray.resize((shape[1], shape[0]), Image.Resampling.NEAREST)
                return np.asarray(gray) > 0
        except BadInput as e:
            raise BadInput(f"{self.what} {path}: {e}") from None
        except Exception as e:  # noqa: BLE001 - a stranger's file: any decoder failure is the example's
            raise BadInput(f"{self.what} {path}: unreadable image: {type(e).__name__}: {e}") from None
