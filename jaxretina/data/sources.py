"""Fundus image sources: a Kaggle-style folder + CSV, Kaggle's/TFDS's manual-download layout,
and a prepared TFDS ``diabetic_retinopathy_detection`` dataset — one interface for all.

A source is a sequence of :class:`Example` (``name``, ``image`` uint8 (H, W, 3) RGB, ``label``
0–4, −1 when unknown) with a ``labels`` array (int32, no image decoded) for samplers.
:func:`jaxretina.data.batches` turns any of them into identical fixed-shape batches.

Example::

    >>> src = data.kaggle_folder("~/eyepacs/train", "~/eyepacs/trainLabels.csv")
    >>> src = data.kaggle_manual_dir("~/eyepacs", split="train")     # the same, found by layout
    >>> len(src), src.labels[:5], src[0].image.shape
    (10, array([0, 0, 1, 1, 2], dtype=int32), (..., ..., 3))

A split that TFDS prepared (which needs TensorFlow) reads without it:
``data.tfds_source("~/tensorflow_datasets", split="train")``.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
from PIL import Image

__all__ = [
    "Example", "KaggleFolder", "kaggle_folder", "kaggle_manual_dir", "TFDSSource", "tfds_source", "decode_rgb",
    "square_resize", "Subset", "split", "TFDS_NAME", "GRADES",
    "record_index",
]

TFDS_NAME = "diabetic_retinopathy_detection"
GRADES = ("no DR", "mild", "moderate", "severe", "proliferative DR")
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".tif", ".tiff")


class Example(NamedTuple):
    name: str
    image: np.ndarray  # uint8 (H, W, 3) RGB
    label: int


def decode_rgb(data: bytes | str | os.PathLike) -> np.ndarray:
    """An image file (path or encoded bytes) as uint8 RGB (H, W, 3); clear error if unreadable."""
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        where = "image bytes" if isinstance(data, bytes) else str(data)
        raise ValueError(f"cannot decode {where} as an image: {e}") from None


def square_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Pad (H, W, 3) uint8 to a centred black square, then resize to ``size``×``size``.

    Keeps the retina's shape and centre (a uniform scale), so every image of a dataset has one
    shape and the on-device preprocessing compiles once.  Antialiased (PIL's bilinear with
    support scaled to the reduction).
    """
    h, w = image.shape[:2]
    side = max(h, w)
    if (h, w) != (side, side):
        square = np.zeros((side, side, 3), np.uint8)
        top, left = (side - h) // 2, (side - w) // 2
        square[top : top + h, left : left + w] = image
        image = square
    if side == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None))


def _read_labels(csv_path: Path, usage: str | None) -> list[tuple[str, int]]:
    if not csv_path.is_file():
        raise FileNotFoundError(f"labels file {csv_path} not found; expected a Kaggle-style CSV with columns "
                                f"'image,level' (e.g. trainLabels.csv)")
    with open(csv_path, newline="") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        if "image" not in columns or "level" not in columns:
            raise ValueError(f"{csv_path}: expected columns 'image' and 'level' (Kaggle's trainLabels.csv); "
                             f"found {columns}")
        if usage is not None and "Usage" not in columns:
            raise ValueError(f"{csv_path}: selecting Usage={usage!r} needs a 'Usage' column; found {columns}")
        rows = []
        for line, row in enumerate(reader, start=2):
            if usage is not None and row["Usage"] != usage:
                continue
            try:
                level = int(row["level"])
            except (TypeError, ValueError):
                raise ValueError(f"{csv_path}:{line}: level must be an integer 0-4; found {row['level']!r}") from None
            if not 0 <= level <= 4:
                raise ValueError(f"{csv_path}:{line}: level must be 0-4; found {level}")
            rows.append((row["image"], level))
    return rows


