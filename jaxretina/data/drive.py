"""DRIVE (Staal et al. 2004) retinal-vessel data in its standard folder layout, and a fake tree.

The layout of the official download (the folder that holds ``training/`` and ``test/``)::

    DRIVE/training/images/21_training.tif     1st_manual/21_manual1.gif    mask/21_training_mask.gif
    DRIVE/test/images/01_test.tif             1st_manual/01_manual1.gif    mask/01_test_mask.gif
                                              2nd_manual/01_manual2.gif

Images are 565 × 584 RGB TIFFs, vessel labels and field-of-view masks binary GIFs (0/255).
A source is a sequence of :class:`DriveExample` (``name``, ``image`` uint8 (H, W, 3), ``vessels``
bool (H, W) or ``None`` where a release has no labels, ``mask`` bool (H, W)); all images of DRIVE
share one shape, so :meth:`DriveFolder.arrays` stacks a whole split.  The TFDS builder ``drive``
(:func:`drive_tfds`) reads the same directory as its manual download.

Example::

    >>> src = data.drive_folder("~/DRIVE", "test")
    >>> images, vessels, masks = src.arrays()          # (20, 584, 565, 3) uint8, (20, 584, 565) bool ×2
    >>> root = data.make_fake_drive("/tmp/fake_drive")  # the same layout, generated
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import numpy as np
from PIL import Image, ImageDraw

from jaxretina.data.batching import prefetched
from jaxretina.data.sources import decode_rgb

__all__ = ["DriveExample", "DriveFolder", "drive_folder", "drive_tfds", "drive_batches", "stack_examples",
           "make_fake_drive", "DRIVE_SPLITS", "DRIVE_SHAPE"]

DRIVE_SPLITS = {"training": "training", "train": "training", "test": "test"}
DRIVE_SHAPE = (584, 565)  # (H, W) of every DRIVE image


class DriveExample(NamedTuple):
    name: str                       # "21_training", "01_test"
    image: np.ndarray               # uint8 (H, W, 3) RGB
    vessels: np.ndarray | None      # bool (H, W); None when the release has no labels for this split
    mask: np.ndarray                # bool (H, W), the field of view


def _read_binary(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L")) > 127
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot decode {path} as a binary image (DRIVE labels and masks are GIFs): {e}") from None


def _find_root(root: Path) -> Path:
    if (root / "training").is_dir() or (root / "test").is_dir():
        return root
    if (root / "DRIVE").is_dir():
        return root / "DRIVE"
    found = sorted(p.name for p in root.iterdir())[:10] if root.is_dir() else "no such directory"
    raise FileNotFoundError(f"{root} is not a DRIVE directory: expected training/ and test/ folders (or DRIVE/ "
                            f"holding them); found {found}")


class DriveFolder(Sequence[DriveExample]):
    """One split of a DRIVE directory; files are read when an example is indexed."""

    def __init__(self, root: str | os.PathLike, split: str = "training", *, annotator: int = 1):
        if split not in DRIVE_SPLITS:
            raise ValueError(f"DRIVE split must be one of {sorted(set(DRIVE_SPLITS))}; found {split!r}")
        if annotator not in (1, 2):
            raise ValueError(f"annotator must be 1 (1st_manual) or 2 (2nd_manual, test only); found {annotator!r}")
        self.split = DRIVE_SPLITS[split]
        self.root = _find_root(Path(root).expanduser())
        folder = self.root / self.split
        images = folder / "images"
        if not images.is_dir():
            raise FileNotFoundError(f"DRIVE split {self.split!r}: expected the folder {images}; it does not exist")
        pattern = re.compile(rf"^(\d+)_{self.split}\.(tif|tiff|png|jpg)$", re.IGNORECASE)
        found = sorted((m.group(1), p) for p in images.iterdir() if (m := pattern.match(p.name)))
        if not found:
            raise FileNotFoundError(f"no DRIVE images named like 21_{self.split}.tif in {images}")
        self._ids = [i for i, _ in found]
        self._images = [p for _, p in found]
        self._labels_dir = folder / f"{'1st' if annotator == 1 else '2nd'}_manual"
        self.annotator = annotator
        self._masks = []
        for i in self._ids:
            mask = _first_existing(folder / "mask", f"{i}_{self.split}_mask")
            if mask is None:
                raise FileNotFoundError(f"DRIVE image {i}_{self.split}: no field-of-view mask "
                                        f"{folder / 'mask' / f'{i}_{self.split}_mask.gif'}")
            self._masks.append(mask)

    @property
    def names(self) -> list[str]:
        return [f"{i}_{self.split}" for i in self._ids]

    @property
    def has_labels(self) -> bool:
        return all(self._label_path(i) is not None for i in self._ids)

    def _label_path(self, i: str) -> Path | None:
        return _first_existing(self._labels_dir, f"{i}_manual{self.annotator}")

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, k: int) -> DriveExample:  # type: ignore[override]
        i = self._ids[int(k)]
        image = decode_rgb(self._images[int(k)])
        mask = _read_binary(self._masks[int(k)])
        label = self._label_path(i)
        vessels = _read_binary(label) if label is not None else None
        for what, a in (("mask", mask), ("vessel label", vessels)):
            if a is not None and a.shape != image.shape[:2]:
                raise ValueError(f"DRIVE {i}_{self.split}: {what} is {a.shape}, the image {image.shape[:2]}")
        return DriveExample(f"{i}_{self.split}", image, vessels, mask)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The whole split stacked: images (N, H, W, 3) uint8, vessels and masks (N, H, W) bool."""
        return stack_examples([self[k] for k in range(len(self))])


