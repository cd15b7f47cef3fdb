"""Agreement between two maps of the same example: two methods, two layers, or a map and the map
of a randomised model (the parameter-randomisation sanity checks).  Pure ``jax.numpy`` functions
of two maps of one shape (batch with ``jax.vmap``), any number of axes.

* :func:`pearson` — the Pearson correlation of the two maps' values (``scipy.stats.pearsonr``);
  :func:`spearman` — that of their ranks, tied values sharing their average rank
  (``scipy.stats.spearmanr``); NaN when a map is constant.
* :func:`ssim` — the mean structural similarity of Wang et al. 2004 as scikit-image's
  ``structural_similarity`` computes it by default: ``win_size``-wide uniform windows along every
  axis (sample covariances, ``K1 = 0.01``, ``K2 = 0.03``), averaged over the positions whose
  window lies inside the map; ``data_range`` defaults to the range of both maps together
  (Quantus' choice).
* :func:`top_k_overlap` — ``|top_k(a) ∩ top_k(b)| / k`` (ties by position).

Example::

    >>> a = jnp.arange(64.0).reshape(8, 8)
    >>> float(evaluate.spearman(a, a ** 3)), float(evaluate.ssim(a, a)), float(evaluate.top_k_overlap(a, -a, k=8))
    (1.0, 1.0, 0.0)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import jax
import jax.numpy as jnp

from jaxretina.evaluate.regions import check_map
from jaxretina.metrics import average_ranks

__all__ = ["pearson", "spearman", "ssim", "top_k_overlap", "SSIM_K1", "SSIM_K2"]

SSIM_K1, SSIM_K2 = 0.01, 0.03


def _pair(a, b, who):
    a, b = check_map(a, who=who), check_map(b, who=who)
    if a.shape != b.shape or a.dtype != b.dtype:
        raise ValueError(f"{who}: the two maps need one shape and dtype; found {a.shape} {a.dtype} and "
                         f"{b.shape} {b.dtype}")
    return a, b


def _pearson(u, v):
    u, v = u - u.mean(), v - v.mean()
    return (u * v).sum() / jnp.sqrt((u * u).sum() * (v * v).sum())


def pearson(a: Any, b: Any) -> jax.Array:
    """Pearson's correlation of the two maps' values."""
    a, b = _pair(a, b, "pearson")
    return _pearson(a.reshape(-1), b.reshape(-1))


def spearman(a: Any, b: Any) -> jax.Array:
    """Spearman's rank correlation of the two maps' values."""
    a, b = _pair(a, b, "spearman")
    return _pearson(average_ranks(a.reshape(-1)), average_ranks(b.reshape(-1)))


def _window_means(x, size):
    """The mean over every ``size``-wide window along every axis ('valid' positions only)."""
    total = jax.lax.reduce_window(x, jnp.zeros((), x.dtype), jax.lax.add, (size,) * x.ndim, (1,) * x.ndim, "VALID")
    return total / size ** x.ndim


def ssim(a: Any, b: Any, *, data_range: float | None = None, win_size: int = 7) -> jax.Array:
    """Mean structural similarity of the two maps (module docstring); every side at least
    ``win_size`` (odd)."""
    who = "ssim"
    a, b = _pair(a, b, who)
    if isinstance(win_size, bool) or not isinstance(win_size, (int, np.integer)) or win_size < 3 or win_size % 2 == 0:
        raise ValueError(f"{who}: win_size must be an odd integer ≥ 3; found {win_size!r}")
    if min(a.shape) < win_size:
        raise ValueError(f"{who}: every side of the maps must be at least win_size = {win_size}; found {a.shape}")
    r = (jnp.maximum(a.max(), b.max()) - jnp.minimum(a.min(), b.min())) if data_range is None else data_range
    count = win_size ** a.ndim
    cov_norm = count / (count - 1)
    ua, ub = _window_means(a, win_size), _window_means(b, win_size)
    va = cov_norm * (_window_means(a * a, win_size) - ua * ua)
    vb = cov_norm * (_window_means(b * b, win_size) - ub * ub)
    vab = cov_norm * (_window_means(a * b, win_size) - ua * ub)
    c1, c2 = (SSIM_K1 * r) ** 2, (SSIM_K2 * r) ** 2
    s = (2 * ua * ub + c1) * (2 * vab + c2) / ((ua ** 2 + ub ** 2 + c1) * (va + vb + c2))
    return s.mean()


def top_k_overlap(a: Any, b: Any, *, k: int) -> jax.Array:
    """The fraction of the ``k`` highest-valued positions of ``a`` that are among those of ``b``."""
    a, b = _pair(a, b, "top_k_overlap")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= a.size:
        raise ValueError(f"top_k_overlap: k must be an integer in [1, {a.size}] (the map's size); found {k!r}")
    top_a = jnp.zeros(a.size, bool).at[jnp.argsort(-a.reshape(-1), stable=True)[:k]].set(True)
    top_b = jnp.zeros(b.size, bool).at[jnp.argsort(-b.reshape(-1), stable=True)[:k]].set(True)
    return (top_a & top_b).sum(dtype=a.dtype) / k
