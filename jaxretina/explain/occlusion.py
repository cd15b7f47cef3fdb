"""Occlusion and feature ablation: the target's drop when part of the input is replaced, every
replaced input of one example batched through one compiled program.

* :func:`occlusion` (Zeiler & Fergus 2014; Captum's ``Occlusion``): a window of shape ``window``
  slides with ``strides`` over the example (its last window may stick out and is cut at the
  border, as Captum's); each position ``i`` replaces the covered values by the baseline,
  ``δ_i = t(x) − t(x with window i replaced)``, and every value gets the mean ``δ`` of the
  windows covering it: ``Σ_i δ_i 1_i / Σ_i 1_i``.
* :func:`feature_ablation` (Captum's ``FeatureAblation`` with a feature mask): the values of
  each feature ``j`` (an integer label per value, e.g. SLIC superpixels broadcast over the
  channels) are replaced together, and each gets ``δ_j = t(x) − t(x with feature j replaced)``.

``f`` is a function of one example to a scalar (:func:`~jaxretina.explain.model_fn`), the
baseline a number or an array of ``x``'s shape (e.g. a blurred copy of ``x``).  The replaced
inputs run ``chunk`` at a time (``budget=`` bytes picks the largest chunk that fits).  Sums
over windows are separable: with ``S_d`` the (positions × windows) cover matrix of axis ``d``,
``Σ_i δ_i 1_i`` is the window grid of ``δ`` multiplied by every ``S_d``.

Example::

    >>> f = explain.model_fn(grader, grader_variables, targets.class_logit(3))
    >>> a = explain.occlusion(f, z, window=(16, 16), strides=(16, 16), baseline=0.0)   # 16 windows
    >>> a.shape == z.shape
    True

Superpixels as features (scikit-image's SLIC on the 0..255 RGB image; labels 0 … F−1 of shape
(H, W) broadcast over the channels)::

    >>> from skimage.segmentation import slic
    >>> labels = slic(np.asarray(z) / 255.0, n_segments=12, compactness=10.0, start_label=0, channel_axis=-1)
    >>> b = explain.feature_ablation(f, z, labels, baseline=0.0)
    >>> bool((b[labels == labels[0, 0]] == b[0, 0, 0]).all())   # one value per superpixel
    True
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import jax
import jax.numpy as jnp

from jaxretina.explain.coalitions import feature_labels
from jaxretina.explain.core import along_axes, as_baseline, box_mask, check_input, chunked_map, split_fn
from jaxretina.explain.memory import pick_chunk

__all__ = ["occlusion", "feature_ablation", "occlusion_windows"]


def occlusion_windows(shape: Sequence[int], window: Sequence[int], strides: Sequence[int]) -> tuple[int, ...]:
    """The number of window positions per axis: ``ceil((n − k) / s) + 1`` (Captum's)."""
    return tuple(math.ceil((n - k) / s) + 1 for n, k, s in zip(shape, window, strides))


def _full(spec: int | Sequence[int], x_shape: tuple, name: str, who: str) -> tuple[int, ...]:
    """A window or stride over every axis of ``x``: a number for every axis, or one per axis,
    or one per spatial axis (the channel axis then whole for a window, 1 for strides)."""
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        spec = (int(spec),) * (len(x_shape) - 1)
    spec = tuple(spec)
    if len(spec) == len(x_shape) - 1:
        spec = (*spec, x_shape[-1] if name == "window" else 1)
    if len(spec) != len(x_shape) or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1
                                            for v in spec):
        raise ValueError(f"{who}: {name} must be positive integers, one per axis of x {x_shape} (or per spatial "
                         f"axis); found {spec!r}")
    return tuple(int(v) for v in spec)


def _cover(n: int, k: int, s: int, count: int) -> np.ndarray:
    """(n, count): 1 where window ``j`` of axis length ``n`` covers position ``p``."""
    p, j = np.arange(n)[:, None], np.arange(count)[None, :]
    return ((p >= j * s) & (p < j * s + k)).astype(np.float64)


class _Occluded(NamedTuple):
    fn: Callable   # static half of f (core.split_fn); its data travel traced in consts
    window: tuple
    strides: tuple
    grid: tuple

    def __call__(self, consts, index):
        """``f`` with window ``index`` occluded; index −1 occludes nothing (the reference score)."""
        data, x, base = consts
        starts = [pos.astype(jnp.int32) * s for pos, s in zip(jnp.unravel_index(index, self.grid), self.strides)]
        mask = (index >= 0) & box_mask(x.shape, starts, self.window)
        return self.fn(*data, jnp.where(mask, base, x))


class _Ablated(NamedTuple):
    fn: Callable

    def __call__(self, consts, j):
        """``f`` with feature ``j`` replaced; j −1 replaces nothing (the reference score)."""
        data, x, base, labels = consts
        return self.fn(*data, jnp.where(labels == j, base, x))


def occlusion(f: Callable, x: Any, *, window: int | Sequence[int], strides: int | Sequence[int] = 1,
              baseline: Any = 0.0, chunk: int | str | None = None, budget: float | None = None) -> jax.Array:
    """Occlusion attribution of ``f`` at one example ``x``: shape of ``x``.

    ``window`` and ``strides``: one number (every spatial axis; the window spans the
    channels, the stride 1 across them), one per spatial axis, or one per axis of ``x``.
    """
    who = "occlusion"
    x = check_input(x, who=who)
    window, strides = _full(window, x.shape, "window", who), _full(strides, x.shape, "strides", who)
    for n, k, s in zip(x.shape, window, strides):
        if k > n or (s > k and k < n):
            raise ValueError(f"{who}: window {window} must fit x {x.shape} and strides {strides} may not exceed "
                             "the window where it does not cover the whole axis (values would be skipped)")
    grid = occlusion_windows(x.shape, window, strides)
    base = as_baseline(baseline, x, who=who)
    fn, data = split_fn(f)
    term, consts, ids = _Occluded(fn, window, strides, grid), (data, x, base), jnp.arange(-1, math.prod(grid))
    scores = chunked_map(term, consts, ids, chunk=pick_chunk(term, consts, ids, chunk, budget, who=who))
    delta = (scores[0] - scores[1:]).reshape(grid)
    covers = [_cover(n, k, s, c) for n, k, s, c in zip(x.shape, window, strides, grid)]
    count = functools.reduce(np.multiply.outer, [c.sum(axis=1) for c in covers])   # windows over each value
    return along_axes(delta, covers) / jnp.asarray(count, x.dtype)


def feature_ablation(f: Callable, x: Any, features: Any, *, baseline: Any = 0.0, chunk: int | str | None = None,
                     budget: float | None = None) -> jax.Array:
    """Feature-ablation attribution of ``f`` at one example ``x`` over ``features``: integer
    labels ``0 … F−1`` of ``x``'s shape or broadcasting to it (e.g. (H, W) superpixels);
    every value of feature ``j`` gets ``t(x) − t(x with feature j replaced)``.  Shape of ``x``."""
    who = "feature_ablation"
    x = check_input(x, who=who)
    labels, count = feature_labels(features, x, who=who)
    base = as_baseline(baseline, x, who=who)
    fn, data = split_fn(f)
    term, consts, ids = _Ablated(fn), (data, x, base, labels), jnp.arange(-1, count, dtype=labels.dtype)
    scores = chunked_map(term, consts, ids, chunk=pick_chunk(term, consts, ids, chunk, budget, who=who))
    return jnp.take(scores[0] - scores[1:], labels).astype(x.dtype)
