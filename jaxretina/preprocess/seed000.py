"""Seed 000's DRIVE preprocessing (AlGhamdi, "Interpretability on DRIU"), step by step.

The seed's five steps, each a function here, and the whole chain as :func:`seed000_input`:

1. :func:`green_channel` — the G channel (best vessel/background contrast), 0..255 float;
2. Gaussian noise filter, ``σ = 1`` truncated at radius 2 (:func:`~jaxretina.preprocess.gaussian_blur`
   with ``truncate = 2``; mirrored borders);
3. :func:`apply_fov_mask` — ``I_ROI = I_filter · I_mask`` (DRIVE's field-of-view mask);
4. :func:`minmax_invert` — ``I ← (I − min I) / (max I − min I)``, then ``I ← 1 − I`` (vessels bright);
5. :func:`illumination_equalize` — ``I_eq = I + M − mean_w(I)``, ``mean_w`` the mean over a
   ``w × w`` window (:func:`box_mean`) and ``M`` the expected mean: 128 on the 8-bit scale,
   ``128/255`` on the unit scale used after step 4.

What the seed leaves open, and the choices made here (all parameters):

* the window size ``w`` — 41 by default: the 40-pixel window of Hoover & Goldbaum's
  illumination equalisation (IEEE TMI 2003), where this formula comes from, made odd so that
  the window is centred; borders are mirrored;
* the seed's equation writes ``I_{W,max}`` while its text defines ``I_{w-mean}``; the text (a
  window *mean*) is what Hoover & Goldbaum use and what is implemented;
* min and max in step 4 are over the whole image (the masked-out border is 0 there, so the
  minimum is usually 0); after inversion the border is 1, as in the seed's formulas;
* how the one-channel result enters DRIU's three-channel Caffe input is not stated:
  :func:`seed000_driu_input` puts ``255 · I_eq`` in all three channels and subtracts DRIU's
  Caffe mean (:func:`~jaxretina.preprocess.driu_caffe_input`), the preprocessing the
  published weights were trained with.

Shapes: ``rgb`` (H, W, 3) or (N, H, W, 3), uint8 or float on 0..255; ``mask`` (H, W) or
(N, H, W) (bool, 0/1 or 0/255; a trailing axis of 1 is accepted).  Results are float32
(…, H, W, 1).  Every function is jittable and batched; one compile per image shape.

Example::

    >>> src = data.drive_folder("~/DRIVE", "test")
    >>> ex = src[0]                                               # DRIVE: 584 x 565
    >>> gray = preprocess.seed000_input(ex.image, ex.mask)        # (H, W, 1), unit scale
    >>> x = preprocess.seed000_driu_input(ex.image, ex.mask)      # (H, W, 3) DRIU input
    >>> gray.shape[-1], x.shape[-1], x.shape[:2] == ex.image.shape[:2]
    (1, 3, True)
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxretina.preprocess.common import check_rgb, driu_caffe_input, gaussian_blur

__all__ = [
    "SEED000_WINDOW", "SEED000_EXPECTED_MEAN", "green_channel", "apply_fov_mask", "minmax_invert", "box_mean",
    "illumination_equalize", "seed000_input", "seed000_driu_input",
]

SEED000_WINDOW = 41
SEED000_EXPECTED_MEAN = 128.0 / 255.0  # M = 128 on the 8-bit scale, on the unit scale of step 4


def _check_gray(image: Any, who: str) -> jax.Array:
    image = jnp.asarray(image)
    if image.ndim not in (3, 4) or image.shape[-1] != 1:
        raise ValueError(f"{who}: expected a one-channel image (H, W, 1) or batch (N, H, W, 1); found shape "
                         f"{image.shape}")
    if not jnp.issubdtype(image.dtype, jnp.floating):
        raise TypeError(f"{who}: expected a float image; found dtype {image.dtype}")
    return image


def green_channel(rgb: Any) -> jax.Array:
    """Step 1: the G channel of RGB pixels as float32 on 0..255, shape (…, H, W, 1)."""
    image = check_rgb(rgb, "green_channel")
    return image[..., 1:2].astype(jnp.float32)


def _fov(mask: Any, like: jax.Array, who: str) -> jax.Array:
    mask = jnp.asarray(mask)
    if mask.ndim == like.ndim and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.shape != like.shape[:-1]:
        raise ValueError(f"{who}: the field-of-view mask must match the image's (…, H, W) = {like.shape[:-1]}; "
                         f"found shape {mask.shape}")
    inside = mask if mask.dtype == jnp.bool_ else mask > 0
    return inside[..., None]


def apply_fov_mask(image: Any, mask: Any) -> jax.Array:
    """Step 3: ``I · mask`` — pixels outside the field of view set to 0 (mask > 0 is inside)."""
    image = _check_gray(image, "apply_fov_mask")
    return jnp.where(_fov(mask, image, "apply_fov_mask"), image, jnp.zeros((), image.dtype))


def minmax_invert(image: Any) -> jax.Array:
    """Step 4: ``1 − (I − min I) / (max I − min I)`` per image (a constant image gives 1)."""
    image = _check_gray(image, "minmax_invert")
    axes = (-3, -2, -1)
    lo, hi = image.min(axis=axes, keepdims=True), image.max(axis=axes, keepdims=True)
    span = hi - lo
    unit = jnp.where(span > 0, (image - lo) / jnp.where(span > 0, span, 1), 0)
    return 1 - unit


def _mirror_indices(n: int, r: int) -> np.ndarray:
    # positions -r … n+r-1 reflected about the end pixels without repeating them (any r)
    period = 2 * (n - 1)
    idx = np.arange(-r, n + r) % period
    return np.where(idx > n - 1, period - idx, idx)


def box_mean(image: Any, window: int) -> jax.Array:
    """Mean over the ``window × window`` square centred on each pixel, mirrored borders (SciPy's
    ``uniform_filter(mode="mirror")``).  Separable running sums: O(1) work per pixel whatever
    the window.  ``window``: an odd int ≥ 1 (static); (…, H, W, C) float in, same shape out."""
    image = jnp.asarray(image)
    if not (isinstance(window, int) and window >= 1 and window % 2 == 1):
        raise ValueError(f"box_mean: window must be an odd int >= 1 (a centred square); found {window!r}")
    if image.ndim not in (3, 4) or not jnp.issubdtype(image.dtype, jnp.floating):
        raise ValueError(f"box_mean: expected a float (H, W, C) or (N, H, W, C) image; found shape {image.shape}, "
                         f"dtype {image.dtype}")
    out = image
    for axis in (image.ndim - 3, image.ndim - 2):
        n, r = image.shape[axis], window // 2
        if n == 1 or r == 0:
            continue
        padded = jnp.take(out, _mirror_indices(n, r), axis=axis)
        zero = jnp.zeros_like(jax.lax.slice_in_dim(padded, 0, 1, axis=axis))
        csum = jnp.concatenate([zero, jnp.cumsum(padded, axis=axis)], axis=axis)
        out = (jax.lax.slice_in_dim(csum, window, window + n, axis=axis)
               - jax.lax.slice_in_dim(csum, 0, n, axis=axis)) / window
    return out


def illumination_equalize(image: Any, *, window: int = SEED000_WINDOW,
                          expected_mean: float = SEED000_EXPECTED_MEAN) -> jax.Array:
    """Step 5: ``I + M − mean_w(I)`` with ``M = expected_mean`` and ``mean_w`` = :func:`box_mean`."""
    image = _check_gray(image, "illumination_equalize")
    return image + expected_mean - box_mean(image, window)


_OPTIONS = ("sigma", "radius", "window", "expected_mean")


@functools.partial(jax.jit, static_argnames=_OPTIONS)
def seed000_input(rgb: Any, mask: Any, *, sigma: float = 1.0, radius: int = 2, window: int = SEED000_WINDOW,
                  expected_mean: float = SEED000_EXPECTED_MEAN) -> jax.Array:
    """Steps 1–5 in one function: RGB + field-of-view mask -> equalised gray, float32 (…, H, W, 1).

    Jitted: one compiled program per (shapes, options); the options are static.

    ``radius`` truncates the Gaussian of step 2 (the seed's ``r = 2``); ``sigma`` its width.

    Example::

        >>> images, _, masks = data.drive_folder("~/DRIVE", "test").arrays()
        >>> gray = jax.jit(seed000_input)(images, masks)          # (N, H, W, 1); DRIVE: (20, 584, 565, 1)
        >>> gray.shape
        (2, 37, 35, 1)
    """
    if not (isinstance(radius, int) and radius >= 1):
        raise ValueError(f"seed000_input: radius must be a positive int; found {radius!r}")
    g = green_channel(rgb)
    g = gaussian_blur(g, sigma, truncate=(radius + 0.25) / sigma)  # int(truncate·σ + ½) == radius
    g = apply_fov_mask(g, mask)
    g = minmax_invert(g)
    return illumination_equalize(g, window=window, expected_mean=expected_mean)


@functools.partial(jax.jit, static_argnames=_OPTIONS)
def seed000_driu_input(rgb: Any, mask: Any, **options: Any) -> jax.Array:
    """:func:`seed000_input` as DRIU's Caffe input: ``255 · I_eq`` in the three channels, minus
    DRIU's Caffe mean — float32 (…, H, W, 3) for :class:`jaxretina.models.DRIU` (``normalization=None``)."""
    gray = seed000_input(rgb, mask, **options)
    return driu_caffe_input(jnp.repeat(255.0 * gray, 3, axis=-1))
