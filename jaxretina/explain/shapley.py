"""Shapley values of the features of a feature mask: exact by enumeration, or sampled over
permutations (Štrumbelj & Kononenko 2014; Captum's ``ShapleyValues`` / ``ShapleyValueSampling``).

With ``v(S) = t(x_S)`` — the target with the features in ``S`` kept and the rest replaced by the
baseline (:mod:`~jaxretina.explain.coalitions`) — feature ``j``'s Shapley value is

    ``φ_j = Σ_{S ⊆ N∖{j}} |S|! (F − |S| − 1)! / F! · (v(S ∪ {j}) − v(S))``,

which sums to ``v(N) − v(∅) = t(x) − t(b)`` (efficiency).  :func:`shapley_values` evaluates
``v`` on all ``2^F`` coalitions (``F ≤ 20``).  :func:`shapley_value_sampling` averages, over
``S`` permutations ``π``, the marginal gain of each feature when the features are added in the
order ``π``: ``φ_j ≈ (1/S) Σ_π v(P_j^π ∪ {j}) − v(P_j^π)`` with ``P_j^π`` the features before
``j``.  Each permutation's ``F − 1`` inner coalitions, ``S (F − 1)`` in all, run batched through
one compiled program (``v(∅)`` and ``v(N)`` once), where Captum runs them in a Python loop.
Permutation ``s`` is ``jax.random.permutation(fold_in(key, s), F)``: the same for any chunking,
and :func:`shapley_permutations` returns them.  Every value of feature ``j`` gets ``φ_j``.

Example::

    >>> f = explain.model_fn(grader, grader_variables, targets.class_logit(3))
    >>> labels = (np.arange(64)[:, None] // 16) * 4 + np.arange(64)[None, :] // 16   # 16 blocks of 16×16
    >>> phi = explain.shapley_value_sampling(f, z, labels, key=jax.random.key(0), permutations=4, chunk=16)
    >>> bool(jnp.allclose(phi[::16, ::16, 0].sum(), f(z) - f(jnp.zeros_like(z)), rtol=1e-3, atol=1e-4))
    True
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import jax
import jax.numpy as jnp

from jaxretina.explain.coalitions import coalition_values, feature_labels
from jaxretina.explain.core import as_baseline, check_input

__all__ = ["shapley_values", "shapley_value_sampling", "shapley_permutations", "EXACT_SHAPLEY_MAX_FEATURES"]

# 2^20 coalitions: a million forward passes, about the most an exact computation is worth.
EXACT_SHAPLEY_MAX_FEATURES = 20


def shapley_permutations(key: jax.Array, count: int, features: int) -> jax.Array:
    """The ``count`` permutations of ``0 … features−1`` that :func:`shapley_value_sampling`
    draws from ``key``: ``(count, features)``."""
    return jax.vmap(lambda s: jax.random.permutation(jax.random.fold_in(key, s), features))(jnp.arange(count))


def shapley_values(f: Callable, x: Any, features: Any, *, baseline: Any = 0.0, chunk: int | str | None = None,
                   budget: float | None = None) -> jax.Array:
    """Exact Shapley values of the ``F`` features of ``features`` (``F ≤ 20``; ``2^F``
    evaluations of ``f``): shape of ``x``."""
    who = "shapley_values"
    x = check_input(x, who=who)
    labels, count = feature_labels(features, x, who=who)
    if count > EXACT_SHAPLEY_MAX_FEATURES:
        raise ValueError(f"{who}: {count} features need 2^{count} evaluations; exact values are offered up to "
                         f"{EXACT_SHAPLEY_MAX_FEATURES} features — use shapley_value_sampling")
    codes = np.arange(2 ** count)
    bits = (codes[:, None] >> np.arange(count)[None, :]) & 1                  # (2^F, F): bit j = feature j kept
    v = coalition_values(f, x, as_baseline(baseline, x, who=who), labels, jnp.asarray(bits.astype(bool)),
                         chunk=chunk, budget=budget, who=who)
    size = bits.sum(1)
    weight = np.array([math.factorial(s) * math.factorial(count - s - 1) / math.factorial(count) if s < count else 0.0
                       for s in size])
    phi = []
    for j in range(count):
        without = codes[bits[:, j] == 0]                                      # S ∌ j, paired with S ∪ {j}
        phi.append(jnp.dot(jnp.asarray(weight[without], v.dtype), v[without | (1 << j)] - v[without]))
    return jnp.take(jnp.stack(phi), labels).astype(x.dtype)


def shapley_value_sampling(f: Callable, x: Any, features: Any, *, key: jax.Array | None = None,
                           permutations: int | Any = 25, baseline: Any = 0.0, chunk: int | str | None = None,
                           budget: float | None = None) -> jax.Array:
    """Shapley values of the features of ``features`` estimated from ``permutations``
    permutations (a count drawn from ``key``, or the permutations themselves ``(S, F)``, e.g.
    Captum's): shape of ``x``.  ``S (F − 1) + 2`` evaluations of ``f``."""
    who = "shapley_value_sampling"
    x = check_input(x, who=who)
    labels, count = feature_labels(features, x, who=who)
    perms = _permutations(permutations, key, count, who)
    ranks = jnp.argsort(perms, axis=1)                                        # ranks[s, j]: j's place in π_s
    base = as_baseline(baseline, x, who=who)
    k = jnp.arange(1, count)                                                  # inner coalitions: the first k of π
    present = (ranks[:, None, :] < k[None, :, None]).reshape(-1, count)
    inner = (coalition_values(f, x, base, labels, present, chunk=chunk, budget=budget, who=who) if count > 1
             else jnp.zeros((0,), x.dtype))
    ends = coalition_values(f, x, base, labels, jnp.asarray([[False] * count, [True] * count]), chunk=2, who=who)
    v = jnp.concatenate([jnp.broadcast_to(ends[0], (perms.shape[0], 1)), inner.reshape(perms.shape[0], count - 1),
                         jnp.broadcast_to(ends[1], (perms.shape[0], 1))], axis=1)   # (S, F + 1): v after k added
    gain = jnp.take_along_axis(v, ranks + 1, axis=1) - jnp.take_along_axis(v, ranks, axis=1)
    return jnp.take(gain.mean(0), labels).astype(x.dtype)


def _permutations(permutations: Any, key: jax.Array | None, count: int, who: str) -> jax.Array:
    if isinstance(permutations, (int, np.integer)) and not isinstance(permutations, bool):
        if permutations < 1 or key is None:
            raise ValueError(f"{who}: drawing permutations needs key= and permutations ≥ 1; "
                             f"found permutations={permutations}, key={key}")
        return shapley_permutations(key, int(permutations), count)
    perms = np.asarray(permutations)
    if perms.ndim != 2 or perms.shape[1] != count or perms.shape[0] < 1 or not np.issubdtype(perms.dtype, np.integer):
        raise ValueError(f"{who}: permutations must be a count or integer rows (S, {count}); found "
                         f"{perms.dtype} {perms.shape}")
    if not (np.sort(perms, axis=1) == np.arange(count)).all():
        raise ValueError(f"{who}: every row of permutations must be a permutation of 0 … {count - 1}")
    return jnp.asarray(perms, jnp.int32)
