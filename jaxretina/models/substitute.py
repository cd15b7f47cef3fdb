"""Swap a network's ReLUs for another function by rewriting its jaxpr: rule-based methods
(guided backprop, deconvnet) on a model whose code calls ``nn.relu`` directly.

jaxretina's own models route every nonlinearity through their ``act`` field; a model written
elsewhere calls ``jax.nn.relu`` (``flax.linen.relu``) or ``jnp.maximum(x, 0)`` inline.
:func:`substitute_relu` traces ``f`` to a jaxpr and evaluates it with every ReLU — the
``relu`` custom-JVP call, and ``max(x, 0)`` with a literal zero — computed by ``act`` instead
(e.g. :func:`jaxretina.explain.guided_relu`, whose forward is the ReLU and whose backward
is guided backprop's).  Everything else is bound as it was traced, so the result is the same
function with the ReLUs' derivative rules replaced; under ``jit`` it compiles like the original.

Limits: ReLUs inside control flow (``lax.scan``, ``cond``, ``while``), ``remat`` or another
custom derivative are left as they are (Flax's ``nn.scan``/``nn.remat`` networks); other
activations (GELU, SiLU, leaky ReLU) are not swapped.

Example::

    >>> f = lambda x: jnp.sum(jax.nn.relu(x) + jnp.maximum(x, 0.0))
    >>> g = substitute_relu(f, jnp.tanh)
    >>> round(float(g(jnp.array([0.5, -2.0]))), 4)  # 2 · (tanh(0.5) + tanh(-2))
    -1.0038
"""

from __future__ import annotations

from typing import Any, Callable

import jax
from jax.extend import core

__all__ = ["substitute_relu", "count_relus", "SwapsRelu"]

_CALLS = ("jit", "pjit", "closed_call", "core_call")


def _only_relu(jaxpr) -> bool:
    # a body computing one ReLU: a single max(x, 0), possibly inside nested calls
    if len(jaxpr.eqns) != 1:
        return False
    eqn = jaxpr.eqns[0]
    inner = _inner(eqn)
    return _is_relu(eqn) or (inner is not None and _only_relu(inner[0]))


def _is_relu(eqn) -> bool:
    if eqn.primitive.name == "custom_jvp_call":
        body = eqn.params.get("call_jaxpr")
        return body is not None and _only_relu(getattr(body, "jaxpr", body))
    if eqn.primitive.name == "max" and len(eqn.invars) == 2:
        zero = [v for v in eqn.invars if isinstance(v, core.Literal) and getattr(v, "val", None) is not None]
        return len(zero) == 1 and not jax.numpy.ndim(zero[0].val) and float(zero[0].val) == 0.0
    return False


def _inner(eqn):
    if eqn.primitive.name not in _CALLS:
        return None
    closed = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
    if closed is None:
        return None
    return (closed.jaxpr, closed.consts) if hasattr(closed, "consts") else (closed, ())


def _evaluate(jaxpr, consts, args, act: Callable) -> list:
    env: dict = {}

    def read(v):
        return v.val if isinstance(v, core.Literal) else env[v]

    for v, c in zip(jaxpr.constvars, consts):
        env[v] = c
    for v, a in zip(jaxpr.invars, args):
        env[v] = a
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        inner = _inner(eqn)
        if _is_relu(eqn):
            x = next(v for v, var in zip(invals, eqn.invars) if not isinstance(var, core.Literal))
            outs = [act(x)]
        elif inner is not None:
            outs = _evaluate(inner[0], inner[1], invals, act)
        else:
            bind = eqn.primitive.get_bind_params(eqn.params)   # params; (subfuns, params) before jax 0.9
            subfuns, params = bind if isinstance(bind, tuple) else ((), bind)
            ans = eqn.primitive.bind(*subfuns, *invals, **params)
            outs = ans if eqn.primitive.multiple_results else [ans]
        for v, o in zip(eqn.outvars, outs):
            if not isinstance(v, core.DropVar):
                env[v] = o
    return [read(v) for v in jaxpr.outvars]


def substitute_relu(f: Callable, act: Callable[[jax.Array], jax.Array]) -> Callable:
    """``f`` with every ReLU computed by ``act`` (see the module docstring).  ``f``'s positional
    arguments must be arrays (or pytrees of arrays); its output any pytree."""

    def g(*args: Any) -> Any:
        closed, out_shape = jax.make_jaxpr(f, return_shape=True)(*args)
        outs = _evaluate(closed.jaxpr, closed.consts, jax.tree.leaves(args), act)
        return jax.tree.unflatten(jax.tree.structure(out_shape), outs)

    return g


class SwapsRelu:
    """Mixin for a Flax module with an ``act`` field whose network calls ReLUs inline (wrapped
    Flax or Keras models): ``apply`` computes those ReLUs by ``act`` when it is not the ReLU."""

    act: Callable

    def apply(self, variables: Any, *args: Any, **kwargs: Any) -> Any:
        plain = super().apply   # flax.linen.Module.apply
        if self.act is jax.nn.relu:
            return plain(variables, *args, **kwargs)
        return substitute_relu(lambda v, *a: plain(v, *a, **kwargs), self.act)(variables, *args)


def count_relus(f: Callable, *args: Any) -> int:
    """How many ReLUs :func:`substitute_relu` would swap in ``f(*args)`` (checks and docs)."""

    def count(jaxpr) -> int:
        n = 0
        for eqn in jaxpr.eqns:
            inner = _inner(eqn)
            n += 1 if _is_relu(eqn) else (count(inner[0]) if inner is not None else 0)
        return n

    return count(jax.make_jaxpr(f)(*args).jaxpr)
