"""Complexity: how concentrated an attribution map is (a few strong positions read more easily
than many weak ones).  One example per call (batch with ``jax.vmap``), any number of axes;
values are taken as magnitudes ``|a|``; positions outside ``fov`` (optional) do not count.

With ``x_i = |a_i|`` over the ``n`` positions in the field of view:

* :func:`sparseness` — the Gini index of ``x`` (Chalasani et al. 2020): with ``x`` sorted
  ascending, ``Σ_i (2i − n − 1) x_(i) / (n Σ_i x_i)``; 0 for a uniform map, ``1 − 1/n`` for a
  single position.  ``eps`` is added to every value first (Quantus adds
  :data:`QUANTUS_SPARSENESS_EPS`; 0, the default, is the published formula, NaN for an all-zero
  map).
* :func:`entropy` — ``−Σ p_i log p_i`` of ``p = x / Σ x`` (Bhatt et al. 2020's complexity), with
  ``0 log 0 = 0``: 0 for a single position, ``log n`` for a uniform map.  (Quantus' Complexity
  adds 1e-12 inside the logarithm: a difference below ``n · 1e-12``.)
* :func:`effective_complexity` — the number of positions with ``x_i > eps`` (Nguyen & Martínez
  2020).
* :func:`discrete_entropy` — the entropy (nats) of the histogram of the signed values ``a_i``
  in ``bins`` equal bins over their range (NumPy's bins; Quantus' ``discrete_entropy``, the
  complexity efficient MPRT compares).

Example::

    >>> a = jnp.zeros((4, 4)).at[0, 0].set(3.0)
    >>> float(evaluate.sparseness(a)), float(evaluate.entropy(a)), int(evaluate.effective_complexity(a))
    (0.9375, 0.0, 1)
    >>> float(evaluate.entropy(jnp.ones((4, 4))))   # log 16
    2.77258...
"""

from __future__ import annotations

from typing import Any

import numpy as np
import jax
import jax.numpy as jnp

from jaxretina.evaluate.regions import check_map, check_region
from jaxretina.metrics import histogram

__all__ = ["sparseness", "entropy", "effective_complexity", "discrete_entropy", "QUANTUS_SPARSENESS_EPS"]

QUANTUS_SPARSENESS_EPS = 1e-7   # what Quantus' Sparseness adds to every |a_i|


def _magnitudes(a, fov, who):
    a = check_map(a, who=who)
    view = jnp.ones(a.shape, bool) if fov is None else check_region(fov, a.shape, who=who, name="fov")
    return jnp.abs(a).reshape(-1), view.reshape(-1)


def sparseness(a: Any, *, fov: Any = None, eps: float = 0.0) -> jax.Array:
    """The Gini index of ``|a| + eps`` over the field of view (module docstring)."""
    x, v = _magnitudes(a, fov, "sparseness")
    n = v.sum(dtype=x.dtype)
    ordered = jnp.sort(jnp.where(v, x + eps, -1))                # positions outside the view first (−1)
    rank = jnp.arange(1, x.size + 1, dtype=x.dtype) - (x.size - n)   # 1 … n over the positions inside
    inside = ordered >= 0
    total = jnp.where(inside, ordered, 0).sum()
    return jnp.where(inside, (2 * rank - n - 1) * ordered, 0).sum() / (n * total)


def entropy(a: Any, *, fov: Any = None) -> jax.Array:
    """The Shannon entropy (nats) of ``|a|`` normalised to sum 1 over the field of view."""
    x, v = _magnitudes(a, fov, "entropy")
    p = jnp.where(v, x, 0) / jnp.where(v, x, 0).sum()
    return jnp.abs(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1)), 0).sum())   # each −p log p ≥ 0; no −0.0


def effective_complexity(a: Any, *, fov: Any = None, eps: float = 1e-5) -> jax.Array:
    """How many positions in the field of view have ``|a| > eps`` (an int32 scalar)."""
    x, v = _magnitudes(a, fov, "effective_complexity")
    return (v & (x > eps)).sum(dtype=jnp.int32)


def discrete_entropy(a: Any, *, fov: Any = None, bins: int = 100) -> jax.Array:
    """The entropy (nats) of the ``bins``-bin histogram of ``a``'s values in the field of view."""
    who = "discrete_entropy"
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"{who}: bins must be a positive integer; found {bins!r}")
    a = check_map(a, who=who)
    view = jnp.ones(a.shape, bool) if fov is None else check_region(fov, a.shape, who=who, name="fov")
    counts, _ = histogram(a.reshape(-1), view.reshape(-1), int(bins))
    p = counts / counts.sum()
    return jnp.abs(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1)), 0).sum())
