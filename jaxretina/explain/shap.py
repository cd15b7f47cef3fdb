"""GradientSHAP (expected gradients): IG's path integral estimated by sampling, with a
distribution of baselines — all samples in chunks of one compiled program.

For one example ``x``, baselines ``B = {b_k}`` and ``S`` draws ``(k_s, α_s, ε_s)`` — a baseline
index uniform over ``B``, ``α_s ~ U(0, 1)`` and noise ``ε_s ~ N(0, σ²)`` (``σ = 0``: expected
gradients, Erion et al. 2021) — with ``x̃_s = x + ε_s``::

    φ(x) = (1/S) Σ_s (x̃_s − b_{k_s}) ⊙ ∇f(b_{k_s} + α_s (x̃_s − b_{k_s}))

Its expectation is IG averaged over the baselines (Lundberg & Lee 2017): for a linear ``f``
exactly ``mean_k (x − b_k) ⊙ ∇f``.  This is Captum's ``GradientShap`` (``NoiseTunnel`` around
``InputBaselineXGradient``, ``n_samples = S``, ``stdevs = σ``); :func:`shap_draws` makes the
draws from a key, and Captum's own draws can be passed in to compare like with like.  Captum
evaluates all ``S`` samples in one batch (users hit out-of-memory errors, captum #1350);
here ``chunk`` samples run per call of one compiled chunk program (:func:`~jaxretina.explain.core.chunked_sum`).

Example::

    >>> f = explain.model_fn(model, variables, targets.segmentation_sum())
    >>> baselines = jnp.stack([jnp.zeros_like(x), jnp.full_like(x, -50.0)])
    >>> phi = explain.gradient_shap(f, x, baselines, key=jax.random.key(0), samples=8, chunk=4)
    >>> phi.shape == x.shape
    True
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np
import jax
import jax.numpy as jnp

from jaxretina.explain.core import check_input, chunked_sum, split_fn
from jaxretina.explain.gradients import input_gradient
from jaxretina.explain.memory import pick_chunk

__all__ = ["ShapDraws", "shap_draws", "gradient_shap"]


class ShapDraws(NamedTuple):
    """The random draws of ``S`` samples: ``index`` (S,) int baseline indices, ``alpha`` (S,)
    in [0, 1), ``noise`` (S, *x.shape)."""

    index: jax.Array
    alpha: jax.Array
    noise: jax.Array


def shap_draws(key: jax.Array, x: jax.Array, n_baselines: int, samples: int, stdev: float = 0.0) -> ShapDraws:
    """``samples`` draws for one example ``x`` and ``n_baselines`` baselines from ``key``."""
    k1, k2, k3 = jax.random.split(key, 3)
    return ShapDraws(jax.random.randint(k1, (samples,), 0, n_baselines),
                     jax.random.uniform(k2, (samples,), x.dtype),
                     stdev * jax.random.normal(k3, (samples, *x.shape), x.dtype))


class _ShapTerm(NamedTuple):
    fn: Callable

    def __call__(self, consts, draw):
        data, x, baselines = consts
        k, alpha, noise = draw
        b = baselines[k]
        delta = x + noise - b
        return delta * input_gradient(self.fn, data, b + alpha * delta, False)


def gradient_shap(f: Callable, x: Any, baselines: Any, *, key: jax.Array | None = None, samples: int = 32,
                  stdev: float = 0.0, draws: ShapDraws | None = None, chunk: int | str | None = None,
                  budget: float | None = None) -> jax.Array:
    """GradientSHAP of ``f`` (one example -> scalar) at ``x``: shape of ``x``.

    Args:
      baselines: ``(K, *x.shape)`` (a single baseline of ``x``'s shape is ``K = 1``).
      key: draws ``samples`` samples with :func:`shap_draws` (``stdev``); or pass ``draws``.
      chunk: samples per compiled chunk (``None`` = 8, ``"all"`` = one ``vmap``): memory grows
        with it, the result does not change.
      budget: bytes instead of ``chunk``: the largest chunk whose program fits, by XLA's own
        accounting (:func:`~jaxretina.explain.chunk_for_budget`).
    """
    who = "gradient_shap"
    x = check_input(x, who=who)
    baselines = jnp.asarray(baselines, x.dtype)
    if baselines.shape == x.shape:
        baselines = baselines[None]
    if baselines.ndim != x.ndim + 1 or baselines.shape[1:] != x.shape or baselines.shape[0] < 1:
        raise ValueError(f"{who}: baselines must be (K, *x.shape) = (K, {', '.join(map(str, x.shape))}); found "
                         f"{baselines.shape}")
    if draws is None:
        if key is None:
            raise TypeError(f"{who}: give key= (a jax.random key) or draws=")
        if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
            raise ValueError(f"{who}: samples must be a positive int; found {samples!r}")
        if not (np.isscalar(stdev) and np.isfinite(stdev) and stdev >= 0):
            raise ValueError(f"{who}: stdev must be a finite number >= 0; found {stdev!r}")
        draws = shap_draws(key, x, baselines.shape[0], int(samples), float(stdev))
    draws = ShapDraws(jnp.asarray(draws.index, jnp.int32), jnp.asarray(draws.alpha, x.dtype),
                      jnp.asarray(draws.noise, x.dtype))
    n = draws.index.shape[0]
    if draws.alpha.shape != (n,) or draws.noise.shape != (n, *x.shape):
        raise ValueError(f"{who}: draws must hold index (S,), alpha (S,) and noise (S, *x.shape); found "
                         f"{draws.index.shape}, {draws.alpha.shape}, {draws.noise.shape}")
    fn, data = split_fn(f)
    term, consts, xs = _ShapTerm(fn), (data, x, baselines), tuple(draws)
    return chunked_sum(term, consts, xs, chunk=pick_chunk(term, consts, xs, chunk, budget, who=who)) / n
