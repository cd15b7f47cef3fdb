"""Run a traced program with each chosen site's derivative replaced by its rule.

:func:`with_rules` is the whole mechanism: ``f(params, x)`` is traced once
(:func:`~jaxretina.propagation.program.trace`), its sites found, a composite picks a rule per
site, and the program is evaluated again with every ruled site wrapped in a ``jax.custom_vjp``
whose forward is the site's own operations (the output is unchanged, bit for bit) and whose
backward is the rule.  Reverse-mode differentiation of the result — one backward pass, like a
gradient — then propagates relevance instead of gradients.  It works under ``jit`` and
``vmap`` and on any function of arrays: jaxretina's models, wrapped Flax and Keras models.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxretina.propagation.program import Lit, Program, trace
from jaxretina.propagation.sites import Site, sites

__all__ = ["with_rules", "SiteView", "run"]


class SiteView:
    """What a rule sees of one site at its backward pass: the input values ``xs``, the output
    ``z``; for a linear site the merged ``weight()`` and ``bias()`` (full output shape) and
    ``linear(x, w)`` (the site's linear map with kernel ``w``, no bias); ``transpose(g)`` the
    site's own ``(∂z/∂x)ᵀ g`` per input."""

    def __init__(self, program: Program, site: Site, xs: tuple, consts: dict, z, ref_xs=None, ref_z=None):
        self.program, self.site, self.xs, self.consts, self.z = program, site, xs, consts, z
        self.ref_xs, self.ref_z = ref_xs, ref_z   # the site's inputs and output at the reference input
        self.kind, self.name = site.kind, site.name
        self.linear = self._linear if site.kind in ("conv", "dense") else None

    def _run(self, xs, kernel=None, affine=True):
        env = dict(self.consts)
        env.update(zip(self.site.inputs, xs))
        if kernel is not None:
            env[self.site.kernel] = kernel
        for n, k in enumerate(self.site.ops):
            op = self.program.ops[k]
            if n >= self.site.head and not affine and op.prim.name != "reshape":
                env[op.outs[0]] = env[_live_in(op, self.program)]
                continue
            op.run(env)
        return env[self.site.output]

    def fn(self, *xs):
        return self._run(xs)

    def transpose(self, g):
        if self.site.relu:   # jax.nn.relu's own derivative, [x > 0], without replaying its custom JVP
            return (jnp.where(self.xs[0] > 0, g, jnp.zeros_like(g)),)
        return jax.vjp(self.fn, *self.xs)[1](g)

    def _linear(self, x, w):
        return self._run((x,), kernel=w, affine=False)

    @property
    def _head(self):
        # the operation that makes the linear map's output (before bias and batch norm)
        return self.program.ops[self.site.ops[self.site.head - 1]]

    def _post(self, y):
        """The site's operations after its head applied to the head's output ``y``."""
        env = dict(self.consts)
        env[self._head.outs[0]] = y
        for k in self.site.ops[self.site.head:]:
            self.program.ops[k].run(env)
        return env[self.site.output]

    @functools.cached_property
    def _offset(self):
        # the site's output at a zero head output: the bias (and a merged batch norm's shift)
        return self._post(jnp.zeros(self._head.shapes[0], self.z.dtype))

    def bias(self):
        return self._offset

    def weight(self):
        kernel = self.consts[self.site.kernel]
        if not any(self.program.ops[k].prim.name in ("mul", "div") for k in self.site.ops[self.site.head:]):
            return kernel
        if self.site.kernel_out_axis is None:
            raise ValueError(f"layer {self.site.name!r}: its kernel has several output axes, so a merged batch norm "
                             "cannot be folded into it; use a rule that keeps the weights (Epsilon) or merge=False")
        one = jnp.ones(self._head.shapes[0], self.z.dtype)
        scale = self._post(one) - self._offset
        axis = self.site.out_axis
        per_channel = scale[tuple(slice(None) if d == axis else 0 for d in range(scale.ndim))]
        shape = [1] * kernel.ndim
        shape[self.site.kernel_out_axis] = -1
        return kernel * per_channel.reshape(shape)


def _live_in(op, program):
    return next(a for a in op.ins if isinstance(a, int) and a in program.live)


def _zeros_like(a):
    a = jnp.asarray(a)
    if jnp.issubdtype(a.dtype, jnp.inexact):
        return jnp.zeros_like(a)
    return np.zeros(a.shape, jax.dtypes.float0)


def _site_call(program: Program, site: Site, rule: Callable, env: dict, ref: dict | None):
    inside = {o for k in site.ops for o in program.ops[k].outs}
    const_ids = sorted({a for k in site.ops for a in program.ops[k].ins
                        if isinstance(a, int) and a not in inside and a not in site.inputs})
    xs = tuple(env[i] for i in site.inputs)
    consts = tuple(env[i] for i in const_ids)
    refs = () if ref is None else (tuple(ref[i] for i in site.inputs), ref[site.output])

    def view(xs, consts, refs, z=None):
        return SiteView(program, site, xs, dict(zip(const_ids, consts)), z, *(refs or (None, None)))

    @jax.custom_vjp
    def call(xs, consts, refs):
        return view(xs, consts, refs).fn(*xs)

    def fwd(xs, consts, refs):
        z = view(xs, consts, refs).fn(*xs)
        return z, (xs, consts, refs, z)

    def bwd(res, R):
        xs, consts, refs, z = res
        r_in = rule(view(xs, consts, refs, z), R)
        zeros = jax.tree.map(_zeros_like, (consts, refs))
        return (tuple(r.astype(x.dtype) for r, x in zip(r_in, xs)), *zeros)

    call.defvjp(fwd, bwd)
    return call(xs, consts, refs)


def run(program: Program, chosen: dict[int, tuple[Site, Callable]], params: Any, x: Any,
        ref: dict | None = None, probes: dict | None = None) -> tuple[list, dict]:
    """Evaluate ``program`` on ``params`` and ``x`` with the sites of ``chosen`` (keyed by
    their last operation) computed through their rules (which see ``ref``, the values of a
    reference run, when given), and ``probes[id]`` added to value ``id`` where it is made (a
    zero probe's gradient is the gradient at that value): ``(outputs, every value by id)``."""
    env: dict = dict(zip(program.captured_ids, program.captured))
    env.update(zip(program.param_ids, jax.tree.leaves(params)))
    env.update(zip(program.input_ids, jax.tree.leaves(x)))
    skip = {k for site, _ in chosen.values() for k in site.ops}
    for k, op in enumerate(program.ops):
        if k in chosen:
            site, rule = chosen[k]
            env[site.output] = _site_call(program, site, rule, env, ref)
            if probes and site.output in probes:
                env[site.output] = env[site.output] + probes[site.output]
            continue
        if k in skip:
            continue
        op.run(env)
        if probes:
            for o in op.outs:
                if o in probes:
                    env[o] = env[o] + probes[o]
    return [a.val if isinstance(a, Lit) else env[a] for a in program.outputs], env


def with_rules(f: Callable, choose: Callable[[list[Site]], dict[int, Callable]], *, merge: bool = False,
               reference: bool = False) -> Callable:
    """``g(params, x)`` computing ``f(params, x)`` whose reverse-mode derivative in ``x``
    applies, at each site ``choose`` picks a rule for, that rule.

    ``choose(sites) -> {site index: rule}`` (a composite's :meth:`choose`).  ``merge`` folds
    batch norms into the linear layers before them (zennit's canonizer).  ``reference=True``
    gives ``g(params, x, x_ref)``: the program also runs on ``x_ref`` (forward only) and each
    rule sees its site's inputs and output there (DeepLIFT's multipliers).
    """

    def g(params, x, x_ref=None):
        program = trace(f, params, x)
        found = sites(program, merge=merge)
        picked = choose(found)
        chosen = {max(found[i].ops): (found[i], rule) for i, rule in picked.items()}
        ref = None
        if reference:
            _, ref = run(program, {}, params, jax.lax.stop_gradient(x_ref))
        outs, _ = run(program, chosen, params, x, ref)
        return jax.tree.unflatten(program.out_tree, outs)

    return g
