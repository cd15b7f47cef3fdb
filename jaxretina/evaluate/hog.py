"""Histograms of oriented gradients of a 2-D map, and the HOG similarity of two maps — the third
similarity of Adebayo et al.'s sanity checks (2018), next to Spearman's rank correlation and SSIM:
the Pearson correlation of the two maps' HOG features.  Pure ``jax.numpy`` (batch with
``jax.vmap``, compile with ``jax.jit``), as scikit-image's ``skimage.feature.hog`` computes them:

1. optionally ``sqrt`` of the map (``transform_sqrt``, non-negative maps);
2. central differences without the ½: ``g_r[i] = a[i+1] − a[i−1]`` (0 on the first and last
   row), ``g_c`` likewise along columns; for ``(H, W, C)`` maps each pixel takes the channel of
   largest ``|g|`` (scikit-image's ``channel_axis=-1``);
3. per cell of ``pixels_per_cell`` pixels (cells tile the map from its top-left corner; a
   remainder is dropped), ``orientations`` bins over ``θ = atan2(g_r, g_c)`` in degrees mod 180,
   bin ``i`` holding ``[180 i / n, 180 (i + 1) / n)`` (edges rounded to float32, as scikit-image
   does): ``h[cell, i] = Σ |g| 1[θ ∈ bin i] / (cell pixels)``;
4. every block of ``cells_per_block`` neighbouring cells (stride one cell) normalised:
   ``L1``: ``v / (‖v‖₁ + ε)``, ``L1-sqrt``: its square root, ``L2``: ``v / √(‖v‖² + ε²)``,
   ``L2-Hys``: L2, clipped at 0.2, L2 again; ``ε = 1e-5``;
5. flattened: ``(blocks_r · blocks_c · cells_r · cells_c · orientations,)``.

Example::

    >>> a = jnp.outer(jnp.arange(32.0), jnp.ones(32))          # a vertical ramp: θ = 90°
    >>> evaluate.hog(a).shape                                  # 2×2 blocks of 3×3 cells, 9 bins
    (324,)
    >>> round(float(evaluate.hog_similarity(a, 2 * a + 1)), 6)  # the same gradients' directions
    1.0
"""

from __future__ import annotations

from typing import Any

import numpy as np
import jax
import jax.numpy as jnp

from jaxretina.evaluate.agreement import pearson
from jaxretina.evaluate.regions import check_map

__all__ = ["hog", "hog_similarity", "HOG_BLOCK_NORMS"]

HOG_BLOCK_NORMS = ("L1", "L1-sqrt", "L2", "L2-Hys")
_EPS = 1e-5


def _pair_of_ints(value, name, who):
    ok = (isinstance(value, (tuple, list)) and len(value) == 2
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in value))
    if not ok:
        raise ValueError(f"{who}: {name} must be two positive integers (rows, columns); found {value!r}")
    return int(value[0]), int(value[1])


def _gradients(a):
    """Central differences (no ½), zero on the borders: ``(g_r, g_c)`` of ``a``'s shape."""
    g_r = jnp.zeros_like(a).at[1:-1].set(a[2:] - a[:-2])
    g_c = jnp.zeros_like(a).at[:, 1:-1].set(a[:, 2:] - a[:, :-2])
    return g_r, g_c


def _normalise_block(v, method):
    if method == "L1":
        return v / (jnp.abs(v).sum() + _EPS)
    if method == "L1-sqrt":
        return jnp.sqrt(v / (jnp.abs(v).sum() + _EPS))
    v = v / jnp.sqrt((v * v).sum() + _EPS ** 2)
    if method == "L2":
        return v
    v = jnp.minimum(v, 0.2)
    return v / jnp.sqrt((v * v).sum() + _EPS ** 2)


def hog(a: Any, *, orientations: int = 9, pixels_per_cell: tuple[int, int] = (8, 8),
        cells_per_block: tuple[int, int] = (3, 3), block_norm: str = "L2-Hys",
        transform_sqrt: bool = False) -> jax.Array:
    """HOG feature vector of a ``(H, W)`` or channels-last ``(H, W, C)`` map (module docstring);
    ``(blocks_r · blocks_c · cells_per_block · orientations,)`` in ``a``'s float dtype."""
    who = "hog"
    a = check_map(a, who=who)
    if a.ndim not in (2, 3):
        raise ValueError(f"{who}: expected a 2-D map (H, W) or (H, W, C); found shape {a.shape} "
                         "(HOG is defined on images; for a volume compare slices, or use spearman / ssim)")
    if isinstance(orientations, bool) or not isinstance(orientations, (int, np.integer)) or orientations < 1:
        raise ValueError(f"{who}: orientations must be a positive integer; found {orientations!r}")
    c_r, c_c = _pair_of_ints(pixels_per_cell, "pixels_per_cell", who)
    b_r, b_c = _pair_of_ints(cells_per_block, "cells_per_block", who)
    if block_norm not in HOG_BLOCK_NORMS:
        raise ValueError(f"{who}: block_norm must be one of {HOG_BLOCK_NORMS}; found {block_norm!r}")
    n_r, n_c = a.shape[0] // c_r, a.shape[1] // c_c
    if n_r < b_r or n_c < b_c:
        raise ValueError(f"{who}: the map is too small for blocks of {b_r}×{b_c} cells of {c_r}×{c_c} pixels: "
                         f"it needs at least {b_r * c_r} rows and {b_c * c_c} columns; found {a.shape[:2]}")
    if transform_sqrt:
        a = jnp.sqrt(a)
    if a.ndim == 3:     # per pixel, the channel whose gradient is largest (the first of equals)
        g_r, g_c = jax.vmap(_gradients, in_axes=-1, out_axes=-1)(a)
        pick = jnp.argmax(jnp.hypot(g_r, g_c), axis=-1)[..., None]
        g_r, g_c = (jnp.take_along_axis(g, pick, -1)[..., 0] for g in (g_r, g_c))
    else:
        g_r, g_c = _gradients(a)
    magnitude = jnp.hypot(g_r, g_c)
    theta = jnp.remainder(jnp.rad2deg(jnp.arctan2(g_r, g_c)), 180)
    edges = jnp.asarray(np.float32(180.0 / orientations) * np.arange(orientations + 1, dtype=np.float32),
                        theta.dtype)                           # float32 edges, as scikit-image's
    inside = (theta[..., None] >= edges[:-1]) & (theta[..., None] < edges[1:])
    votes = jnp.where(inside, magnitude[..., None], jnp.zeros((), magnitude.dtype))
    cells = votes[: n_r * c_r, : n_c * c_c].reshape(n_r, c_r, n_c, c_c, orientations).sum((1, 3)) / (c_r * c_c)
    k_r, k_c = n_r - b_r + 1, n_c - b_c + 1
    blocks = jnp.stack([jnp.stack([cells[i: i + k_r, j: j + k_c] for j in range(b_c)], 2) for i in range(b_r)], 2)
    normalised = jax.vmap(jax.vmap(lambda v: _normalise_block(v, block_norm)))(blocks)   # (k_r, k_c, b_r, b_c, n)
    return normalised.reshape(-1)


def hog_similarity(a: Any, b: Any, **hog_options: Any) -> jax.Array:
    """Pearson's correlation of the HOG features of two maps of one shape (NaN when one map's
    features are constant); ``hog_options`` as :func:`hog`'s."""
    if np.shape(a) != np.shape(b):
        raise ValueError(f"hog_similarity: the two maps need one shape; found {np.shape(a)} and {np.shape(b)}")
    return pearson(hog(a, **hog_options), hog(b, **hog_options))
