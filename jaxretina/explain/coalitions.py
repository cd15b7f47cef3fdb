"""Feature masks and coalitions: the shared ground of feature ablation, Shapley values, KernelSHAP
and LIME.

A *feature mask* gives every value of the example an integer label ``0 … F−1`` (e.g. SLIC
superpixels of shape (H, W), broadcast over the channels).  A *coalition* ``z ∈ {0, 1}^F``
keeps the features with ``z_j = 1`` and replaces the others by the baseline:
``x_z = where(z[labels], x, b)``, and ``v(z) = t(x_z)`` is the value the methods compare.
:func:`coalition_values` evaluates ``v`` on a batch of coalitions, ``chunk`` at a time through
one compiled program.

Example::

    >>> f = lambda z: z.sum()
    >>> x = jnp.ones((4, 4, 3))
    >>> labels, count = feature_labels(np.arange(16).reshape(4, 4) // 4, x, who="demo")
    >>> coalition_values(f, x, jnp.zeros_like(x), labels, jnp.eye(count, dtype=bool), who="demo").tolist()
    [12.0, 12.0, 12.0, 12.0]
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np
import jax
import jax.numpy as jnp

from jaxretina.explain.core import chunked_map, split_fn
from jaxretina.explain.memory import pick_chunk

__all__ = ["feature_labels", "coalition_values", "check_coalitions", "grid_features"]


def grid_features(spatial: tuple[int, ...], cells: int) -> np.ndarray:
    """A feature mask of ``cells`` blocks per spatial axis (``cells^d`` features, numbered in
    row-major order; blocks differ in size by at most one pixel): integer labels of shape
    ``spatial``.  ``grid_features((4, 6), 2)`` has 4 features of 2 × 3 pixels."""
    spatial = tuple(int(n) for n in spatial)
    if not (isinstance(cells, (int, np.integer)) and not isinstance(cells, bool) and 1 <= cells <= min(spatial)):
        raise ValueError(f"grid_features: cells must be an integer from 1 to the shortest side {min(spatial)}; "
                         f"found {cells!r}")
    per_axis = [np.arange(n) * cells // n for n in spatial]
    return np.ravel_multi_index(np.meshgrid(*per_axis, indexing="ij"), (cells,) * len(spatial))


def feature_labels(features: Any, x: jax.Array, *, who: str) -> tuple[jax.Array, int]:
    """``features`` as integer labels of ``x``'s shape (a spatial mask broadcasts over the
    channels) and the feature count ``F = max + 1``; a clear error for anything else."""
    labels = np.asarray(features)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{who}: features must be integer labels; found dtype {labels.dtype}")
    try:
        labels = np.broadcast_to(labels if labels.ndim == x.ndim else labels[..., None], x.shape)
    except ValueError:
        raise ValueError(f"{who}: features of shape {np.shape(features)} do not broadcast to x {x.shape} "
                         "(give (H, W) labels, or one per value)") from None
    if labels.size == 0 or labels.min() < 0:
        raise ValueError(f"{who}: feature labels must be 0 … F−1; found minimum "
                         f"{int(labels.min()) if labels.size else 'none (empty mask)'}")
    return jnp.asarray(labels, jnp.int32), int(labels.max()) + 1


def check_coalitions(z: Any, count: int, *, who: str, name: str = "samples") -> jax.Array:
    """Given coalitions ``(N, F)`` of 0/1 (or booleans) as a boolean array."""
    arr = np.asarray(z)
    if arr.ndim != 2 or arr.shape[1] != count or arr.shape[0] < 1:
        raise ValueError(f"{who}: {name} must be (N, {count}) — one 0/1 row per sample over the {count} features; "
                         f"found shape {arr.shape}")
    if arr.dtype != bool and not (np.issubdtype(arr.dtype, np.number) and np.isin(arr, (0, 1)).all()):
        raise ValueError(f"{who}: {name} must hold only 0 and 1 (present / replaced)")
    return jnp.asarray(arr.astype(bool))


class _Coalition(NamedTuple):
    fn: Callable   # static half of f (core.split_fn); its data travel traced in consts

    def __call__(self, consts, present):
        data, x, base, labels = consts
        return self.fn(*data, jnp.where(present[labels], x, base))


def coalition_values(f: Callable, x: jax.Array, base: jax.Array, labels: jax.Array, present: jax.Array, *,
                     chunk: int | str | None = None, budget: float | None = None, who: str) -> jax.Array:
    """``v(z_i) = f(where(z_i[labels], x, base))`` for every row of ``present`` ``(N, F)``: ``(N,)``."""
    fn, data = split_fn(f)
    term, consts = _Coalition(fn), (data, x, base, labels)
    return chunked_map(term, consts, present, chunk=pick_chunk(term, consts, present, chunk, budget, who=who))
