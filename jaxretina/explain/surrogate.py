"""LIME and KernelSHAP: a weighted linear model of the target over feature coalitions
(Ribeiro et al. 2016; Lundberg & Lee 2017; as Captum's ``Lime`` and ``KernelShap``).

Both draw ``N`` coalitions ``z_i ∈ {0, 1}^F`` over the features of a feature mask, evaluate
``y_i = v(z_i) = t(x_{z_i})`` (all ``N`` batched in chunks through one compiled program,
:mod:`~jaxretina.explain.coalitions`), and fit ``y ≈ c + z·β`` with weights ``w_i``
(:func:`linear_surrogate`); feature ``j``'s attribution is ``β_j``, given to each of its values.

* :func:`lime`: ``z_i`` Bernoulli(½) per feature (:func:`lime_samples`); ``w_i = exp(−d_i² /
  (2 σ²))`` with ``d_i`` the cosine distance ``1 − cos(x, x_{z_i})`` (or the Euclidean
  ``‖x − x_{z_i}‖``) between the flattened inputs, ``σ`` = ``kernel_width``; the fit is the Lasso
  ``min ½ Σ w̄_i (y_i − c − z_i·β)² + α ‖β‖₁`` (``w̄ = w / Σ w``; ``α`` = 0.01 as Captum's
  default ``SkLearnLasso``, ``alpha=0`` plain weighted least squares).  The distances come from
  per-feature sums ``Σ x²``, ``Σ x·b``, ``Σ b²`` — no perturbed input is materialised for them.
* :func:`kernel_shap`: the Shapley kernel by sampling (:func:`kernel_shap_samples`): the first
  two coalitions are all features and none, weighted ``KERNEL_SHAP_ENDPOINT_WEIGHT`` = 10⁶ (in
  theory infinite: the fit then meets ``v(N)`` and ``v(∅)``); each further one keeps ``k``
  features, ``p(k) ∝ (F − 1) / (k (F − k))`` for ``k = 1 … F−1``, chosen uniformly; weights 1;
  least squares (``α = 0``).  With enough samples ``β`` tends to the Shapley values.

Sample ``i`` is drawn from ``fold_in(key, i)`` — the same for any chunking — or the coalitions
are given as ``samples`` ``(N, F)`` 0/1 (e.g. the ones another library drew).

Example::

    >>> f = explain.model_fn(grader, grader_variables, targets.class_logit(3))
    >>> labels = (np.arange(64)[:, None] // 16) * 4 + np.arange(64)[None, :] // 16   # 16 blocks
    >>> a = explain.kernel_shap(f, z, labels, key=jax.random.key(0), samples=64, chunk=16)
    >>> bool(jnp.allclose(a[::16, ::16, 0].sum(), f(z) - f(jnp.zeros_like(z)), rtol=1e-3, atol=1e-3))
    True
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np
import jax
import jax.numpy as jnp

from jaxretina.explain.coalitions import check_coalitions, coalition_values, feature_labels
from jaxretina.explain.core import as_baseline, check_input
from jaxretina.propagation.program import vary_like

__all__ = ["lime", "kernel_shap", "lime_samples", "kernel_shap_samples", "linear_surrogate",
           "KERNEL_SHAP_ENDPOINT_WEIGHT"]

KERNEL_SHAP_ENDPOINT_WEIGHT = 1e6   # Captum's KernelShap.inf_weight


def lime_samples(key: jax.Array, count: int, features: int) -> jax.Array:
    """``count`` Bernoulli(½) coalitions of ``features`` features: ``(count, features)`` bool."""
    return jax.vmap(lambda i: jax.random.bernoulli(jax.random.fold_in(key, i), 0.5, (features,)))(jnp.arange(count))


def kernel_shap_samples(key: jax.Array, count: int, features: int) -> jax.Array:
    """``count`` coalitions for KernelSHAP: all features, none, then ``k ~ p(k) ∝ (F−1)/(k(F−k))``
    kept features chosen uniformly: ``(count, features)`` bool."""
    if features < 2:
        return jnp.asarray([[True] * features, [False] * features][:count], bool).reshape(-1, features)
    k = np.arange(1, features)
    logits = jnp.log(jnp.asarray((features - 1) / (k * (features - k))))

    def draw(i):
        k_size, k_pick = jax.random.split(jax.random.fold_in(key, i))
        size = jax.random.categorical(k_size, logits) + 1
        order = jnp.argsort(jnp.argsort(jax.random.uniform(k_pick, (features,))))   # a uniform random rank
        return order < size

    ends = jnp.asarray([[True] * features, [False] * features], bool)
    return jnp.concatenate([ends, jax.vmap(draw)(jnp.arange(2, max(count, 2)))])[:count]


@functools.partial(jax.jit, static_argnames=("lasso", "max_sweeps"))
def _fit(z, y, w, alpha, tol, *, lasso: bool, max_sweeps: int):
    w = w / w.sum()
    z_mean, y_mean = w @ z, w @ y
    zc, yc = z - z_mean, y - y_mean
    if not lasso:
        root = jnp.sqrt(w)
        beta = jnp.linalg.lstsq(root[:, None] * zc, root * yc)[0]
    else:
        beta = _lasso(zc, yc, w, alpha, tol, max_sweeps)
    return beta, y_mean - z_mean @ beta


def _lasso(z, y, w, alpha, tol, max_sweeps):
    """Cyclic coordinate descent on ``½ Σ w_i (y_i − z_i·β)² + α‖β‖₁`` (centred data), until
    the largest update in a sweep is below ``tol · max|β|`` (sklearn's criterion)."""
    norm = w @ (z * z)                                                       # (F,)

    def coordinate(j, carry):
        beta, r, step = carry
        zj, old = z[:, j], beta[j]
        rho = (w * zj) @ r + norm[j] * old
        new = jnp.where(norm[j] > 0, jnp.sign(rho) * jnp.maximum(jnp.abs(rho) - alpha, 0.0) / jnp.where(
            norm[j] > 0, norm[j], 1.0), 0.0)
        return beta.at[j].set(new), r - zj * (new - old), jnp.maximum(step, jnp.abs(new - old))

    def sweep(state):
        beta, r, _, done = state
        beta, r, step = jax.lax.fori_loop(0, z.shape[1], coordinate, (beta, r, vary_like(jnp.zeros((), z.dtype), y)))
        return beta, r, step, done + 1

    def going(state):
        beta, _, step, done = state
        return (done < max_sweeps) & ((done == 0) | (step > tol * jnp.max(jnp.abs(beta))))

    start = (vary_like(jnp.zeros(z.shape[1], z.dtype), y), y, vary_like(jnp.zeros((), z.dtype), y), 0)
    return jax.lax.while_loop(going, sweep, start)[0]


def linear_surrogate(z: Any, y: Any, weights: Any, *, alpha: float = 0.0, tol: float = 1e-10,
                     max_sweeps: int = 10_000) -> tuple[jax.Array, jax.Array]:
    """``(β, c)`` of the weighted fit ``y ≈ c + z·β`` over samples ``z`` ``(N, F)``, ``y`` ``(N,)``,
    ``weights`` ``(N,)``: least squares for ``alpha = 0`` (the minimum-norm solution when
    ``N < F``, as sklearn's ``LinearRegression``), else the Lasso of the module docstring
    (sklearn's ``Lasso(alpha)`` objective, which normalises the weights the same way).  One
    compiled program per shape."""
    z, y, w = jnp.asarray(z), jnp.asarray(y), jnp.asarray(weights)
    dtype = y.dtype if jnp.issubdtype(y.dtype, jnp.floating) else jnp.dtype(jnp.float32)
    if z.ndim != 2 or y.shape != z.shape[:1] or w.shape != z.shape[:1]:
        raise ValueError(f"linear_surrogate: expected z (N, F), y (N,) and weights (N,); found {z.shape}, {y.shape}, "
                         f"{w.shape}")
    if not (float(alpha) >= 0 and float(tol) > 0 and int(max_sweeps) >= 1):
        raise ValueError(f"linear_surrogate: need alpha ≥ 0, tol > 0, max_sweeps ≥ 1; found {alpha}, {tol}, {max_sweeps}")
    return _fit(z.astype(dtype), y.astype(dtype), w.astype(dtype), jnp.asarray(alpha, dtype), jnp.asarray(tol, dtype),
                lasso=float(alpha) > 0, max_sweeps=int(max_sweeps))


def _coalitions(samples: Any, key: jax.Array | None, count: int, draw: Callable, who: str) -> jax.Array:
    if isinstance(samples, (int, np.integer)) and not isinstance(samples, bool):
        if samples < 1 or key is None:
            raise ValueError(f"{who}: drawing samples needs key= and samples ≥ 1; found samples={samples}, key={key}")
        return draw(key, int(samples), count)
    return check_coalitions(samples, count, who=who)


def _distances(x: jax.Array, base: jax.Array, labels: jax.Array, count: int, present: jax.Array, mode: str):
    """Distance between flattened ``x`` and each ``x_z`` from per-feature sums."""
    def per_feature(a):
        return jax.ops.segment_sum(a.reshape(-1), labels.reshape(-1), num_segments=count)

    z = present.astype(x.dtype)
    if mode == "euclidean":
        return jnp.sqrt(jnp.maximum((1 - z) @ per_feature((x - base) ** 2), 0.0))
    xx, xb, bb = per_feature(x * x), per_feature(x * base), per_feature(base * base)
    dot, norm = z @ xx + (1 - z) @ xb, jnp.sqrt(jnp.maximum(z @ xx + (1 - z) @ bb, 0.0))
    return 1 - dot / jnp.maximum(jnp.sqrt(xx.sum()) * norm, 1e-8)   # torch's CosineSimilarity eps


def lime(f: Callable, x: Any, features: Any, *, key: jax.Array | None = None, samples: int | Any = 50,
         baseline: Any = 0.0, kernel_width: float = 1.0, distance: str = "cosine", alpha: float = 0.01,
         chunk: int | str | None = None, budget: float | None = None) -> jax.Array:
    """LIME attribution of the features of ``features``: shape of ``x`` (see the module docstring;
    defaults as Captum's ``Lime``: 50 samples, cosine distance, kernel width 1, Lasso α = 0.01)."""
    who = "lime"
    x = check_input(x, who=who)
    if distance not in ("cosine", "euclidean"):
        raise ValueError(f"{who}: distance must be 'cosine' or 'euclidean'; found {distance!r}")
    if not (isinstance(kernel_width, (int, float)) and kernel_width > 0):
        raise ValueError(f"{who}: kernel_width must be a positive number; found {kernel_width!r}")
    labels, count = feature_labels(features, x, who=who)
    present = _coalitions(samples, key, count, lime_samples, who)
    base = as_baseline(baseline, x, who=who)
    y = coalition_values(f, x, base, labels, present, chunk=chunk, budget=budget, who=who)
    d = _distances(x, base, labels, count, present, distance)
    beta, _ = linear_surrogate(present, y, jnp.exp(-(d ** 2) / (2 * kernel_width ** 2)), alpha=alpha)
    return jnp.take(beta, labels).astype(x.dtype)


def kernel_shap(f: Callable, x: Any, features: Any, *, key: jax.Array | None = None, samples: int | Any = 25,
                baseline: Any = 0.0, chunk: int | str | None = None, budget: float | None = None) -> jax.Array:
    """KernelSHAP attribution of the features of ``features``: shape of ``x`` (see the module
    docstring; 25 samples by default, as Captum's ``KernelShap``)."""
    who = "kernel_shap"
    x = check_input(x, who=who)
    labels, count = feature_labels(features, x, who=who)
    present = _coalitions(samples, key, count, kernel_shap_samples, who)
    y = coalition_values(f, x, as_baseline(baseline, x, who=who), labels, present, chunk=chunk, budget=budget, who=who)
    size = present.sum(1)
    weights = jnp.where((size == 0) | (size == count), KERNEL_SHAP_ENDPOINT_WEIGHT, 1.0)
    beta, _ = linear_surrogate(present, y, weights, alpha=0.0)
    return jnp.take(beta, labels).astype(x.dtype)
