"""Counterfactual inputs from attributions and gradients, and seed 001's linearity study.

* :func:`ig_counterfactual` — ``x' = clip(x + c·sgn(x − x_b)·IG(x), lo, hi)``: pixels that push
  the class up move away from the baseline, pixels that push it down move towards it.
* :func:`gradient_counterfactual` — ``x' = clip(x + c·∂F/∂x, lo, hi)``.
* :func:`linearity_study` — for an exponential grid of ``c``, the gradient counterfactual and the
  IG attribution of a layer's units at it, every ``c`` in one compiled program.

``c`` may be a scalar or a 1-D grid; a grid gives a leading axis of its length.  Pixels are on
the 0..255 scale by default (``low``, ``high``).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxretina.explain.core import as_baseline, check_input, model_fn, split_fn
from jaxretina.explain.gradients import input_gradient
from jaxretina.explain.neurons import layer_values, layer_integrated_gradients

__all__ = ["ig_counterfactual", "gradient_counterfactual", "LinearityStudy", "linearity_study", "exponential_grid"]


def _grid(c: Any, x: jax.Array, who: str) -> tuple[jax.Array, bool]:
    c = jnp.asarray(c, x.dtype)
    if c.ndim > 1:
        raise ValueError(f"{who}: c must be a scalar or a 1-D grid; found shape {c.shape}")
    return c.reshape(c.shape + (1,) * x.ndim), c.ndim == 1


def ig_counterfactual(x: Any, baseline: Any, attribution: Any, c: Any, *, low: float = 0.0,
                      high: float = 255.0) -> jax.Array:
    """``clip(x + c·sgn(x − baseline)·IG, low, high)`` (seed 001).

    Args:
      x: one example; baseline: scalar or broadcastable; attribution: IG values of ``x``'s shape.
      c: scalar, or ``(G,)`` for a grid (output ``(G, *x.shape)``).

    Example::

      >>> f = explain.model_fn(grader, grader_variables, targets.class_probability(1))
      >>> ig = explain.integrated_gradients(f, z, baseline=128.0, steps=8)
      >>> x_cf = explain.ig_counterfactual(z, 128.0, ig.values, c=jnp.geomspace(1, 1e4, 5))
      >>> x_cf.shape                                    # one image per c
      (5, 64, 64, 3)
    """
    who = "ig_counterfactual"
    x = check_input(x, who=who)
    b = as_baseline(baseline, x, who=who)
    a = jnp.asarray(attribution, x.dtype)
    if a.shape != x.shape:
        raise ValueError(f"{who}: attribution must have the input's shape {x.shape}; found {a.shape}")
    c, _ = _grid(c, x, who)
    return jnp.clip(x + c * jnp.sign(x - b) * a, low, high)


def gradient_counterfactual(f: Callable, x: Any, c: Any, *, low: float = 0.0, high: float = 255.0) -> jax.Array:
    """``clip(x + c·∂f/∂x, low, high)`` for a scalar function ``f`` of one example (seed 001)."""
    who = "gradient_counterfactual"
    x = check_input(x, who=who)
    fn, data = split_fn(f)
    c, _ = _grid(c, x, who)
    return jnp.clip(x + c * input_gradient(fn, data, x, False), low, high)


def exponential_grid(start: float, stop: float, num: int) -> jax.Array:
    """``num`` values from ``start`` to ``stop``, evenly spaced in log scale (``c`` grids)."""
    if not (start > 0 and stop > start and num >= 2):
        raise ValueError(f"exponential_grid: need 0 < start < stop and num >= 2; found {start}, {stop}, {num}")
    return jnp.geomspace(start, stop, num)


class LinearityStudy(NamedTuple):
    """Per grid value ``c`` (leading axis G): ``outputs`` F(x_c) ``(G,)``; ``attributions`` IG of F to
    the layer's units ``(G, *layer)``; ``activations`` of the units at ``x_c`` and
    ``baseline_activations`` at the baseline image; ``mean_gradients`` = attribution / (a − a'), the
    average gradient along the path (0 where a = a'); ``deltas`` ``(G,)`` completeness errors."""

    c: jax.Array
    outputs: jax.Array
    attributions: jax.Array
    activations: jax.Array
    baseline_activations: jax.Array
    mean_gradients: jax.Array
    deltas: jax.Array


def linearity_study(
    model: Any, variables: Any, x: Any, layer: str, target: Callable, c: Any, *, baseline: Any,
    steps: int = 32, rule: str = "gausslegendre", chunk: int | str | None = None,
) -> LinearityStudy:
    """Seed 001's linearity study: attributions of ``layer``'s units on gradient counterfactuals.

    ``x_c = clip(x + c·∂F/∂x, 0, 255)`` for every ``c`` of the grid; IG of ``F = target∘model``
    with respect to the layer's units at each ``x_c`` (half-gray image activations as the layer
    baseline, :func:`layer_integrated_gradients`).  All ``c`` run in one ``vmap``-ed, jitted
    program; memory ≈ ``len(c) × chunk`` evaluations of the model after ``layer`` (small for the
    seed's fully connected layers, large for an early convolution: lower ``chunk`` there).  If F is close to linear in the units, ``mean_gradients`` stay constant while
    ``attributions`` grow with ``a(x_c) − a'``.

    Example::

      >>> s = explain.linearity_study(grader, grader_variables, z, "relu5", targets.class_probability(1),
      ...                             explain.exponential_grid(1.0, 1e5, 6), baseline=128.0, steps=8)
      >>> s.attributions.shape                      # (6, *layer): seed 001 used Inception's head.fc2, (6, 512)
      (6, 8, 8, 32)
    """
    who = "linearity_study"
    x = check_input(x, who=who)
    b = as_baseline(baseline, x, who=who)
    grid = jnp.asarray(c, x.dtype)
    if grid.ndim != 1:
        raise ValueError(f"{who}: c must be a 1-D grid; found shape {grid.shape}")
    f = model_fn(model, variables, target)
    fn, data = split_fn(f)
    return _linearity(model, target, layer, steps, rule, chunk, fn, data, x, b, grid)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5, 6))
def _linearity(model, target, layer, steps, rule, chunk, fn, data, x, b, grid):
    params = data[0]
    xs = jnp.clip(x + _grid(grid, x, "linearity_study")[0] * jax.grad(lambda z: fn(*data, z))(x), 0.0, 255.0)

    def one(xc):
        ig = layer_integrated_gradients(model, params, xc, layer, target, baseline=b, steps=steps, rule=rule,
                                        chunk=chunk)
        return fn(*data, xc), ig.values, ig.delta

    outputs, attributions, deltas = jax.vmap(one)(xs)
    acts = layer_values(model, layer, params, xs)
    base = layer_values(model, layer, params, b[None])[0]
    diff = acts - base
    mean_grad = jnp.where(diff != 0, attributions / jnp.where(diff != 0, diff, 1), 0)
    return LinearityStudy(grid, outputs, attributions, acts, base, mean_grad, deltas)
