"""Gradients at the outputs of chosen sites, and their offsets, from one forward and one
backward pass: the raw material of FullGrad (bias gradients).

:func:`site_gradients` traces ``f(params, x)`` (:func:`~jaxretina.propagation.program.trace`),
keeps the sites ``pick`` accepts, runs the program with a zero *probe* added to each kept site's
output ``z`` and differentiates in ``x`` and the probes at once: the probes' gradients are
``∂f/∂z``.  A site's *offset* is its output when its inputs are zero: the bias ``t`` of
``z = s ⊙ conv(x, W) + t``, or the shift ``β − μ γ / √(σ² + ε)`` of a batch norm (an
``affine`` site) — what FullGrad calls the layer's (implicit) bias.

Example::

    >>> import flax.linen as nn
    >>> class Net(nn.Module):
    ...     @nn.compact
    ...     def __call__(self, x):
    ...         return nn.Conv(2, (3, 3), name="conv")(x).sum()
    >>> net = Net(); v = net.init(jax.random.key(0), jnp.ones((1, 4, 4, 1)))
    >>> value, gx, found = site_gradients(lambda p, x: net.apply(p, x), v, jnp.ones((1, 4, 4, 1)),
    ...                                   lambda program, site: site.kind == "conv")
    >>> [(s.name, offset.shape, g.shape) for s, offset, g in found]
    [('conv', (1, 4, 4, 2), (1, 4, 4, 2))]
    >>> bool(jnp.all(found[0][2] == 1.0))   # ∂(Σ z)/∂z
    True
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxretina.propagation.evaluate import run
from jaxretina.propagation.program import Program, trace
from jaxretina.propagation.sites import Site, sites

__all__ = ["site_gradients", "site_offset"]


def site_offset(program: Program, site: Site, env: dict) -> jax.Array:
    """The output of ``site`` with its inputs set to zero, from the values ``env`` of a run."""
    local = {a: env[a] for k in site.ops for a in program.ops[k].ins if isinstance(a, int) and a in env}
    local.update({i: jnp.zeros_like(env[i]) for i in site.inputs})
    for k in site.ops:
        program.ops[k].run(local)
    return local[site.output]


def site_gradients(f: Callable, params: Any, x: Any, pick: Callable[[Program, Site], bool], *,
                   merge: bool = False) -> tuple[jax.Array, Any, list[tuple[Site, jax.Array, jax.Array]]]:
    """``(f(params, x), ∂f/∂x, [(site, offset, ∂f/∂z)])`` for the sites ``pick(program, site)``
    accepts (``f`` returns a scalar; ``merge`` folds batch norms into the linear layers before
    them).  Traceable: call it under ``jit``/``vmap``."""
    program = trace(f, params, x)
    found = [s for s in sites(program, merge=merge) if pick(program, s)]
    kinds = jax.eval_shape(lambda: run(program, {}, params, x)[1])            # every value's shape and dtype
    zeros = {s.output: jnp.zeros(kinds[s.output].shape, kinds[s.output].dtype) for s in found}

    def value(x, probes):
        outs, env = run(program, {}, params, x, probes=probes)
        offsets = [jax.lax.stop_gradient(site_offset(program, s, env)) for s in found]
        return outs[0], offsets

    (out, offsets), (gx, gz) = jax.value_and_grad(value, argnums=(0, 1), has_aux=True)(x, zeros)
    return out, gx, [(s, o, gz[s.output]) for s, o in zip(found, offsets)]
