"""Linear imputation (Rong et al. 2022, ROAD): fill removed pixels or voxels with the values that
make each one the weighted mean of its neighbours, so a removal leaves no edge the model could
read, then add a little noise.

With ``R`` the removed positions, ``v`` the example and ``w_o`` the neighbour weights (2-D: the 8
neighbours, ``1/6`` along an axis and ``1/12`` diagonally; 3-D: the 6 face neighbours, ``1/6``
each — weights sum to 1 and ``w_o = w_{−o}``), the fill ``u`` solves, for every ``i ∈ R`` and
channel,

    ``s_i u_i − Σ_{o: i+o ∈ R} w_o u_{i+o} = Σ_{o: i+o ∉ R} w_o v_{i+o}``,

``s_i = Σ_o w_o`` over the neighbours inside the image: a discrete Laplace equation with the
kept values as boundary.  Its matrix is symmetric and positive definite whenever something is
kept (every removed region then touches a kept position), so conjugate gradients solve it on the
device, the operator a stencil (never a sparse matrix), vmapped over examples and thresholds.
Everything removed: the fill is 0.  The result is ``u + noise · ε`` on ``R`` and ``v`` elsewhere
— ROAD's ``NoisyLinearImputer`` (pytorch-grad-cam, Quantus), which solves the same system with a
sparse LU on the host.

Example::

    >>> v = jnp.tile(jnp.arange(5.0)[None, :, None], (5, 1, 1))   # a horizontal ramp (5, 5, 1)
    >>> removed = jnp.zeros((5, 5), bool).at[1:4, 1:4].set(True)
    >>> u = evaluate.linear_imputation(v, removed)
    >>> bool(jnp.allclose(u, v, atol=1e-4))                         # a linear ramp is harmonic
    True
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import jax
import jax.numpy as jnp
from jax.scipy.sparse.linalg import cg

from jaxretina.evaluate.regions import check_region
from jaxretina.explain.core import check_input
from jaxretina.propagation.program import vary_like

__all__ = ["linear_imputation", "neighbour_weights", "solve_imputation"]


def neighbour_weights(spatial_ndim: int) -> tuple[tuple[tuple[int, ...], float], ...]:
    """``((offset, weight), …)`` of the imputation stencil: 2-D ROAD's 8 neighbours (``1/6`` along
    an axis, ``1/12`` diagonally), 3-D the 6 face neighbours (``1/6``)."""
    if spatial_ndim == 2:
        return tuple((o, 1 / 6 if abs(o[0]) + abs(o[1]) == 1 else 1 / 12)
                     for o in itertools.product((-1, 0, 1), repeat=2) if o != (0, 0))
    if spatial_ndim == 3:
        return tuple((o, 1 / 6) for o in itertools.product((-1, 0, 1), repeat=3) if sum(map(abs, o)) == 1)
    raise ValueError(f"linear_imputation: images (H, W, C) or volumes (D, H, W, C) only; found {spatial_ndim} "
                     "spatial axes")


def _shifted(v: jax.Array, offset: tuple[int, ...]) -> jax.Array:
    """``v[i + offset]`` over the leading spatial axes, 0 outside."""
    pad = [(1, 1)] * len(offset) + [(0, 0)] * (v.ndim - len(offset))
    padded = jnp.pad(v, pad)
    return padded[tuple(slice(1 + o, 1 + o + n) for o, n in zip(offset, v.shape))]


def _neighbour_sum(v: jax.Array, stencil) -> jax.Array:
    return sum(w * _shifted(v, o) for o, w in stencil)


def _default_tol(dtype) -> float:
    return 1e-5 if jnp.finfo(dtype).bits <= 32 else 1e-11


def solve_imputation(x: jax.Array, removed: jax.Array, *, tol: float | None = None,
                     maxiter: int | None = None) -> jax.Array:
    """The noise-free fill of the checked ``x`` at ``removed`` (``x.shape``, or broadcastable to
    it), traceable: the core of :func:`linear_imputation` for callers that vmap it."""
    stencil = neighbour_weights(x.ndim - 1)
    removed = jnp.broadcast_to(removed if removed.ndim == x.ndim else removed[..., None], x.shape)
    s = vary_like(_neighbour_sum(jnp.ones(x.shape[:-1] + (1,), x.dtype), stencil), x)   # inside shard_map too
    kept = jnp.where(removed, 0, x)
    b = jnp.where(removed, _neighbour_sum(kept, stencil), 0)

    def matvec(u):
        return jnp.where(removed, s * u - _neighbour_sum(jnp.where(removed, u, 0), stencil), u)

    def jacobi(r):
        return jnp.where(removed, r / s, r)

    spatial = tuple(range(x.ndim - 1))
    n_kept = (~removed).sum(spatial, dtype=x.dtype)
    mean = kept.sum(spatial) / jnp.maximum(n_kept, 1)        # a start that knows nothing removed
    x0 = jnp.where(removed, mean, 0)
    maxiter = 4 * sum(x.shape[:-1]) + 50 if maxiter is None else maxiter
    u, _ = cg(matvec, b, x0=x0, tol=_default_tol(x.dtype) if tol is None else tol, maxiter=maxiter, M=jacobi)
    return jnp.where(removed, u, x)


_solve = jax.jit(solve_imputation, static_argnames=("tol", "maxiter"))


def linear_imputation(x: Any, removed: Any, *, noise: float = 0.0, key: jax.Array | None = None,
                      tol: float | None = None, maxiter: int | None = None) -> jax.Array:
    """``x`` with the ``removed`` positions filled by linear imputation (module docstring) plus
    ``noise · N(0, 1)`` draws from ``key`` (ROAD's default noise is 0.01).

    ``x``: one image ``(H, W, C)`` or volume ``(D, H, W, C)``; ``removed``: booleans (or 0/1) of
    its spatial shape (every channel of a position removed) or of its full shape (per channel).
    ``tol``: conjugate gradients' relative residual (1e-5 in float32, 1e-11 in float64);
    ``maxiter``: at most ``4 Σ sizes + 50`` iterations unless given.
    """
    who = "linear_imputation"
    x = check_input(x, who=who)
    if x.ndim not in (3, 4):
        raise ValueError(f"{who}: expected one image (H, W, C) or volume (D, H, W, C); found shape {x.shape}")
    shape = x.shape if np.ndim(removed) == x.ndim else x.shape[:-1]
    removed = check_region(removed, shape, who=who, name="removed")
    if noise < 0 or (noise > 0 and key is None):
        raise ValueError(f"{who}: noise must be ≥ 0, and a key is required when it is positive; found noise="
                         f"{noise!r}, key={key!r}")
    u = _solve(x, removed, tol=tol, maxiter=maxiter)
    if noise > 0:
        mask = removed if removed.ndim == x.ndim else removed[..., None]
        u = jnp.where(mask, u + noise * jax.random.normal(key, x.shape, x.dtype), u)
    return u
