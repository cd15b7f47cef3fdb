"""The *sites* of a traced program: the places a propagation rule is chosen for.

:func:`sites` groups the operations of a :class:`~jaxretina.propagation.program.Program` that
depend on the input ``x`` into:

============  ==============================================================================
kind          the operations (``z`` the site's output)
============  ==============================================================================
``conv``      a convolution of the input with a constant kernel, then the elementwise affine
              operations with constants that follow it: ``z = s ⊙ conv(x, W) + t`` (bias; with
              ``merge=True`` also a following batch norm, zennit's "canonizer"); the
              convolution may be a region under the ``jaxretina.linear`` scope
              (:data:`~jaxretina.models.scopes.LINEAR_SCOPE`: a 3-D convolution written as
              padding, slices and 2-D convolutions)
``dense``     the same with ``dot_general`` (a fully connected layer)
``affine``    elementwise ``z = s ⊙ x + t`` with constants not after a linear layer (an
              unmerged batch norm, a normalisation)
``sum``       ``z = a + b`` of two input-dependent values (a residual connection)
``avgpool``   a sum over windows or spatial axes, then a constant scale (average pooling;
              a ``reduce_sum`` over the last, channel, axis is not a pool), or a convolution or
              ``dot_general`` with a constant kernel not computed from the parameters (adaptive
              pooling, resizing)
``maxpool``   ``reduce_max`` / ``reduce_window_max``, or a region under the ``jaxretina.maxpool``
              scope (a max pool written as selections, :func:`~jaxretina.models.layers.first_max`)
``activation`` a ReLU (``jax.nn.relu`` or ``max(x, 0)``) or a region under the
              ``jaxretina.activation`` scope (:func:`mark_activation`)
============  ==============================================================================

Everything else (reshape, concatenation, padding, slicing, resizing by gather) is left to the
plain gradient, which moves relevance without changing its sum.

Example::

    >>> import flax.linen as nn
    >>> class Net(nn.Module):
    ...     @nn.compact
    ...     def __call__(self, x):
    ...         x = nn.relu(nn.Conv(4, (3, 3), name="conv1")(x))
    ...         return nn.Dense(2, name="fc")(x.reshape(x.shape[0], -1))
    >>> net = Net()
    >>> v = net.init(jax.random.key(0), jnp.ones((1, 5, 5, 3)))
    >>> program = trace(lambda v, x: net.apply(v, x), v, jnp.ones((1, 5, 5, 3)))
    >>> [(s.kind, s.name) for s in sites(program)]
    [('conv', 'conv1'), ('activation', ''), ('dense', 'fc')]
"""

from __future__ import annotations

import fnmatch
from typing import Any, Callable, NamedTuple

import numpy as np
import jax
from jax.extend import core

from jaxretina.models.scopes import ACTIVATION_SCOPE, LINEAR_SCOPE, MAXPOOL_SCOPE
from jaxretina.models.tap_points import TAP_SCOPE
from jaxretina.propagation.program import CALLS, CASTS, Lit, Op, Program, trace

__all__ = ["Site", "sites", "layer_sites", "mark_activation", "ACTIVATION_SCOPE", "LINEAR_SCOPE", "KINDS", "LINEAR"]

KINDS = ("conv", "dense", "affine", "sum", "avgpool", "maxpool", "activation")
LINEAR = ("conv", "dense")
_AFFINE = ("add", "sub", "mul", "div")


class Site(NamedTuple):
    """Operations a rule replaces as a unit: ``ops`` (indices, in order), its ``inputs`` (live
    ids), its ``output`` id, the ``kind`` (see the module docstring) and the layer ``name``
    (the issuing module's path below the root, ``/``-separated).  For ``conv``/``dense``:
    ``kernel`` (the id of the constant kernel), ``out_axis`` (output channel axis),
    ``kernel_out_axis`` (the kernel's output axis, or ``None`` when it has several) and
    ``head`` (how many of ``ops`` compute the linear map; the rest are its affine chain)."""

    kind: str
    name: str
    ops: tuple[int, ...]
    inputs: tuple[int, ...]
    output: int
    kernel: int | None = None
    out_axis: int | None = None
    kernel_out_axis: int | None = None
    relu: bool = False   # an activation site that is one ReLU
    nonneg: bool = False   # a linear site whose input is never negative (after a ReLU): rules skip x⁻ terms
    head: int = 1

    def matches(self, pattern: str) -> bool:
        return fnmatch.fnmatchcase(self.name, pattern)


