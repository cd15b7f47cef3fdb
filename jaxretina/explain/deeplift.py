"""DeepLIFT (rescale rule) and DeepLiftShap, as one rule-modified backward pass.

DeepLIFT (Shrikumar et al. 2017) explains ``t(f(x)) − t(f(x₀))`` against a reference ``x₀``:
every activation passes back the multiplier ``(σ(a) − σ(a₀)) / (a − a₀)`` of its input ``a`` at
``x`` and ``a₀`` at ``x₀`` (its derivative where the two agree), linear layers their weights, so
the attribution ``(x − x₀) ⊙ m(x)`` sums to the difference in score on a ReLU network with a
linear target — *summation to delta*.  It is the ``deeplift`` composite of
:mod:`jaxretina.propagation`: the network runs at ``x₀`` (forward only) and at ``x``, and one
reverse pass carries the multipliers.  Captum's ``DeepLift`` with its default rescale rule,
and its max-pool rule (:class:`~jaxretina.propagation.RescaleMaxPool`): a max pool sends
``max(z, z₀) − z₀`` back through the input's switches and ``z − max(z, z₀)`` through the
reference's.

DeepLiftShap (Lundberg & Lee 2017): the mean of DeepLIFT over a set of references
``{b_k}``, batched over the references (``chunk`` per call of one compiled program).

Example::

    >>> d = explain.deeplift(grader, grader_variables, z, targets.class_logit(3), baseline=0.0)
    >>> d.shape == z.shape
    True
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxretina import taps
from jaxretina.explain.core import OneExample, as_baseline, check_input, chunked_sum
from jaxretina.explain.memory import pick_chunk
from jaxretina.explain.lrp import for_rules
from jaxretina.propagation import named, with_rules

__all__ = ["deeplift", "deeplift_shap"]


class _DeepLift(NamedTuple):
    model: Any
    target: Callable
    eps: float

    def __call__(self, params, x, x0):
        composite = named("deeplift", eps=self.eps)
        g = with_rules(OneExample(self.model, "deeplift"), composite.choose, merge=composite.merge, reference=True)
        out, pull = jax.vjp(lambda z: g(params, z, x0), x)
        return (x - x0) * pull(jax.grad(lambda y: self.target(y))(out))[0]


@functools.partial(jax.jit, static_argnums=0)
def _deeplift(term, params, x, x0):
    return term(params, x, x0)


class _ShapTerm(NamedTuple):
    term: _DeepLift

    def __call__(self, consts, b):
        params, x = consts
        return _deeplift(self.term, params, x, b)   # one compiled program, batched over the chunk


def deeplift(model: Any, variables: Any, x: Any, target: Callable, *, baseline: Any = 0.0,
             eps: float = 1e-10) -> jax.Array:
    """DeepLIFT-rescale attribution of ``target`` for one example ``x`` against ``baseline``
    (a number or an array of ``x``'s shape): shape of ``x``; sums to
    ``t(f(x)) − t(f(baseline))`` on ReLU networks with a linear target."""
    who = "deeplift"
    x = check_input(x, who=who)
    b = as_baseline(baseline, x, who=who)
    return _deeplift(_DeepLift(for_rules(model, who), target, float(eps)), taps.params_only(variables), x, b)


def deeplift_shap(model: Any, variables: Any, x: Any, target: Callable, baselines: Any, *, eps: float = 1e-10,
                  chunk: int | str | None = None, budget: float | None = None) -> jax.Array:
    """DeepLiftShap: the mean of :func:`deeplift` over ``baselines`` ``(K, *x.shape)``, ``chunk``
    references per call of one compiled program (``None`` = 8, ``"all"``; or the largest that
    fits ``budget`` bytes)."""
    who = "deeplift_shap"
    x = check_input(x, who=who)
    baselines = jnp.asarray(baselines, x.dtype)
    if baselines.ndim != x.ndim + 1 or baselines.shape[1:] != x.shape or baselines.shape[0] < 1:
        raise ValueError(f"{who}: baselines must be (K, *x.shape) = (K, {', '.join(map(str, x.shape))}); found "
                         f"{baselines.shape}")
    term = _ShapTerm(_DeepLift(for_rules(model, who), target, float(eps)))
    consts = (taps.params_only(variables), x)
    chunk = pick_chunk(term, consts, baselines, chunk, budget, who=who)
    return chunked_sum(term, consts, baselines, chunk=chunk) / baselines.shape[0]
