"""A traced network as a flat list of operations (the rule mechanism's program).

:func:`trace` turns ``f(consts, x)`` into a :class:`Program`: its jaxpr with every call
(``jit``, ``closed_call``, ``remat``) inlined and ``shard_map``'s casts dropped, each operation
named by the Flax module (or ``jax.named_scope``) that issued it, the ids that depend on the
input (``live``) and on the parameters (``learned``) marked.  :mod:`~jaxretina.propagation.sites`
groups those operations into the places rules act on.

Example::

    >>> program = trace(lambda w, x: jnp.tanh(x @ w), jnp.ones((3, 2)), jnp.ones(3))
    >>> [op.prim.name for op in program.ops], len(program.live)
    (['dot_general', 'tanh'], 3)
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
from jax.extend import core

__all__ = ["Op", "Program", "Lit", "trace", "vary_like", "CALLS", "CASTS"]

CALLS = ("jit", "pjit", "closed_call", "core_call", "remat", "checkpoint")
# casts of the mesh axes a value varies over (traced inside shard_map): dropped from the
# program, :meth:`Op.bind` casts the operands it replays instead
CASTS = ("pvary", "pcast")


class Lit(NamedTuple):
    """A literal operand."""

    val: Any


class Op(NamedTuple):
    """One primitive application: operands are value ids (int) or :class:`Lit`."""

    prim: Any
    subfuns: tuple
    params: dict
    ins: tuple
    outs: tuple[int, ...]
    shapes: tuple[tuple[int, ...], ...]   # of the outputs
    scope: str
    traced: dict                           # the equation's own parameters (as traced)

    def run(self, env: dict) -> None:
        """Bind with the operands read from ``env`` (ids) or literal, and store the outputs."""
        env.update(zip(self.outs, self.bind(*[a.val if isinstance(a, Lit) else env[a] for a in self.ins])))

    def bind(self, *args):
        if self.prim.name not in ("custom_jvp_call", "custom_vjp_call"):   # those match their operands themselves
            args = _same_vma(args)
        out = self.prim.bind(*self.subfuns, *args, **self.params)
        return out if self.prim.multiple_results else [out]


def _vma(a) -> frozenset:
    """The mesh axes ``a`` varies over inside ``shard_map`` (``aval.vma`` in older JAX,
    ``aval.manual_axis_type.varying`` since 0.10)."""
    if isinstance(a, (int, float, complex, bool)) or type(a).__module__.startswith("numpy"):
        return frozenset()
    aval = jax.typeof(a)
    kind = getattr(aval, "manual_axis_type", None)
    return frozenset(kind.varying) if kind is not None else frozenset(getattr(aval, "vma", frozenset()))


def vary_like(a, ref):
    """``a`` cast to vary over the mesh axes ``ref`` varies over (inside ``shard_map``; a
    no-op elsewhere): a constant the rules make (ones, bounds) meeting a sharded input."""
    missing = _vma(ref) - _vma(a)
    return jax.lax.pcast(jax.numpy.asarray(a), tuple(sorted(missing)), to="varying") if missing else a


def _same_vma(args: Sequence) -> Sequence:
    """Inside ``shard_map`` the operands of one primitive must vary over the same mesh axes:
    jnp inserts the casts when it traces, a replayed primitive needs them too (a replicated
    parameter meeting a sharded input)."""
    vmas = [_vma(a) for a in args]
    every = frozenset().union(*vmas) if vmas else frozenset()
    if not every or all(v == every for v in vmas):
        return args
    out = []
    for a, v in zip(args, vmas):
        if v != every:
            if isinstance(a, (int, float, complex, bool)) or type(a).__module__.startswith("numpy"):
                # a literal or a captured numpy constant
                a = jax.numpy.asarray(a, a.dtype) if hasattr(a, "dtype") else jax.numpy.asarray(a)
            a = jax.lax.pcast(a, tuple(sorted(every - v)), to="varying")
        out.append(a)
    return out


class Program(NamedTuple):
    """A flat program: ``ops``; the traced constants (``captured_ids`` -> ``captured``); the
    ids of ``f``'s two arguments' leaves (``param_ids``, ``input_ids``); its ``outputs``
    (ids or :class:`Lit`); ``live`` the ids that depend on the input; every id's shape."""

    ops: tuple[Op, ...]
    captured_ids: tuple[int, ...]
    captured: tuple
    param_ids: tuple[int, ...]
    input_ids: tuple[int, ...]
    outputs: tuple
    live: frozenset
    learned: frozenset   # ids computed from f's first argument (its parameters)
    shapes: dict
    root: str
    out_tree: Any = None

    def producers(self) -> dict[int, Op]:
        """``{id: the operation that makes it}``."""
        return {o: op for op in self.ops for o in op.outs}

    def consumers(self) -> dict[int, list[int]]:
        uses: dict[int, list[int]] = {}
        for k, op in enumerate(self.ops):
            for a in op.ins:
                if isinstance(a, int):
                    uses.setdefault(a, []).append(k)
        for a in self.outputs:
            if isinstance(a, int):
                uses.setdefault(a, []).append(-1)
        return uses