def mark_activation(act: Callable) -> Callable:
    """``act`` computed under the ``jaxretina.activation`` scope, so :func:`sites` finds each
    call of it as one ``activation`` site (models that route their nonlinearity through a field)."""
    return _Marked(act)


class _Marked(NamedTuple):
    act: Callable

    def __call__(self, x):
        with jax.named_scope(ACTIVATION_SCOPE):
            return self.act(x)


# -- sites --------------------------------------------------------------------------------------

def _is_relu(op: Op) -> bool:
    name = op.prim.name
    if name == "custom_jvp_call":
        body = op.traced.get("call_jaxpr")
        body = getattr(body, "jaxpr", body)
        return body is not None and _only_relu(body)
    if name == "max" and len(op.ins) == 2:
        lits = [a for a in op.ins if isinstance(a, Lit)]
        return len(lits) == 1 and not jax.numpy.ndim(lits[0].val) and float(lits[0].val) == 0.0
    return False


def _only_relu(jaxpr) -> bool:
    # a body computing one ReLU: a single max(x, 0), possibly inside nested calls
    eqns = [e for e in jaxpr.eqns if e.primitive.name not in CASTS]
    if len(eqns) != 1:
        return False
    eqn = eqns[0]
    if eqn.primitive.name in CALLS:
        inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
        return _only_relu(getattr(inner, "jaxpr", inner))
    if eqn.primitive.name == "max" and len(eqn.invars) == 2:
        made = {o: e for e in jaxpr.eqns if e.primitive.name in CASTS for o in e.outvars}
        ins = [made[v].invars[0] if not isinstance(v, core.Literal) and v in made else v
               for v in eqn.invars]   # a cast zero is a zero
        lits = [v for v in ins if isinstance(v, core.Literal)]
        return len(lits) == 1 and not jax.numpy.ndim(lits[0].val) and float(lits[0].val) == 0.0
    return False


def _layer_name(program: Program, scope: str) -> str:
    parts = []
    for p in scope.split("/"):
        if p and p not in (ACTIVATION_SCOPE, LINEAR_SCOPE, MAXPOOL_SCOPE, TAP_SCOPE) and (not parts or parts[-1] != p):
            parts.append(p)   # a module whose method calls its parent class's repeats its name
    if program.root and parts and parts[0] == program.root:
        parts = parts[1:]
    return "/".join(parts)


def _linear_head(program: Program, op: Op):
    """``(kernel position, output channel axis, kernel output axis)`` of a linear layer, or None."""
    live = [isinstance(a, int) and a in program.live for a in op.ins]
    if sum(live) != 1 or len(op.ins) != 2:
        return None
    k = live.index(False)
    if not (isinstance(op.ins[k], int) and op.ins[k] in program.learned):
        return None   # a fixed linear map (pooling, resizing by einsum): not a learned layer
    if op.prim.name == "conv_general_dilated":
        if k != 1:
            return None
        dn = op.params["dimension_numbers"]
        return 1, dn.out_spec[1], dn.rhs_spec[0]
    if op.prim.name == "dot_general":
        (lc, rc), (lb, rb) = op.params["dimension_numbers"]
        kernel_shape = program.shapes[op.ins[k]] if isinstance(op.ins[k], int) else ()
        contract, batch = (lc, lb) if k == 0 else (rc, rb)
        free = [d for d in range(len(kernel_shape)) if d not in contract and d not in batch]
        out_rank = len(op.shapes[0])
        if len(free) != 1:
            return k, out_rank - 1, None
        # output axes: batch, lhs free, rhs free
        out_axis = out_rank - 1 if k == 1 else len(lb) + free.index(free[0])
        return k, out_axis, free[0]
    return None


