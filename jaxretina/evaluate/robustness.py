"""Robustness: does the map stay put when the input barely moves?  The explainer runs on the
example and on ``samples`` noisy copies, all batched through one compiled program (``chunk`` at
a time), the noise drawn on the device from ``fold_in(key, s)`` — the same draws for any
batching.

With ``Φ`` the explainer (a function of one example to its map, e.g.
``jax.tree_util.Partial(explain.saliency, f)``; a ``Partial`` keeps the model's weights traced
data), ``x`` the example and ``δ_s`` the draws:

* :func:`max_sensitivity` — ``max_s ‖Φ(x) − Φ(x + δ_s)‖ / ‖Φ(x)‖`` with ``δ_s ~ U[−r, r]``
  per value (Yeh et al. 2019; Captum's ``sensitivity_max``, which divides by 1 where
  ``‖Φ(x)‖ = 0``, and so does this); :func:`avg_sensitivity` the mean over ``s`` (Quantus'
  ``AvgSensitivity``);
* :func:`local_lipschitz` — ``max_s ‖Φ(x) − Φ(x + δ_s)‖ / ‖δ_s‖`` with ``δ_s ~ N(0, σ²)``
  (Alvarez-Melis & Jaakkola 2018; Quantus' ``LocalLipschitzEstimate``).

``‖·‖`` is the Frobenius norm over every value of the map.  Cost: ``samples + 1`` calls of
``Φ``.

Example::

    >>> f = explain.model_fn(grader, grader_variables, targets.class_logit(3))
    >>> phi = jax.tree_util.Partial(explain.saliency, f)
    >>> s = evaluate.max_sensitivity(phi, z, key=jax.random.key(0), samples=4, radius=2.0)
    >>> bool(s >= 0)
    True
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np
import jax
import jax.numpy as jnp

from jaxretina.explain.core import check_input, chunked_map, split_fn
from jaxretina.explain.memory import pick_chunk

__all__ = ["max_sensitivity", "avg_sensitivity", "local_lipschitz", "draw_noise", "check_draws"]


def draw_noise(key: jax.Array, s: Any, shape: tuple[int, ...], dtype: Any, *, gaussian: bool,
               scale: float) -> jax.Array:
    """Draw ``s`` of the robustness metrics: ``scale · N(0, 1)`` or ``U[−scale, scale]`` per value,
    from ``fold_in(key, s)`` (pass these to an anchor to give it the same draws)."""
    k = jax.random.fold_in(key, s)
    if gaussian:
        return scale * jax.random.normal(k, shape, dtype)
    return jax.random.uniform(k, shape, dtype, -scale, scale)


def check_draws(samples: Any, scale: Any, key: Any, *, who: str) -> None:
    """A positive number of draws, a positive noise scale and a key, or a clear error."""
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"{who}: samples must be a positive integer; found {samples!r}")
    if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 0):
        raise ValueError(f"{who}: the noise scale must be a positive number; found {scale!r}")
    if key is None:
        raise ValueError(f"{who}: a key is required (the noise is drawn from fold_in(key, s))")


class _Noisy(NamedTuple):
    fn: Callable   # static half of the explainer (core.split_fn); its data travel traced in consts
    gaussian: bool
    scale: float   # the radius r of U[−r, r], or σ

    def __call__(self, consts, s):
        """``(Φ(x + δ_s), ‖δ_s‖)``; ``s = −1`` is the example itself (δ = 0)."""
        data, x, key = consts
        noise = jnp.where(s >= 0, draw_noise(key, s, x.shape, x.dtype, gaussian=self.gaussian, scale=self.scale), 0)
        return jnp.asarray(self.fn(*data, x + noise)), jnp.sqrt((noise ** 2).sum())


def _distances(explainer, x, key, samples, scale, gaussian, chunk, budget, who):
    """``(‖Φ(x) − Φ(x + δ_s)‖, ‖Φ(x)‖, ‖δ_s‖)`` over the ``samples`` draws."""
    x = check_input(x, who=who)
    check_draws(samples, scale, key, who=who)
    fn, data = split_fn(explainer)
    term, consts, xs = _Noisy(fn, gaussian, float(scale)), (data, x, key), jnp.arange(-1, samples)
    maps, norms = chunked_map(term, consts, xs, chunk=pick_chunk(term, consts, xs, chunk, budget, who=who))
    flat = maps.reshape(maps.shape[0], -1)
    return jnp.sqrt(((flat[1:] - flat[0]) ** 2).sum(-1)), jnp.sqrt((flat[0] ** 2).sum()), norms[1:]


def _sensitivities(explainer, x, key, samples, radius, chunk, budget, who):
    diff, base, _ = _distances(explainer, x, key, samples, radius, False, chunk, budget, who)
    return diff / jnp.where(base == 0, 1, base)


def max_sensitivity(explainer: Callable, x: Any, *, key: jax.Array, samples: int = 10, radius: float = 0.02,
                    chunk: int | str | None = None, budget: float | None = None) -> jax.Array:
    """``max_s ‖Φ(x) − Φ(x + δ_s)‖ / ‖Φ(x)‖``, ``δ_s ~ U[−radius, radius]`` (Captum's defaults)."""
    return _sensitivities(explainer, x, key, samples, radius, chunk, budget, "max_sensitivity").max()


def avg_sensitivity(explainer: Callable, x: Any, *, key: jax.Array, samples: int = 10, radius: float = 0.02,
                    chunk: int | str | None = None, budget: float | None = None) -> jax.Array:
    """``mean_s ‖Φ(x) − Φ(x + δ_s)‖ / ‖Φ(x)‖``, ``δ_s ~ U[−radius, radius]``."""
    return _sensitivities(explainer, x, key, samples, radius, chunk, budget, "avg_sensitivity").mean()


def local_lipschitz(explainer: Callable, x: Any, *, key: jax.Array, samples: int = 10, std: float = 0.1,
                    chunk: int | str | None = None, budget: float | None = None) -> jax.Array:
    """``max_s ‖Φ(x) − Φ(x + δ_s)‖ / ‖δ_s‖``, ``δ_s ~ N(0, std²)`` per value."""
    diff, _, norms = _distances(explainer, x, key, samples, std, True, chunk, budget, "local_lipschitz")
    return (diff / norms).max()
