"""ROAD — RemOve And Debias (Rong et al. 2022): remove a share of the positions a map ranks most
(MoRF) or least (LeRF) relevant, fill them by noisy linear imputation
(:mod:`~jaxretina.evaluate.imputation`) so that the removal's shape leaks nothing, and score
the model on the result.  Every threshold's imputation and forward pass run batched in one
compiled program (both orders share it), on the device.

With ``f`` a function of one example to a scalar, ``x`` the example, ``a`` the map (the example's
spatial shape: a position is a pixel or voxel with all its channels; or its full shape) and a
removed share ``r``:

* MoRF removes the positions with ``a ≥ q`` where ``q`` is ``a``'s ``100 (1 − r)``-th percentile
  (linear interpolation, ties at the threshold removed together) — pytorch-grad-cam's
  ``ROADMostRelevantFirst(percentile=100 (1 − r))``;
* LeRF removes those with ``−a ≥`` the same percentile of ``−a`` —
  ``ROADLeastRelevantFirst(percentile=100 (1 − r))``.

:func:`road` returns ``f`` after each removal and ``f(x)``; pytorch-grad-cam's
``ROAD…Average`` is ``mean(scores − reference)`` and :func:`road_combined` is its
``ROADCombined``, ``mean_r (s_LeRF(r) − s_MoRF(r)) / 2`` (large: the map ranks what the model
uses first).  Item ``s`` of a call (the fractions in order; in :func:`road_combined` MoRF's then
LeRF's) adds ``noise · N(0, 1)`` from ``fold_in(key, s)`` at its removed positions
(:func:`~jaxretina.evaluate.draw_noise`, ``gaussian=True``).  Cost: one forward pass and one
conjugate-gradient solve per fraction and order.

Example::

    >>> f = explain.model_fn(grader, grader_variables, targets.class_logit(3))
    >>> a = explain.gradient_x_input(f, z).sum(-1)                        # (64, 64)
    >>> r = evaluate.road(f, z, a, fractions=(0.2, 0.5), key=jax.random.key(0))
    >>> r.scores.shape, r.reference.shape
    ((2,), ())
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np
import jax
import jax.numpy as jnp

from jaxretina.evaluate.faithfulness import ORDERS, example_and_map
from jaxretina.evaluate.imputation import solve_imputation
from jaxretina.evaluate.robustness import draw_noise
from jaxretina.explain.core import chunked_map, split_fn
from jaxretina.explain.memory import pick_chunk

__all__ = ["Road", "road", "road_combined", "road_mask", "ROAD_FRACTIONS"]

ROAD_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)   # pytorch-grad-cam's percentiles 90 … 10


class Road(NamedTuple):
    """``fractions`` ``(P,)`` removed, ``scores`` ``(P,)`` of ``f`` after each removal and
    imputation, ``reference`` ``f(x)``."""
    fractions: jax.Array
    scores: jax.Array
    reference: jax.Array


def road_mask(a: Any, fraction: Any, *, order: str = "morf") -> jax.Array:
    """The positions ROAD removes at ``fraction`` (module docstring): booleans of ``a``'s shape,
    ``a ≥`` its ``100 (1 − fraction)``-th percentile (``"morf"``), or the same of ``−a``
    (``"lerf"``).  Traceable in ``a`` and ``fraction``."""
    if order not in ORDERS:
        raise ValueError(f"road_mask: order must be one of {ORDERS}; found {order!r}")
    a = jnp.asarray(a)
    return _removed(a if order == "morf" else -a, 100 * (1 - jnp.asarray(fraction, a.dtype)))


@jax.jit
def _removed(signed, percentile):
    return signed >= jnp.percentile(signed, percentile)


class _Imputed(NamedTuple):
    fn: Callable   # static half of f (core.split_fn); its data travel traced in consts
    noise: float
    tol: float | None
    maxiter: int | None

    def __call__(self, consts, item):
        """``f`` of ``x`` imputed where ``sign · a`` reaches its ``percentile``; ``s = −1``: ``f(x)``."""
        data, x, a, key = consts
        s, sign, percentile = item
        removed = _removed(sign * a, percentile) & (s >= 0)
        filled = solve_imputation(x, removed, tol=self.tol, maxiter=self.maxiter)
        if self.noise > 0:
            wide = removed if removed.ndim == x.ndim else removed[..., None]
            draws = draw_noise(key, s, x.shape, x.dtype, gaussian=True, scale=self.noise)
            filled = jnp.where(wide, filled + draws, filled)
        return self.fn(*data, filled)


def _check_fractions(fractions, who):
    r = np.asarray(fractions, dtype=np.float64) if np.ndim(fractions) == 1 else None
    if r is None or r.size == 0 or not np.all((r > 0) & (r < 1)):
        raise ValueError(f"{who}: fractions must be a non-empty sequence of shares in (0, 1) removed; "
                         f"found {fractions!r}")
    return r


def _scores(f, x, a, signs, fractions, noise, key, tol, maxiter, chunk, budget, who):
    """``f(x)`` and ``f`` after every (sign, fraction) removal, in one program."""
    x, a = example_and_map(x, a, who)
    if x.ndim not in (3, 4):
        raise ValueError(f"{who}: expected one image (H, W, C) or volume (D, H, W, C); found shape {x.shape}")
    r = _check_fractions(fractions, who)
    if not (isinstance(noise, (int, float)) and not isinstance(noise, bool) and noise >= 0):
        raise ValueError(f"{who}: noise must be a number ≥ 0; found {noise!r}")
    if noise > 0 and key is None:
        raise ValueError(f"{who}: a key is required when noise > 0 (item s draws from fold_in(key, s))")
    fn, data = split_fn(f)
    n = len(signs) * r.size
    items = (jnp.arange(-1, n, dtype=jnp.int32),
             jnp.asarray([1.0] + [sg for sg in signs for _ in r], a.dtype),
             jnp.asarray(np.concatenate([[100.0]] + [100 * (1 - r)] * len(signs)), a.dtype))
    key = jax.random.key(0) if key is None else key
    term, consts = _Imputed(fn, float(noise), tol, maxiter), (data, x, a, key)
    out = chunked_map(term, consts, items, chunk=pick_chunk(term, consts, items, chunk, budget, who=who))
    return jnp.asarray(r, out.dtype), out[1:].reshape(len(signs), r.size), out[0]


def road(f: Callable, x: Any, a: Any, *, order: str = "morf", fractions: Any = ROAD_FRACTIONS,
         noise: float = 0.01, key: jax.Array | None = None, tol: float | None = None, maxiter: int | None = None,
         chunk: int | str | None = None, budget: float | None = None) -> Road:
    """ROAD scores of ``f`` at ``x`` for the map ``a`` (module docstring) in ``order`` ``"morf"``
    or ``"lerf"``; ``tol``/``maxiter`` go to :func:`~jaxretina.evaluate.linear_imputation`."""
    if order not in ORDERS:
        raise ValueError(f"road: order must be one of {ORDERS}; found {order!r}")
    fr, scores, reference = _scores(f, x, a, (1.0 if order == "morf" else -1.0,), fractions, noise, key, tol,
                                    maxiter, chunk, budget, "road")
    return Road(fr, scores[0], reference)


def road_combined(f: Callable, x: Any, a: Any, *, fractions: Any = ROAD_FRACTIONS, noise: float = 0.01,
                  key: jax.Array | None = None, tol: float | None = None, maxiter: int | None = None,
                  chunk: int | str | None = None, budget: float | None = None) -> jax.Array:
    """``mean_r (s_LeRF(r) − s_MoRF(r)) / 2`` — pytorch-grad-cam's ``ROADCombined``."""
    _, scores, _ = _scores(f, x, a, (1.0, -1.0), fractions, noise, key, tol, maxiter, chunk, budget,
                           "road_combined")
    return (scores[1] - scores[0]).mean() / 2