def stack_examples(examples: Sequence[DriveExample]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack DRIVE examples of one shape into (images, vessels, masks) arrays."""
    if any(ex.vessels is None for ex in examples):
        raise ValueError("this DRIVE split has no vessel labels (1st_manual / 2nd_manual missing); images and "
                         "masks can still be read one example at a time")
    shapes = {ex.image.shape for ex in examples}
    if len(shapes) != 1:
        raise ValueError(f"DRIVE images of one split must share a shape to stack; found {sorted(shapes)}")
    return (np.stack([ex.image for ex in examples]), np.stack([ex.vessels for ex in examples]),
            np.stack([ex.mask for ex in examples]))


def drive_batches(source: Sequence[DriveExample], order: Iterable[Any], *, steps: int | None = None,
                  workers: int = 4, prefetch: int = 2) -> Iterator[dict[str, Any]]:
    """Batches ``{"image": (B, H, W, 3) uint8, "vessels", "mask": (B, H, W) bool, "name": [B],
    "valid": (B,) bool}`` for each entry of ``order`` (index arrays, e.g. :func:`jaxretina.data.shuffled`,
    or ``(indices, valid)`` from :func:`jaxretina.data.sequential`), decoded ahead on threads.
    DRIVE images share one shape, so there is no resizing."""

    def load(idx, valid, pool):
        rows = list(pool.map(lambda i: source[int(i)], idx))
        images, vessels, masks = stack_examples(rows)
        return {"image": images, "vessels": vessels, "mask": masks, "name": [r.name for r in rows],
                "valid": np.ones(len(rows), bool) if valid is None else np.asarray(valid, bool)}

    return prefetched(load, order, steps=steps, workers=workers, prefetch=prefetch)


def _first_existing(folder: Path, stem: str) -> Path | None:
    for ext in (".gif", ".png", ".tif", ".tiff"):
        p = folder / (stem + ext)
        if p.exists():
            return p
    return None


def drive_folder(root: str | os.PathLike, split: str = "training", *, annotator: int = 1) -> DriveFolder:
    """A DRIVE split (``"training"``/``"train"`` or ``"test"``) from the standard folder layout."""
    return DriveFolder(root, split, annotator=annotator)


def drive_tfds(data_dir: str | os.PathLike | None = None, split: str = "train", *,
               manual_dir: str | os.PathLike | None = None):
    """The TFDS builder ``drive`` (:mod:`jaxretina.data.drive_builder`): split ``"train"`` or
    ``"test"`` prepared in ``data_dir``, from ``manual_dir`` (the DRIVE folder) if not yet.
    Needs ``tensorflow-datasets`` (not TensorFlow); :func:`drive_folder` reads the folder directly."""
    try:
        from jaxretina.data import drive_builder
    except ImportError:
        raise ImportError("drive_tfds needs tensorflow-datasets (pip install 'jaxretina[tfds]'); to read the DRIVE "
                          "folder without it, use jaxretina.data.drive_folder(root, split)") from None
    return drive_builder.drive_tfds(data_dir, split, manual_dir=manual_dir)


def _fake_fundus_and_vessels(rng: np.random.Generator, height: int, width: int):
    """An orange retina with a dark vessel tree, the tree's label and the FOV disc."""
    fov = Image.new("L", (width, height), 0)
    r = 0.47 * min(height, width)
    cx, cy = width / 2, height / 2
    ImageDraw.Draw(fov).ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    label = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(label)
    ox, oy = cx + rng.choice([-1, 1]) * 0.55 * r, cy
    for _ in range(5):  # vessels: wandering polylines from the optic disc, thinner as they go
        x, y, angle = ox, oy, rng.uniform(0, 2 * np.pi)
        for seg in range(8):
            angle += rng.normal(0, 0.35)
            step = rng.uniform(0.1, 0.18) * r
            nx, ny = x + step * np.cos(angle), y + step * np.sin(angle)
            draw.line([(x, y), (nx, ny)], fill=255, width=max(1, int(round(r / 18 * (1 - seg / 10)))))
            x, y = nx, ny
    vessels = np.asarray(label) > 0
    mask = np.asarray(fov) > 0
    yy, xx = np.mgrid[:height, :width]
    shade = 1.0 - 0.35 * np.hypot(yy - cy, xx - cx) / r            # uneven illumination
    base = np.stack([200 * shade, 95 * shade, 45 * shade], -1)
    image = np.where(vessels[..., None], base * 0.55, base) + rng.normal(0, 4, (height, width, 3))
    image = np.where(mask[..., None], image, 0).clip(0, 255).astype(np.uint8)
    return image, vessels & mask, mask


def make_fake_drive(root: str | os.PathLike, *, n_train: int = 4, n_test: int = 2, height: int = 64,
                    width: int = 60, second_annotator: bool = True, seed: int = 0) -> Path:
    """Write a small generated DRIVE tree (same folder and file names, TIFF images, GIF labels
    and masks) under ``root`` and return ``root``.  Training ids start at 21, test ids at 01 as
    in DRIVE; the test split also gets ``2nd_manual`` (the label, one pixel dilated) when asked."""
    from scipy import ndimage

    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, first, n in (("training", 21, n_train), ("test", 1, n_test)):
        second = split == "test" and second_annotator
        for sub in ("images", "1st_manual", "mask") + (("2nd_manual",) if second else ()):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            i = f"{first + k:02d}"
            image, vessels, mask = _fake_fundus_and_vessels(rng, height, width)
            Image.fromarray(image).save(root / split / "images" / f"{i}_{split}.tif")
            Image.fromarray(vessels.astype(np.uint8) * 255).save(root / split / "1st_manual" / f"{i}_manual1.gif")
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / split / "mask" / f"{i}_{split}_mask.gif")
            if second:
                other = ndimage.binary_dilation(vessels) & mask
                Image.fromarray(other.astype(np.uint8) * 255).save(root / split / "2nd_manual" / f"{i}_manual2.gif")
    return root
