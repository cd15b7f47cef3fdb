"""How coarse a Grad-CAM is next to the lesions it should find (seed 002, §3).

DenseNet121's last dense block is 7×7 at 224×224: one CAM cell stands for a 32×32-pixel patch,
2 % of the image, while a microaneurysm covers a few pixels.  :func:`cam_coverage` puts the
numbers side by side for one image and its lesion mask, and measures how much of the CAM's
(positive) mass falls on the lesions.  Host-side reporting (numpy/SciPy), not a hot path.

Example::

    >>> model, variables, x = grader, grader_variables, z          # a small DenseNet, a 64x64 image
    >>> cams = explain.grad_cam(model, variables, x, targets.class_logit(4), layers="denseblock2", resize=False)
    >>> mask = np.zeros((64, 64), bool); mask[20:30, 30:44] = True  # a lesion
    >>> report = explain.cam_coverage(x.shape[:2], cams["denseblock2"], lesion_mask=mask)
    >>> round(float(report.cell_fraction), 4)                   # one cell of the 8x8 map: 1/64 of the image
    0.0156
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = ["CamCoverage", "cam_coverage"]


class CamCoverage(NamedTuple):
    """``cell_shape``: input pixels per CAM cell (rows, cols); ``cell_fraction``: one cell's share
    of the image; with a mask: ``lesion_pixels``, ``lesion_fraction``, ``lesions`` (8-connected
    components), ``lesion_areas`` (pixels, largest first), ``median_lesion_over_cell`` (median
    component area / cell area), ``cells_touched`` (cells holding any lesion pixel) and, with a CAM,
    ``cam_mass_in_lesions`` (share of the ReLU'd, bilinearly upsampled map on lesion pixels; the
    share expected by chance is ``lesion_fraction``) and ``peak_in_lesion``."""

    cell_shape: tuple[float, float]
    cell_fraction: float
    lesion_pixels: int | None = None
    lesion_fraction: float | None = None
    lesions: int | None = None
    lesion_areas: tuple[int, ...] | None = None
    median_lesion_over_cell: float | None = None
    cells_touched: int | None = None
    cam_mass_in_lesions: float | None = None
    peak_in_lesion: bool | None = None


def _upsample(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import jax
    import jax.numpy as jnp

    return np.asarray(jax.image.resize(jnp.asarray(cam, jnp.float32), shape, method="linear", antialias=False))


def cam_coverage(image_shape: tuple[int, ...], cam: Any, *, lesion_mask: Any = None) -> CamCoverage:
    """Compare one CAM cell with the image and (optionally) a lesion mask of the image's size.

    Args:
      image_shape: (H, W[, C]) of the explained input.
      cam: the CAM at its own resolution (h, w) — or just its shape as a tuple ``(h, w)``.
      lesion_mask: optional boolean (H, W).
    """
    from scipy import ndimage

    h_img, w_img = (int(v) for v in image_shape[:2])
    cam_arr = None if isinstance(cam, tuple) else np.asarray(cam, np.float64)
    shape = cam if isinstance(cam, tuple) else cam_arr.shape
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"cam_coverage: expected a 2-D CAM (h, w) or its shape; found shape {tuple(shape)}")
    h, w = (int(v) for v in shape)
    cell = (h_img / h, w_img / w)
    report = CamCoverage(cell, 1.0 / (h * w))
    if lesion_mask is None:
        return report
    mask = np.asarray(lesion_mask).astype(bool)
    if mask.shape != (h_img, w_img):
        raise ValueError(f"cam_coverage: lesion_mask must have the image's shape {(h_img, w_img)}; found {mask.shape}")
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    areas = np.sort(np.bincount(labels.ravel())[1:])[::-1] if count else np.zeros(0, int)
    rows, cols = np.nonzero(mask)
    touched = len(set(zip((rows * h // h_img).tolist(), (cols * w // w_img).tolist())))
    report = report._replace(
        lesion_pixels=int(mask.sum()), lesion_fraction=float(mask.mean()), lesions=int(count),
        lesion_areas=tuple(int(a) for a in areas),
        median_lesion_over_cell=float(np.median(areas) / (cell[0] * cell[1])) if count else 0.0,
        cells_touched=touched)
    if cam_arr is None:
        return report
    up = np.maximum(_upsample(cam_arr, (h_img, w_img)), 0)
    total = up.sum()
    return report._replace(cam_mass_in_lesions=float(up[mask].sum() / total) if total > 0 else 0.0,
                           peak_in_lesion=bool(mask.ravel()[int(up.argmax())]) if total > 0 else False)