class KaggleFolder(Sequence[Example]):
    """Images in one folder named by the CSV's ``image`` column (any of :data:`IMAGE_EXTENSIONS`),
    labels from its ``level`` column; optionally only rows with ``Usage == usage``."""

    def __init__(self, images: str | os.PathLike, labels_csv: str | os.PathLike, *, usage: str | None = None):
        self.root = Path(images).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} not found")
        rows = _read_labels(Path(labels_csv).expanduser(), usage)
        by_stem = {}
        for p in self.root.iterdir():
            if p.suffix.lower() in IMAGE_EXTENSIONS:
                by_stem.setdefault(p.stem, p)
        missing = [name for name, _ in rows if Path(name).stem not in by_stem]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of {len(rows)} images listed in {labels_csv} are not in {self.root} "
                f"(first: {missing[:3]}; looked for {'/'.join(IMAGE_EXTENSIONS)} files)")
        if not rows:
            raise ValueError(f"{labels_csv}: no labelled images" + (f" with Usage={usage!r}" if usage else ""))
        self.names = [name for name, _ in rows]
        self.paths = [by_stem[Path(name).stem] for name in self.names]
        self.labels = np.asarray([level for _, level in rows], np.int32)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> Example:  # type: ignore[override]
        return Example(self.names[i], decode_rgb(self.paths[i]), int(self.labels[i]))


def kaggle_folder(images: str | os.PathLike, labels_csv: str | os.PathLike | None = None) -> KaggleFolder:
    """A plain folder of images plus a Kaggle-style ``trainLabels.csv`` (default: in the folder or
    next to it)."""
    root = Path(images).expanduser()
    if labels_csv is None:
        candidates = [root / "trainLabels.csv", root.parent / "trainLabels.csv"]
        labels_csv = next((c for c in candidates if c.is_file()), candidates[0])
    return KaggleFolder(root, labels_csv)


_MANUAL_SPLITS = {  # split -> (image folder, labels CSV, Usage) in Kaggle's / TFDS's manual layout
    "train": ("train", "trainLabels.csv", None),
    "validation": ("test", "retinopathy_solution.csv", "Public"),
    "test": ("test", "retinopathy_solution.csv", "Private"),
}


def _manual_dir_problem(manual_dir: Path, split: str) -> str | None:
    folder, labels, _ = _MANUAL_SPLITS[split]
    missing = [n for n in (folder, labels) if not (manual_dir / n).exists()]
    if not missing:
        return None
    return (f"the diabetic_retinopathy_detection manual download directory {manual_dir} lacks {missing} for split "
            f"{split!r}. Download Kaggle's 'Diabetic Retinopathy Detection' data (train.zip.*, test.zip.*, "
            f"trainLabels.csv.zip; test labels: retinopathy_solution.csv) and extract it there so that it holds "
            f"train/*.jpeg, test/*.jpeg, trainLabels.csv and retinopathy_solution.csv — the layout TFDS expects "
            f"in its manual_dir (~/tensorflow_datasets/downloads/manual by default)")


def kaggle_manual_dir(manual_dir: str | os.PathLike, split: str = "train") -> KaggleFolder:
    """Kaggle's extracted download (= TFDS's manual directory), read without TFDS.

    ``split``: ``"train"`` (train/ + trainLabels.csv), ``"validation"`` / ``"test"`` (test/ +
    retinopathy_solution.csv, Usage Public / Private) — TFDS's split definitions.
    """
    if split not in _MANUAL_SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(_MANUAL_SPLITS)}")
    root = Path(manual_dir).expanduser()
    problem = _manual_dir_problem(root, split)
    if problem:
        raise FileNotFoundError(problem)
    folder, labels, usage = _MANUAL_SPLITS[split]
    return KaggleFolder(root / folder, root / labels, usage=usage)


def record_index(i: int, n: int) -> int:
    """``i`` as a record key in ``[0, n)`` (negative counts from the end); ``IndexError`` outside,
    as a Sequence must (TFDS raises ValueError, which breaks iteration)."""
    i = int(i)
    if not -n <= i < n:
        raise IndexError(f"record {i} out of range for {n} records")
    return i % n