def _fixed_map(program: Program, op: Op) -> bool:
    live = [isinstance(a, int) and a in program.live for a in op.ins]
    return len(op.ins) == 2 and sum(live) == 1 and not (
        isinstance(op.ins[live.index(False)], int) and op.ins[live.index(False)] in program.learned)


def _per_channel(program: Program, producers: dict, ref, axis: int, rank: int) -> bool:
    """Whether a constant operand varies along output axis ``axis`` only (a per-channel scale)."""
    if isinstance(ref, Lit):
        return jax.numpy.ndim(ref.val) == 0
    shape = program.shapes[ref]
    if len(shape) == rank and all(n == 1 for d, n in enumerate(shape) if d != axis):
        return True
    op = producers.get(ref)
    if op is not None and op.prim.name == "broadcast_in_dim":
        src = op.ins[0]
        src_shape = program.shapes[src] if isinstance(src, int) else ()
        dims = op.params["broadcast_dimensions"]
        return all(n == 1 or dims[d] == axis for d, n in enumerate(src_shape))
    return False


def sites(program: Program, *, merge: bool = False) -> list[Site]:
    """The sites of ``program`` in execution order (see the module docstring); ``merge``
    folds a per-channel affine map that follows a linear layer in another module (a batch
    norm) into that layer."""
    live = program.live
    uses = program.consumers()
    producers = program.producers()
    taken: set[int] = set()
    found: list[Site] = []
    selections = _selections(program, producers)
    regions = _regions(program, LINEAR_SCOPE)
    marked = {**{i: ("maxpool", r) for i, r in _regions(program, MAXPOOL_SCOPE).items()},
              **{i: ("activation", r) for i, r in _regions(program, ACTIVATION_SCOPE).items()}}
    nonneg = _nonnegative(program, producers)

    def live_operand(op: Op) -> tuple[int | None, Any]:
        ids = [a for a in op.ins if isinstance(a, int) and a in live]
        if len(ids) != 1 or len(op.ins) != 2:
            return None, None
        other = next(a for a in op.ins if a is not ids[0] and not (isinstance(a, int) and a == ids[0]))
        return ids[0], other

    def chain(start: int, out: int, scope: str, axis: int | None, rank: int, across: bool):
        """Extend a site over the elementwise affine ops with constants that follow it:
        ``(ops, output id, output channel axis)``."""
        ops: list[int] = []
        while True:
            users = uses.get(out, [])
            if len(users) != 1 or users[0] < 0 or users[0] in taken:
                return ops, out, axis
            j = users[0]
            op = program.ops[j]
            if TAP_SCOPE in op.scope.split("/"):
                return ops, out, axis
            if (op.prim.name == "reshape" and axis == rank - 1 and op.shapes[0]
                    and op.shapes[0][-1] == program.shapes[out][-1] and (op.scope == scope or across)):
                ops.append(j)   # e.g. a 3-D convolution computed as a 2-D one: channels stay last
                out, rank, axis = op.outs[0], len(op.shapes[0]), len(op.shapes[0]) - 1
                continue
            if op.prim.name not in _AFFINE or op.shapes[0] != program.shapes[out]:
                return ops, out, axis
            x, other = live_operand(op)
            if x != out or (op.prim.name == "div" and op.ins[0] != out):
                return ops, out, axis
            if op.scope != scope and not across:
                return ops, out, axis
            if op.prim.name in ("mul", "div") and (axis is None or not _per_channel(program, producers, other, axis, rank)):
                if op.scope != scope or axis is not None:
                    return ops, out, axis
            ops.append(j)
            out = op.outs[0]

    for i, op in enumerate(program.ops):
        if i in taken or not any(isinstance(a, int) and a in live for a in op.ins):
            continue
        if TAP_SCOPE in op.scope.split("/"):
            continue   # a tap's perturbation, scale or replacement: instrumentation, not a layer
        name = op.prim.name
        head = _linear_head(program, op)
        site = _linear_region(program, regions[i], uses) if i in regions else None
        if site is not None:
            rank = len(program.shapes[site.output])
            rest, out, axis = chain(i, site.output, _outside(op.scope, LINEAR_SCOPE), rank - 1, rank, merge)
            site = site._replace(ops=site.ops + tuple(rest), output=out, out_axis=axis,
                                 nonneg=site.inputs[0] in nonneg)
        elif head is not None and name in ("conv_general_dilated", "dot_general"):
            k, axis, kaxis = head
            rest, out, axis = chain(i, op.outs[0], op.scope, axis, len(op.shapes[0]), merge)
            x = op.ins[1 - k]
            site = Site("conv" if name == "conv_general_dilated" else "dense", _layer_name(program, op.scope),
                        (i, *rest), (x,), out, op.ins[k], axis, kaxis, nonneg=x in nonneg)
        elif name in ("conv_general_dilated", "dot_general") and _fixed_map(program, op):
            # a constant, not learned, kernel: adaptive average pooling, resizing
            site = Site("avgpool", _layer_name(program, op.scope), (i,), (next(a for a in op.ins if a in live),),
                        op.outs[0])
        elif i in marked:
            site = _region_site(program, *marked[i], uses)
        elif _is_relu(op):
            x = next(a for a in op.ins if isinstance(a, int))
            site = Site("activation", _layer_name(program, op.scope), (i,), (x,), op.outs[0], relu=True)
        elif name == "add" and op.outs[0] not in selections and all(isinstance(a, int) and a in live for a in op.ins) \
                and program.shapes[op.ins[0]] == program.shapes[op.ins[1]] == op.shapes[0]:
            site = Site("sum", _layer_name(program, op.scope), (i,), tuple(op.ins), op.outs[0])
        elif (name == "reduce_sum" and len(op.shapes[0]) >= 1
              and len(program.shapes[op.ins[0]]) - 1 not in op.params["axes"]) or name == "reduce_window_sum":
            rest, out, _ = chain(i, op.outs[0], op.scope, None, len(op.shapes[0]), False)
            site = Site("avgpool", _layer_name(program, op.scope), (i, *rest), (op.ins[0],), out)
        elif name in ("reduce_max", "reduce_window_max"):
            site = Site("maxpool", _layer_name(program, op.scope), (i,), (op.ins[0],), op.outs[0])
        elif name in _AFFINE and live_operand(op)[0] is not None and (name != "div" or op.ins[0] in live):
            x, _ = live_operand(op)
            rest, out, _ = chain(i, op.outs[0], op.scope, None, len(op.shapes[0]), False)
            site = Site("affine", _layer_name(program, op.scope), (i, *rest), (x,), out)
        if site is not None:
            taken.update(site.ops)
            found.append(site)
    return found


