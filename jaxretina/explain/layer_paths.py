"""Layer and neuron attributions along the input path: gradient × activation, internal
influence, layer conductance and neuron conductance (Captum's definitions), every step of the
path in chunks of one compiled program.

With ``a(x)`` a layer's activation (its tap), ``t`` the target, the path
``x_k = b + α_k (x − b)`` and a quadrature rule's nodes and weights ``(α_k, w_k)``
(:mod:`~jaxretina.explain.quadrature`):

======================================  ==========================================================
method                                  attribution
======================================  ==========================================================
:func:`layer_gradient_x_activation`     ``a(x) ⊙ ∂t/∂a(x)`` (every chosen layer, one pass)
:func:`internal_influence`              ``Σ_k w_k ∂t/∂a(x_k)`` (layer's shape)
:func:`layer_conductance`               ``Σ_k ∂t/∂a(x_k) ⊙ (a(x_{k+1}) − a(x_k))`` over the
                                        ``steps + 1`` nodes of the rule (Captum's; sums to about
                                        ``t(x) − t(b)`` when every path crosses the layer)
:func:`neuron_conductance`              ``(x − b) ⊙ Σ_k w_k ∂t/∂a_n(x_k) ∂a_n/∂x(x_k)`` for one
                                        neuron ``n`` of the layer (input's shape)
======================================  ==========================================================

Captum evaluates all steps as one batch (``internal_batch_size`` splits it; users report
out-of-memory errors with ``LayerConductance``, captum #632); here ``chunk`` steps run per
call of one compiled program, or ``budget=`` bytes picks the largest chunk that fits by XLA's
own accounting (:func:`~jaxretina.explain.chunk_for_budget`).

Example::

    >>> c = explain.layer_conductance(grader, grader_variables, z, "transition1", targets.class_logit(3),
    ...                               baseline=0.0, steps=8, chunk=4)
    >>> c.shape == explain.activation_maps(grader, grader_variables, z, "transition1").shape
    True
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import jax
import jax.numpy as jnp

from jaxretina import taps
from jaxretina.explain.cam import chosen_layers, tapped_gradients
from jaxretina.explain.core import as_baseline, check_input, chunked_sum
from jaxretina.explain.memory import pick_chunk
from jaxretina.explain.quadrature import quadrature

__all__ = ["layer_gradient_x_activation", "internal_influence", "layer_conductance", "neuron_conductance"]


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _grad_x_act(model, target, chosen, variables, x):
    acts, grads = tapped_gradients(model, variables, x, target, chosen)
    return {n: acts[n] * grads[n] for n in chosen}


def layer_gradient_x_activation(model: Any, variables: Any, x: Any, target: Callable, *,
                                layers: str | Sequence[str] = "all") -> dict[str, jax.Array]:
    """``{layer: a ⊙ ∂t/∂a}`` at one example ``x`` for every chosen layer (``"all"``: every
    spatial layer), one forward and one backward pass — Captum's ``LayerGradientXActivation``."""
    x = check_input(x, who="layer_gradient_x_activation")
    pairs, chosen = chosen_layers(model, x, layers)
    out = _grad_x_act(model, target, chosen, taps.params_only(variables), x)
    return {asked: out[layer] for asked, layer in pairs}


def _layer(model, x, layer, who) -> str:
    pairs, chosen = chosen_layers(model, x, [layer])
    if len(chosen) != 1:
        raise ValueError(f"{who}: expected one layer; found {layer!r}")
    return chosen[0]


class _Point(NamedTuple):
    """The layer's activation and the target's gradient there, at one point of the path."""

    model: Any
    target: Callable
    layer: str

    def __call__(self, variables, z):
        acts, grads = tapped_gradients(self.model, variables, z, self.target, (self.layer,))
        return acts[self.layer], grads[self.layer]


@functools.partial(jax.jit, static_argnums=0)
def _point(point, variables, z):
    return point(variables, z)


class _InfluenceTerm(NamedTuple):
    point: _Point

    def __call__(self, consts, step):
        variables, x, b = consts
        alpha, weight = step
        return weight * _point(self.point, variables, b + alpha * (x - b))[1]


class _ConductanceTerm(NamedTuple):
    point: _Point

    def __call__(self, consts, step):
        variables, x, b = consts
        alpha, next_alpha = step
        a0, g0 = _point(self.point, variables, b + alpha * (x - b))
        a1, _ = _point(self.point, variables, b + next_alpha * (x - b))
        return g0 * (a1 - a0)


def _path(x, baseline, rule, steps, who):
    x = check_input(x, who=who)
    return x, as_baseline(baseline, x, who=who), quadrature(rule, int(steps))


