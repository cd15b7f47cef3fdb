"""A sweep's inputs: a folder of images or NIfTI volumes, or a TFDS split, as numbered items.

:func:`open_inputs` lists the examples in a fixed order (sorted relative paths; TFDS record
order) and reads each one's shape cheaply (image and NIfTI headers), so that the plan can group
equal shapes before any pixel is decoded.  :meth:`Inputs.load` decodes one example, checks it
and returns it with the SHA-256 of its bytes; a bad example raises :class:`BadInput` with a
reason (unreadable, truncated, wrong channels, wrong rank, NaN or inf; any other failure to load
too), which the sweep records and skips.  Before any pixel or voxel is decoded, headers that
promise more than :data:`MAX_PIXELS` pixels (decompression bombs) or
:data:`jaxretina.data.nifti.MAX_VOXELS` voxels, image files over :data:`MAX_FILE_BYTES`, entries
that are not regular files (a FIFO would block the reader) and names that are not UTF-8 are
recorded as failed the same way.

Images come as uint8 (H, W, 3) RGB, resized to ``size`` (PIL bilinear, antialiased) when given;
RGBA loses its alpha channel, palette images are expanded; one- or two-channel images are
refused (a grayscale fundus would need an explicit conversion).  Volumes come as float32
(D, H, W, 1) scaled to [0, 1] by their minimum and maximum (as DS6 does).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from jaxretina.loading import digest

__all__ = ["BadInput", "Item", "Inputs", "open_inputs", "open_image", "IMAGE_SUFFIXES", "VOLUME_SUFFIXES", "MAX_FILE_BYTES",
           "MAX_PIXELS"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".ppm")
VOLUME_SUFFIXES = (".nii", ".nii.gz")


class BadInput(ValueError):
    """An example that cannot be used; the message is the reason recorded in the store."""


class Item(NamedTuple):
    name: str                      # relative path, or the TFDS record's name
    shape: tuple[int, ...] | None  # the model input's shape without batch axis; None if unknown
    problem: str | None            # why it cannot be used (found while listing), else None


# Limits on what a header may promise: a stranger's folder can hold a decompression bomb (a few
# kB that decode to gigabytes) or a scan far larger than any model input.  Above them an example
# is recorded as failed, before any pixel or voxel is decoded.
MAX_PIXELS = 89_478_485        # PIL's own default bomb limit (~9459²; Kaggle's DR photos are < 20 M)
MAX_FILE_BYTES = 1 << 30       # an image file's size (it is read into memory to be hashed and decoded)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_image(source):
    """``PIL.Image.open`` with the bomb check ours: PIL's warning (or error, at twice its limit)
    becomes a :class:`BadInput` with the header's size."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(source)
        except Image.DecompressionBombError as e:
            raise BadInput(f"too large: {e}") from None
    w, h = im.size
    if w * h > MAX_PIXELS:
        im.close()
        raise BadInput(f"too large: the header says {w}x{h} = {w * h} pixels, over the limit of {MAX_PIXELS} "
                       "(a decompression bomb, or a scan to downsample before the sweep)")
    return im


def _image_shape(path: Path, size: tuple[int, ...] | None) -> tuple[tuple[int, ...] | None, str | None]:
    try:
        if os.path.getsize(path) > MAX_FILE_BYTES:
            raise BadInput(f"too large: {os.path.getsize(path)} bytes, over the limit of {MAX_FILE_BYTES}")
        with open_image(path) as im:
            w, h = im.size
            problem = _channel_problem(im.mode, im.getbands())
    except BadInput as e:
        return None, str(e)
    except Exception as e:  # noqa: BLE001 - any failure of a stranger's file is recorded, not raised
        return None, f"unreadable image: {type(e).__name__}: {e}"
    if problem:
        return None, problem
    return ((*size, 3) if size else (h, w, 3)), None


def _channel_problem(mode: str, bands: Sequence[str]) -> str | None:
    if mode == "P" or len(bands) in (3, 4):
        return None
    return (f"wrong channels: expected an RGB image (3 channels); found mode {mode!r} with "
            f"{len(bands)} channel(s)")