def _scalar(producers: dict, ref) -> float | None:
    """The value of a scalar literal, possibly broadcast or converted (a pad value, the zero of
    a selection); ``None`` for anything else."""
    while not isinstance(ref, Lit):
        op = producers.get(ref)
        if op is None or op.prim.name not in ("broadcast_in_dim", "convert_element_type"):
            return None
        ref = op.ins[0]
    v = np.asarray(ref.val)
    return float(v) if v.ndim == 0 else None


_KEEP_SIGN = ("reshape", "transpose", "broadcast_in_dim", "squeeze", "expand_dims", "slice", "dynamic_slice",
              "convert_element_type", "stop_gradient", "copy", "reduce_max", "reduce_sum", "reduce_window_max",
              "reduce_window_sum", "concatenate", "max", "add", "mul", "div", "select_n", "pad", "cumsum")


def _nonnegative(program: Program, producers: dict) -> set[int]:
    """Ids whose values are never negative: ReLU outputs and what sign-keeping operations make
    of them (pools, reshapes, concatenations, sums, selections); padding with 0, or with −inf
    before a max (a max pool never selects it), keeps the sign."""
    found: set[int] = set()

    def constant(a) -> bool:
        v = _scalar(producers, a)
        return v is not None and (v >= 0 or v == -np.inf)

    for op in program.ops:
        name = op.prim.name
        if _is_relu(op):
            found.update(op.outs)
            continue
        if name not in _KEEP_SIGN:
            continue
        operands = op.ins[1:] if name == "select_n" else op.ins   # a predicate has no sign
        if all((isinstance(a, int) and a in found) or constant(a) for a in operands) \
                and any(isinstance(a, int) and a in found for a in operands):
            found.update(op.outs)
    return found