def internal_influence(model: Any, variables: Any, x: Any, layer: str, target: Callable, *, baseline: Any = 0.0,
                       steps: int = 50, rule: str = "gausslegendre", chunk: int | str | None = None,
                       budget: float | None = None) -> jax.Array:
    """``Σ_k w_k ∂t/∂a(x_k)``: the target's gradient at ``layer`` integrated along the input
    path (Captum's ``InternalInfluence``); the layer's shape."""
    who = "internal_influence"
    x, b, (alphas, weights) = _path(x, baseline, rule, steps, who)
    point = _Point(model, target, _layer(model, x, layer, who))
    xs = (jnp.asarray(alphas, x.dtype), jnp.asarray(weights, x.dtype))
    term, consts = _InfluenceTerm(point), (taps.params_only(variables), x, b)
    return chunked_sum(term, consts, xs, chunk=pick_chunk(term, consts, xs, chunk, budget, who=who))


def layer_conductance(model: Any, variables: Any, x: Any, layer: str, target: Callable, *, baseline: Any = 0.0,
                       steps: int = 50, rule: str = "gausslegendre", chunk: int | str | None = None,
                       budget: float | None = None) -> jax.Array:
    """Conductance of every neuron of ``layer``: ``Σ_k ∂t/∂a(x_k) ⊙ (a(x_{k+1}) − a(x_k))`` over
    the ``steps + 1`` nodes of ``rule`` (Captum's ``LayerConductance``); the layer's shape."""
    who = "layer_conductance"
    x, b, (alphas, _) = _path(x, baseline, rule, int(steps) + 1, who)
    point = _Point(model, target, _layer(model, x, layer, who))
    xs = (jnp.asarray(alphas[:-1], x.dtype), jnp.asarray(alphas[1:], x.dtype))
    term, consts = _ConductanceTerm(point), (taps.params_only(variables), x, b)
    return chunked_sum(term, consts, xs, chunk=pick_chunk(term, consts, xs, chunk, budget, who=who))


class _NeuronTerm(NamedTuple):
    model: Any
    target: Callable
    layer: str

    def __call__(self, consts, step):
        return _neuron_step(self, *consts, *step)


@functools.partial(jax.jit, static_argnums=0)
def _neuron_step(term, variables, x, b, neuron, alpha, weight):
    z = b + alpha * (x - b)
    fns = taps.tap_functions(term.model)

    def value(u):
        _, acts = fns.tapped(variables, u[None], fns.zeros(variables, u[None]))
        return acts[term.layer][0].reshape(-1)[neuron]

    _, grads = tapped_gradients(term.model, variables, z, term.target, (term.layer,))
    dt_da = grads[term.layer].reshape(-1)[neuron]
    return weight * dt_da * jax.grad(value)(z)


def neuron_conductance(model: Any, variables: Any, x: Any, layer: str, neuron: int | Sequence[int], target: Callable,
                       *, baseline: Any = 0.0, steps: int = 50, rule: str = "gausslegendre",
                       chunk: int | str | None = None, budget: float | None = None) -> jax.Array:
    """Conductance of the input through one neuron of ``layer`` (an index into the layer's
    activation without the batch axis, or its flat index): ``(x − b) ⊙ Σ_k w_k ∂t/∂a_n(x_k)
    ∂a_n/∂x(x_k)`` (Captum's ``NeuronConductance``); the input's shape."""
    who = "neuron_conductance"
    x, b, (alphas, weights) = _path(x, baseline, rule, steps, who)
    name = _layer(model, x, layer, who)
    shape = taps.layer_shapes(model, None, (1, *x.shape))[name].shape[1:]
    index = (int(neuron),) if np.isscalar(neuron) else tuple(int(i) for i in neuron)
    size = int(np.prod(shape))
    inside = (len(index) == 1 and 0 <= index[0] < size) or (
        len(index) == len(shape) and all(0 <= i < n for i, n in zip(index, shape)))
    if not inside:
        raise ValueError(f"{who}: neuron {neuron!r} is outside layer {layer!r} of shape {shape} (an index per "
                         "axis without the batch axis, or a flat index)")
    flat = index[0] if len(index) == 1 else int(np.ravel_multi_index(index, shape))
    term = _NeuronTerm(model, target, name)
    xs = (jnp.asarray(alphas, x.dtype), jnp.asarray(weights, x.dtype))
    consts = (taps.params_only(variables), x, b, jnp.asarray(flat))
    return (x - b) * chunked_sum(term, consts, xs, chunk=pick_chunk(term, consts, xs, chunk, budget, who=who))