def _decode_image(data: bytes, where: str, size: tuple[int, ...] | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with open_image(io.BytesIO(data)) as im:
            problem = _channel_problem(im.mode, im.getbands())
            if problem:
                raise BadInput(problem)
            im = im.convert("RGB")
            if size and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            return np.asarray(im, np.uint8)
    except BadInput:
        raise
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise BadInput(f"unreadable image {where}: {e}") from None
    except Exception as e:  # noqa: BLE001 - a decoder's own failure: recorded, not raised
        raise BadInput(f"unreadable image {where}: {type(e).__name__}: {e}") from None


def _volume_shape(path: Path) -> tuple[tuple[int, ...] | None, str | None]:
    import nibabel as nib

    from jaxretina.data.nifti import MAX_VOXELS

    try:
        shape = tuple(int(s) for s in nib.load(os.fspath(path)).shape)
    except Exception as e:  # nibabel raises many types for a bad header
        return None, f"unreadable NIfTI header: {e}"
    if len(shape) == 4 and shape[-1] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        return None, f"wrong rank: expected a 3D volume; found shape {shape}"
    if math.prod(shape) > MAX_VOXELS:
        return None, (f"too large: the header says {shape} ({math.prod(shape)} voxels), over the limit of "
                      f"{MAX_VOXELS}")
    return (*shape, 1), None


def _scaled_volume(path: Path) -> np.ndarray:
    from jaxretina.data.nifti import read_nifti

    try:
        a = read_nifti(path).array
    except (ValueError, FileNotFoundError) as e:
        raise BadInput(str(e)) from None
    a = a - a.min()
    top = a.max()
    return (a / top if top > 0 else a).astype(np.float32)


class Inputs:
    """Numbered examples of one dataset; ``items[i]`` is listed, :meth:`load` decodes."""

    def __init__(self, kind: str, root: str, items: list[Item], size, records: Any = None):
        self.kind, self.root, self.items, self.size, self._records = kind, root, items, size, records

    def __len__(self) -> int:
        return len(self.items)

    def load(self, i: int) -> tuple[np.ndarray, str]:
        """``(array, sha256)`` of example ``i``; raises :class:`BadInput` with the reason."""
        item = self.items[i]
        if item.problem:
            raise BadInput(item.problem)
        if self.kind == "tfds":
            image = np.asarray(self._records[i].image)
            if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
                raise BadInput(f"wrong image: expected uint8 (H, W, 3); found {image.dtype} {image.shape}")
            sha = _sha256(np.ascontiguousarray(image).tobytes())
            if self.size and image.shape[:2] != tuple(self.size):
                from PIL import Image

                image = np.asarray(Image.fromarray(image).resize((self.size[1], self.size[0]),
                                                                 Image.Resampling.BILINEAR))
            return image, sha
        path = Path(self.root) / item.name
        sha = None
        try:
            if not path.is_file():
                raise BadInput(f"{item.name} is no longer a regular file")
            if self.kind == "volumes":
                sha = digest(path)   # streamed: a volume is not read twice into memory
                array = _scaled_volume(path)
            else:
                if path.stat().st_size > MAX_FILE_BYTES:
                    raise BadInput(f"too large: {path.stat().st_size} bytes, over the limit of {MAX_FILE_BYTES}")
                data = path.read_bytes()
                sha = _sha256(data)
                array = _decode_image(data, item.name, self.size)
            if item.shape is not None and array.shape != item.shape:
                raise BadInput(f"wrong size: the header said {item.shape}, the decoded data is {array.shape}")
        except BadInput as e:
            e.sha256 = sha   # the bytes that failed, for the record
            raise
        except Exception as e:  # noqa: BLE001 - every failure to load is recorded; the sweep goes on
            bad = BadInput(f"cannot load {item.name}: {type(e).__name__}: {e}")
            bad.sha256 = sha
            raise bad from None
        return array, sha


def _name_problem(root: Path, name: str) -> tuple[str, str | None]:
    """``(name as stored, problem)``: a name that is not UTF-8 (kept with its bytes escaped) or
    an entry that is not a regular file (a FIFO would block its reader) cannot be an example."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return shown, "the file name is not valid UTF-8 (rename the file)"
    if not (root / name).is_file():
        return name, "not a regular file (a FIFO, socket, device or broken link)"
    return name, None


def _listed(root: Path, suffixes: Sequence[str]) -> list[str]:
    names = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not d.endswith(".zarr"))
        for f in filenames:
            if f.lower().endswith(tuple(suffixes)) and not f.startswith("."):
                names.append(os.path.relpath(os.path.join(dirpath, f), root))
    return sorted(names)


def _tfds_records(spec: str, split: str | None, data_dir: str | None):
    from jaxretina import data

    name = spec.split(":", 1)[1]
    if name == "drive":
        return data.drive_tfds(data_dir, split or "test")
    if name.split("/")[0] == data.TFDS_NAME:
        config = name.split("/")[1] if "/" in name else "original"
        return data.tfds_source(data_dir, split or "test", config=config)
    raise ValueError(f"sweep: unsupported TFDS dataset {name!r}; expected 'drive' or {data.TFDS_NAME!r}")


def _item(root: Path, name: str, shape_of, args) -> Item:
    shown, problem = _name_problem(root, name)
    if problem:
        return Item(shown, None, problem)
    return Item(name, *shape_of(root / name, *args))


def open_inputs(data: str, *, volumes: bool, size: tuple[int, ...] | None = None, split: str | None = None,
                tfds_dir: str | None = None) -> Inputs:
    """List ``data``: a folder (searched recursively; ``*.zarr`` folders skipped) of images —
    or, with ``volumes=True``, NIfTI volumes — or ``"tfds:drive"`` /
    ``"tfds:diabetic_retinopathy_detection"`` (``split``, prepared in ``tfds_dir``)."""
    if data.startswith("tfds:"):
        if volumes:
            raise ValueError("sweep: TFDS datasets hold images; a 3D model needs a folder of NIfTI volumes")
        records = _tfds_records(data, split, tfds_dir)
        items = []
        for i in range(len(records)):
            shape = (*size, 3) if size else tuple(np.shape(records[i].image))
            items.append(Item(str(records[i].name), shape, None))
        return Inputs("tfds", data, items, size, records)
    root = Path(data).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"sweep: data {data!r} is not a folder (nor tfds:NAME)")
    if volumes:
        if size:
            raise ValueError("sweep: size (resizing) applies to images; volumes keep their shape")
        items = [_item(root, n, _volume_shape, ()) for n in _listed(root, VOLUME_SUFFIXES)]
    else:
        items = [_item(root, n, _image_shape, (size,)) for n in _listed(root, IMAGE_SUFFIXES)]
    if not items:
        kinds = VOLUME_SUFFIXES if volumes else IMAGE_SUFFIXES
        raise FileNotFoundError(f"sweep: no {'volumes' if volumes else 'images'} ({', '.join(kinds)}) in {root}")
    return Inputs("volumes" if volumes else "images", os.fspath(root), items, size)