class TFDSSource(Sequence[Example]):
    """A prepared TFDS ``diabetic_retinopathy_detection`` split through ``tfds.data_source``
    (random access, array_record files; TensorFlow is not needed to read)."""

    def __init__(self, records: Any):
        self._records = records
        self._labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, i: int) -> Example:  # type: ignore[override]
        r = self._records[record_index(i, len(self))]
        image = r["image"]
        image = decode_rgb(image) if isinstance(image, bytes) else np.asarray(image, np.uint8)
        if image.ndim == 2 or image.shape[-1] == 1:
            image = np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=-1)
        name = r["name"].decode() if isinstance(r["name"], bytes) else str(r["name"])
        return Example(name, image, int(r["label"]))

    @property
    def labels(self) -> np.ndarray:
        """All labels (read once; this decodes every record, so pass them from the CSV for the
        full dataset when you have it)."""
        if self._labels is None:
            self._labels = np.asarray([int(self._records[i]["label"]) for i in range(len(self))], np.int32)
        return self._labels


def tfds_source(data_dir: str | os.PathLike | None = None, split: str = "train", *, config: str = "original",
                manual_dir: str | os.PathLike | None = None) -> TFDSSource:
    """TFDS ``diabetic_retinopathy_detection/<config>``, prepared in ``data_dir``.

    If it is not prepared yet and ``manual_dir`` is given, TFDS prepares it from the manual
    download (that step needs TensorFlow and TFDS's checksummed test labels).  Without
    ``tensorflow-datasets`` installed, :func:`kaggle_manual_dir` reads the same manual
    directory directly.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ImportError(
            "tfds_source needs tensorflow-datasets (pip install 'jaxretina[tfds]'); to read Kaggle's extracted "
            "download without it, use jaxretina.data.kaggle_manual_dir(manual_dir, split)") from None
    name = f"{TFDS_NAME}/{config}"
    kwargs = {} if data_dir is None else {"data_dir": os.fspath(Path(data_dir).expanduser())}
    builder = tfds.builder(name, file_format="array_record", **kwargs)
    if manual_dir is not None and not builder.is_prepared():
        manual = Path(manual_dir).expanduser()
        problem = _manual_dir_problem(manual, split)
        if problem:
            raise FileNotFoundError(problem)
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual)))
    try:
        records = tfds.data_source(name, split=split, download=False, **kwargs)
    except Exception as e:  # TFDS raises assorted types (NotImplementedError, AssertionError, ...)
        raise FileNotFoundError(
            f"TFDS dataset {name} split {split!r} is not prepared (in the array_record format) in "
            f"{builder.data_dir}; pass manual_dir= (Kaggle's extracted download) to prepare it, or read that "
            f"directory with jaxretina.data.kaggle_manual_dir. TFDS said: {e}") from None
    return TFDSSource(records)


class Subset(Sequence[Example]):
    """The examples of ``source`` at ``indices`` (in that order), with their ``labels``."""

    def __init__(self, source: Sequence[Example], indices: Any):
        self.source = source
        self.indices = np.asarray(indices, np.int64)
        if self.indices.ndim != 1 or (self.indices.size and (self.indices.min() < 0 or
                                                              self.indices.max() >= len(source))):
            raise ValueError(f"Subset: indices must be 1-D within [0, {len(source)})")
        self.labels = np.asarray(source.labels)[self.indices]

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, i: int) -> Example:  # type: ignore[override]
        return self.source[int(self.indices[i])]


def split(source: Sequence[Example], fraction: float = 0.8, *, seed: int = 0) -> tuple[Subset, Subset]:
    """A random, per-grade stratified split into ``(fraction, 1 − fraction)`` (seed 002: 80/20)."""
    if not 0 < fraction < 1:
        raise ValueError(f"split: fraction must be in (0, 1); found {fraction!r}")
    labels = np.asarray(source.labels)
    rng = np.random.default_rng(seed)
    first, second = [], []
    for k in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == k))
        cut = int(round(fraction * members.size))
        first.append(members[:cut])
        second.append(members[cut:])
    return Subset(source, np.sort(np.concatenate(first))), Subset(source, np.sort(np.concatenate(second)))