def _bind_params(eqn) -> tuple[tuple, dict]:
    bind = eqn.primitive.get_bind_params(eqn.params)   # params; (subfuns, params) before jax 0.9
    return bind if isinstance(bind, tuple) else ((), bind)


def trace(f: Callable, consts: Any, x: Any) -> Program:
    """``f(consts, x)`` as a :class:`Program` (``x`` one array or a pytree; its leaves are the
    live inputs)."""
    closed, out_shape = jax.make_jaxpr(f, return_shape=True)(consts, x)
    n_const = len(jax.tree.leaves(consts))
    ops: list[Op] = []
    shapes: dict[int, tuple[int, ...]] = {}
    counter = iter(range(1 << 62))

    def new(var) -> int:
        i = next(counter)
        shapes[i] = tuple(var.aval.shape)
        return i

    def inline(jaxpr, args: list, scope: str) -> list:
        env: dict = dict(zip([*jaxpr.constvars, *jaxpr.invars], args))

        def read(v):
            return Lit(v.val) if isinstance(v, core.Literal) else env[v]

        for eqn in jaxpr.eqns:
            name = str(eqn.source_info.name_stack)
            here = "/".join(p for p in (scope, name) if p)
            ins = [read(v) for v in eqn.invars]
            if eqn.primitive.name in CALLS:
                inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
                body, inner_consts = (inner.jaxpr, inner.consts) if hasattr(inner, "consts") else (inner, ())
                outs = inline(body, [*constant(body.constvars, inner_consts), *ins], here)
            elif eqn.primitive.name in CASTS and len(ins) == len(eqn.outvars):
                outs = ins
            else:
                outs = [new(v) for v in eqn.outvars]
                subfuns, params = _bind_params(eqn)
                ops.append(Op(eqn.primitive, tuple(subfuns), params, tuple(ins), tuple(outs),
                              tuple(shapes[o] for o in outs), here, dict(eqn.params)))
            for v, o in zip(eqn.outvars, outs):
                if not isinstance(v, core.DropVar):
                    env[v] = o
        return [read(v) for v in jaxpr.outvars]

    const_vals: list[tuple[int, Any]] = []

    def constant(variables, values) -> list[int]:
        ids = [new(v) for v in variables]
        const_vals.extend(zip(ids, values))
        return ids

    top = closed.jaxpr
    arg_ids = [new(v) for v in top.invars]
    outputs = inline(top, [*constant(top.constvars, closed.consts), *arg_ids], "")
    input_ids = tuple(arg_ids[n_const:])
    live = set(input_ids)
    for op in ops:
        if any(isinstance(a, int) and a in live for a in op.ins):
            live.update(op.outs)
    learned = set(arg_ids[:n_const])
    for op in ops:
        if any(isinstance(a, int) and a in learned for a in op.ins) and not set(op.outs) & live:
            learned.update(op.outs)
    cids, cvals = zip(*const_vals) if const_vals else ((), ())
    return Program(tuple(ops), tuple(cids), tuple(cvals), tuple(arg_ids[:n_const]), input_ids, tuple(outputs),
                   frozenset(live), frozenset(learned), shapes, _root(ops), jax.tree.structure(out_shape))


def _root(ops: Sequence[Op]) -> str:
    # the outermost scope every operation shares (a Flax model's class name)
    scopes = [op.scope.split("/") for op in ops if op.scope]
    if not scopes:
        return ""
    first = scopes[0][0]
    return first if all(s[0] == first for s in scopes) else ""


