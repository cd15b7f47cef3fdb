"""NIfTI volumes (``.nii``, ``.nii.gz``) through nibabel: read as ``(D, H, W, 1)`` float32 with
the voxel-to-world affine, write maps back with the same affine (so a viewer overlays them on
the scan).  Axes stay in file order (i, j, k) = (D, H, W).  NIfTI is plain data: reading never
runs code from the file.

Example::

    >>> vol = data.read_nifti("sub-01_TOF.nii.gz")
    >>> vol.array.shape, vol.affine.shape               # (D, H, W, 1), (4, 4)
    ((32, 32, 32, 1), (4, 4))
    >>> gbp = np.abs(vol.array)                          # e.g. a guided-backprop map of it
    >>> data.write_nifti("gbp.nii.gz", gbp, affine=vol.affine)
    'gbp.nii.gz'
"""

from __future__ import annotations

import math
import os
from typing import Any, NamedTuple

import numpy as np

__all__ = ["NiftiVolume", "read_nifti", "write_nifti"]


class NiftiVolume(NamedTuple):
    array: np.ndarray     # (D, H, W, 1) float32
    affine: np.ndarray    # (4, 4) voxel -> world (mm)
    zooms: tuple          # voxel sizes (mm)


MAX_VOXELS = 1 << 28  # 268 M voxels (1 GiB as float32; DS6's MRA volumes are ~50 M)


def read_nifti(path: str | os.PathLike, *, max_voxels: int = MAX_VOXELS) -> NiftiVolume:
    """Read a 3D NIfTI volume (a 4D file with one frame is accepted) as ``(D, H, W, 1)`` float32.

    A header promising more than ``max_voxels`` voxels is refused (``ValueError``) before any
    voxel is read; so are non-regular files (a FIFO would block the reader)."""
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"read_nifti: no such file {path!r}")
    if not os.path.isfile(path):
        raise ValueError(f"read_nifti: {path!r} is not a regular file (a folder, FIFO or device)")
    try:
        image = nib.load(path)
    except (ImageFileError, EOFError, OSError, ValueError) as e:
        raise ValueError(f"read_nifti: {path!r} is not a readable NIfTI volume (.nii / .nii.gz): {e}") from None
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ValueError(f"read_nifti: {path!r} is a {type(image).__name__}, expected a NIfTI-1/2 image")
    voxels = math.prod(int(s) for s in image.shape)
    if voxels > max_voxels:
        raise ValueError(f"read_nifti: {path!r}: the header promises shape {tuple(image.shape)} ({voxels} voxels), "
                         f"over the limit of {max_voxels} (max_voxels)")
    try:
        array = np.asarray(image.dataobj, dtype=np.float32)
    except (EOFError, OSError, ValueError) as e:
        raise ValueError(f"read_nifti: {path!r} is truncated or corrupt: {e}") from None
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise ValueError(f"read_nifti: expected a 3D volume; {path!r} has shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"read_nifti: {path!r} holds {int((~np.isfinite(array)).sum())} non-finite voxels")
    return NiftiVolume(array[..., None], np.asarray(image.affine, np.float64), tuple(image.header.get_zooms()[:3]))


def write_nifti(path: str | os.PathLike, array: Any, *, affine: Any = None) -> str:
    """Write ``(D, H, W)`` / ``(D, H, W, 1)`` (float32) or ``(L, D, H, W[, 1])`` (as a 4D file
    with L frames) with ``affine`` (default identity: 1 mm voxels); creates folders."""
    import nibabel as nib

    a = np.asarray(array, dtype=np.float32)
    if a.ndim >= 4 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 4:
        a = np.moveaxis(a, 0, -1)  # NIfTI keeps frames last
    elif a.ndim != 3:
        raise ValueError(f"write_nifti: expected (D, H, W[, 1]) or (L, D, H, W[, 1]); found shape {np.shape(array)}")
    affine = np.eye(4) if affine is None else np.asarray(affine, np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"write_nifti: affine must be 4x4; found {affine.shape}")
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    nib.save(nib.Nifti1Image(a, affine), path)
    return path