def _selections(program: Program, producers: dict) -> set[int]:
    """Ids of ``where(c, v, 0)`` and of sums of those: a maximum written as selections
    (:func:`jaxretina.models.layers.first_max`), whose adds route, not sum."""
    found: set[int] = set()
    for op in program.ops:
        if op.prim.name == "select_n" and any(_scalar(producers, a) == 0.0 for a in op.ins[1:]):
            found.add(op.outs[0])
        elif op.prim.name == "add" and all(isinstance(a, int) and a in found for a in op.ins):
            found.add(op.outs[0])
    return found


def _outside(scope: str, marker: str) -> str:
    """``scope`` above ``marker``: the module a marked region belongs to."""
    parts = scope.split("/")
    return "/".join(parts[:parts.index(marker)]) if marker in parts else scope


def _regions(program: Program, marker: str) -> dict[int, tuple[int, ...]]:
    """``{first op with a live operand: the region's ops}`` for the maximal runs of
    consecutive operations under one ``marker`` scope (one module's call of it)."""
    found: dict[int, tuple[int, ...]] = {}

    def key(k):
        parts = program.ops[k].scope.split("/") if k < len(program.ops) else []
        return tuple(parts[:parts.index(marker) + 1]) if marker in parts else None

    start = None
    for k in range(len(program.ops) + 1):
        here = key(k)
        if start is not None and here != key(start):
            run = tuple(range(start, k))
            first_live = next((j for j in run if any(isinstance(a, int) and a in program.live
                                                     for a in program.ops[j].ins)), None)
            if first_live is not None:
                found[first_live] = run
            start = None
        if start is None and here is not None:
            start = k
    return found


def _linear_region(program: Program, ops: tuple[int, ...], uses: dict) -> Site | None:
    """A ``conv`` site for a region under :data:`LINEAR_SCOPE`, or ``None`` when the region is
    not what the scope promises: one live input, one learned kernel from outside whose last
    axis is the output's last axis, one output (made by the region's last operation)."""
    made = {o for k in ops for o in program.ops[k].outs}
    outside = {a for k in ops for a in program.ops[k].ins if isinstance(a, int) and a not in made}
    inputs = [a for a in outside if a in program.live]
    kernels = [a for a in outside if a in program.learned]
    used_outside = [o for o in made if any(u < 0 or u not in ops for u in uses.get(o, []))]
    last = program.ops[ops[-1]].outs
    if len(inputs) != 1 or len(kernels) != 1 or len(last) != 1 or used_outside != [last[0]]:
        return None
    out_shape, k_shape = program.shapes[last[0]], program.shapes[kernels[0]]
    if not out_shape or not k_shape or out_shape[-1] != k_shape[-1]:
        return None
    name = _layer_name(program, program.ops[ops[0]].scope)
    return Site("conv", name, ops, (inputs[0],), last[0], kernels[0], len(out_shape) - 1, len(k_shape) - 1,
                head=len(ops))


def _region_site(program: Program, kind: str, ops: tuple[int, ...], uses: dict) -> Site | None:
    """A ``kind`` site for a marked region: one live input from outside, one output used
    outside; ``None`` otherwise."""
    made = {o for k in ops for o in program.ops[k].outs}
    inputs = {a for k in ops for a in program.ops[k].ins if isinstance(a, int) and a in program.live and a not in made}
    outputs = [o for o in made if any(u < 0 or u not in ops for u in uses.get(o, []))]
    if len(inputs) != 1 or len(outputs) != 1:
        return None
    return Site(kind, _layer_name(program, program.ops[ops[0]].scope), tuple(ops), tuple(inputs), outputs[0])


def layer_sites(model: Any, variables: Any, x: Any, *, merge: bool = True) -> list[Site]:
    """The sites of ``model`` on one example ``x`` (no batch axis), in execution order."""
    from jaxretina import taps

    def f(v, z):
        return model.apply(v, z[None])

    return sites(trace(f, taps.params_only(variables), jax.numpy.asarray(x)), merge=merge)
