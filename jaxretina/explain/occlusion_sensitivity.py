"""Occlusion sensitivity as MONAI defines it (``monai.visualize.OcclusionSensitivity``): the
target's value with a box occluded, blended over the boxes covering each voxel — 2-D and 3-D,
every occluded input batched through one compiled program.

**Boxes.**  ``mask_size`` per spatial axis, moved by ``s = max(⌊m (1 − overlap)⌋, 1)`` (``m``
itself where the box spans the axis); ``⌈(n − m)/s⌉ + 1`` positions per axis, the last moved
back to end at the border (MONAI's ``dense_patch_slices``: boxes are never cut).

**Occlusion** ``mode``: a number (the box is set to it), ``"mean_img"`` (the input's mean),
``"mean_patch"`` (the box's own mean over its voxels and channels), or ``"gaussian"``: the box is
multiplied by ``1 − g`` rescaled to [0, 1], ``g`` MONAI's erf-discretised Gaussian of
σ = m/4 per axis centred on voxel ``m // 2`` — 0 at the centre, 1 at the far edges.

**Blending.**  With ``v_w`` the target at box ``w`` occluded and ``I`` the box's importance
(MONAI's ``compute_importance_map``: 1, or for ``"gaussian"`` the product of
``exp(−u²/(2 (m/8)²))`` over the axes, ``u`` from the box's centre, floored at
``max(min I, 10⁻³)``), each voxel gets ``Σ_w I_w v_w / Σ_w I_w`` over the boxes covering it.
Lower values mark voxels whose occlusion lowers the target.  The sums are one scatter-add of
``I v_w`` per box on the device.

Example::

    >>> f = explain.model_fn(unet, unet_variables, targets.segmentation_sum())
    >>> s = explain.occlusion_sensitivity(f, volume[:16, :16, :16], mask_size=8, overlap=0.5)   # 27 boxes
    >>> s.shape
    (16, 16, 16)
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import jax
from scipy.special import erf
import jax.numpy as jnp

from jaxretina.explain.core import box_mask, check_input, chunked_map, split_fn
from jaxretina.explain.memory import pick_chunk

__all__ = ["occlusion_sensitivity", "box_starts", "MONAI_MODES"]

MONAI_MODES = ("gaussian", "mean_img", "mean_patch")


def box_starts(n: int, m: int, overlap: float) -> np.ndarray:
    """The box starts along an axis of length ``n`` (MONAI's ``_get_scan_interval`` and
    ``dense_patch_slices``)."""
    step = m if m == n else max(int(m * (1 - overlap)), 1)
    count = next((d + 1 for d in range(math.ceil(n / step)) if d * step + m >= n), 1)
    starts = np.arange(count) * step
    return starts - np.maximum(starts + m - n, 0)


def _erf_gaussian(m: int) -> np.ndarray:
    """One axis' factor of ``g``: MONAI's erf kernel of σ = m/4 at the offsets of the box from its
    centre voxel ``m // 2`` (float32, as MONAI computes it)."""
    sigma = np.float32(0.25 * m)
    tail = int(max(float(sigma) * 4.0, 0.5) + 0.5)
    offset = (np.arange(m) - m // 2).astype(np.float32)
    t = np.float32(0.70710678) / sigma
    k = (0.5 * (erf(t * (offset + np.float32(0.5))) - erf(t * (offset - np.float32(0.5))))).astype(np.float32)
    return np.where(np.abs(offset) <= tail, np.maximum(k, 0), 0).astype(np.float32)


def _gaussian_multiplier(mask: tuple[int, ...]) -> np.ndarray:
    g = functools.reduce(np.multiply.outer, [_erf_gaussian(m) for m in mask])
    neg = -g
    return ((neg - neg.min()) / (neg.max() - neg.min())).astype(np.float32)   # MONAI's ScaleIntensity


def _importance(mask: tuple[int, ...], gaussian: bool) -> np.ndarray:
    if not gaussian:
        return np.ones(mask, np.float32)
    axes = []
    for m in mask:
        u = np.arange(-(m - 1) / 2.0, (m - 1) / 2.0 + 1, dtype=np.float32)
        axes.append(np.exp(u ** 2 / np.float32(-2 * (m * 0.125) ** 2)).astype(np.float32))
    imp = functools.reduce(np.multiply.outer, axes).astype(np.float32)
    return np.maximum(imp, max(float(imp.min()), 1e-3)).astype(np.float32)


class _Boxed(NamedTuple):
    fn: Callable   # static half of f (core.split_fn); its data travel traced in consts
    mask: tuple
    mode: str   # "value", "mean_patch" or "multiply"

    def __call__(self, consts, start):
        data, x, fill, mul = consts
        if self.mode == "multiply":   # the box times the multiplier placed at its start
            local = jax.lax.dynamic_update_slice(jnp.ones(x.shape[:-1], x.dtype), mul, start)
            return self.fn(*data, x * local[..., None])
        inside = box_mask(x.shape, list(start), self.mask)
        if self.mode == "mean_patch":
            fill = jnp.where(inside, x, 0).sum() / (math.prod(self.mask) * x.shape[-1])
        return self.fn(*data, jnp.where(inside, fill, x))


def occlusion_sensitivity(f: Callable, x: Any, *, mask_size: int | Sequence[int] = 16, overlap: float = 0.6,
                          mode: str | float = "gaussian", chunk: int | str | None = 16,
                          budget: float | None = None) -> jax.Array:
    """MONAI's occlusion sensitivity of ``f`` at one example ``x`` (spatial…, C): the input's
    spatial shape (see the module docstring; defaults as MONAI's).  ``chunk`` occluded inputs
    per call of one compiled program (MONAI's ``n_batch``), or as many as fit ``budget`` bytes."""
    who = "occlusion_sensitivity"
    x = check_input(x, who=who)
    spatial = x.shape[:-1]
    mask = (mask_size,) * len(spatial) if isinstance(mask_size, (int, np.integer)) else tuple(mask_size)
    if len(mask) != len(spatial) or not all(isinstance(m, (int, np.integer)) and 1 <= m <= n
                                            for m, n in zip(mask, spatial)):
        raise ValueError(f"{who}: mask_size must be positive integers no larger than the input, one per spatial "
                         f"axis of {spatial}; found {mask_size!r}")
    mask = tuple(int(m) for m in mask)
    if not (isinstance(overlap, (int, float)) and 0 <= overlap < 1):
        raise ValueError(f"{who}: overlap must be in [0, 1); found {overlap!r}")
    is_number = isinstance(mode, (int, float)) and not isinstance(mode, bool)
    if not (is_number or (isinstance(mode, str) and mode in MONAI_MODES)):
        raise ValueError(f"{who}: mode must be a number or one of {MONAI_MODES}; found {mode!r}")
    mul = jnp.ones(mask, x.dtype)
    if mode == "gaussian":
        kind, fill, mul = "multiply", jnp.zeros((), x.dtype), jnp.asarray(_gaussian_multiplier(mask), x.dtype)
    elif mode == "mean_patch":
        kind, fill = "mean_patch", jnp.zeros((), x.dtype)
    else:
        kind, fill = "value", (x.mean() if mode == "mean_img" else jnp.asarray(mode, x.dtype))
    per_axis = [box_starts(n, m, overlap) for n, m in zip(spatial, mask)]
    starts = np.asarray(list(itertools.product(*per_axis)), np.int32)          # (boxes, d), row-major
    fn, data = split_fn(f)
    term, consts, xs = _Boxed(fn, mask, kind), (data, x, fill, mul), jnp.asarray(starts)
    values = chunked_map(term, consts, xs, chunk=pick_chunk(term, consts, xs, chunk, budget, who=who))
    importance = _importance(mask, mode == "gaussian")
    flat = _box_indices(spatial, mask, starts)                                 # (boxes, m^d)
    size = math.prod(spatial)
    weights = jnp.asarray(importance.reshape(-1), x.dtype)
    total = jnp.zeros(size, x.dtype).at[jnp.asarray(flat)].add(values[:, None] * weights[None, :])
    count = np.zeros(size, np.float64)
    np.add.at(count, flat, np.broadcast_to(importance.reshape(-1).astype(np.float64), flat.shape))
    return (total / jnp.asarray(count, x.dtype)).reshape(spatial)


def _box_indices(spatial: tuple, mask: tuple, starts: np.ndarray) -> np.ndarray:
    """Flat indices of every voxel of every box: (boxes, prod(mask))."""
    local = np.stack(np.meshgrid(*[np.arange(m) for m in mask], indexing="ij"), -1).reshape(-1, len(mask))
    return np.ravel_multi_index(tuple((starts[:, None, :] + local[None]).transpose(2, 0, 1)), spatial).astype(np.int32)
