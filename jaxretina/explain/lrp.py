"""Layer-wise relevance propagation (LRP) and its relatives, as rules on one backward pass.

``lrp(model, variables, x, target, composite=...)`` traces the model, gives each site (linear
layer, sum, pool, activation) the rule its composite picks (:mod:`jaxretina.propagation`) and
propagates the output relevance ``R_out = y ⊙ ∂t/∂y`` — for a class logit, the logit at that
class and zero elsewhere (Captum's and zennit's start) — back to the input in one reverse pass.
For rules that conserve relevance (ε → 0 or z⁺ on a bias-free ReLU network), the map sums to
the target: ``Σ_i R_i = t(f(x))``.

Example::

    >>> r = explain.lrp(grader, grader_variables, z, targets.class_logit(3), composite="epsilon_plus_flat")
    >>> r.shape == z.shape
    True
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax

from jaxretina import taps
from jaxretina.explain.core import OneExample, check_input
from jaxretina.models import spec
from jaxretina.propagation import Composite, mark_activation, named, with_rules

__all__ = ["lrp", "propagate", "output_relevance", "for_rules"]


def output_relevance(out: jax.Array, target: Callable) -> jax.Array:
    """``y ⊙ ∂t/∂y``: the relevance the target puts on each output (its own value where it
    picks one output; each pixel's share for a segmentation sum)."""
    return out * jax.grad(lambda y: target(y))(out)


def for_rules(model: Any, who: str) -> Any:
    """The network rules are applied to: the one output methods explain, and a nonlinearity
    held in a field marked, so each of its calls (a DS6 LeakyReLU) is an activation site like
    the ReLUs the tracer recognises by themselves."""
    model = spec.for_explaining(model)
    act = spec.capabilities(model)["act"] and spec.activation(model, who)
    if act and act is not jax.nn.relu:
        model = spec.with_activation(model, mark_activation(act), who)
    return model


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _propagate(model, target, composite, start, params, x):
    g = with_rules(OneExample(model, "propagate"), composite.choose, merge=composite.merge)
    out, pull = jax.vjp(lambda z: g(params, z), x)
    seed = output_relevance(out, target) if start == "relevance" else jax.grad(lambda y: target(y))(out)
    return pull(seed)[0]


def propagate(model: Any, variables: Any, x: Any, target: Callable, composite: Composite, *,
              start: str = "relevance", who: str = "propagate") -> jax.Array:
    """``composite``'s backward pass of ``target`` for one example ``x`` (no batch axis):
    shape of ``x``.  ``start="relevance"`` seeds the output with ``y ⊙ ∂t/∂y`` (LRP),
    ``"gradient"`` with ``∂t/∂y`` (guided backprop, deconvnet: a modified gradient)."""
    if start not in ("relevance", "gradient"):
        raise ValueError(f"{who}: start must be 'relevance' or 'gradient'; found {start!r}")
    x = check_input(x, who=who)
    return _propagate(for_rules(model, who), target, composite, start, taps.params_only(variables), x)


def lrp(model: Any, variables: Any, x: Any, target: Callable, *, composite: str | Composite = "epsilon_plus_flat",
        **options: Any) -> jax.Array:
    """LRP map of ``target`` for one example ``x`` (shape of ``x``) with a named composite
    (:data:`jaxretina.propagation.NAMES`, ``options`` its parameters) or a
    :class:`~jaxretina.propagation.Composite`.  Batch with ``jax.vmap``."""
    return propagate(model, variables, x, target, named(composite, **options), who="lrp")
