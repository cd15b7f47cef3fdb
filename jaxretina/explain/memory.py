"""How much device memory an Integrated Gradients chunk needs, and the largest chunk within a budget.

IG's memory grows with ``chunk`` (path points per compiled program, each a forward and a
backward pass held at once) and not with ``steps``.  XLA states a compiled program's buffers
before it runs (``compiled.memory_analysis()``: arguments, outputs, temporaries; on CPU, GPU and
TPU alike), so the chunk can be chosen without trying it: the footprint is affine in the chunk,
``bytes(c) ≈ a + b·c``, measured from the programs for ``c = 1`` and ``c = 2`` and checked on the
chosen one.

Example (a DS6 U-Net on a 16³ patch, 8 steps, at most 1 GB; seed 003 ran 64³ patches)::

    >>> f = explain.model_fn(unet, unet_variables, targets.argmax_score(1))
    >>> patch = volume[:16, :16, :16]
    >>> chunk, need = explain.ig_chunk_for_budget(f, patch, 1e9, steps=8)
    >>> 1 <= chunk <= 8 and need <= 1e9
    True
    >>> ig = explain.integrated_gradients(f, patch, baseline=0.0, steps=8, chunk=chunk)
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxretina.explain.core import sum_over, as_baseline, check_chunk, check_input, split_fn

__all__ = ["ig_chunk_memory", "ig_chunk_for_budget", "compiled_bytes", "chunk_memory", "chunk_for_budget",
           "pick_chunk"]


def _plan_for(f, x, baseline, stem):
    from jaxretina.explain.gradients import ig_plan  # the same plan integrated_gradients runs

    x = check_input(x, who="ig_chunk_memory")
    b = as_baseline(baseline, x, who="ig_chunk_memory")
    fn, data = split_fn(f)
    return ig_plan(fn, data, x, b, stem), x.dtype


def ig_chunk_memory(f: Callable, x: Any, chunk: int, *, baseline: Any = 0.0, stem: bool = True) -> int:
    """Bytes XLA allocates for one IG chunk program of ``chunk`` path points (arguments +
    outputs + temporaries; the model's variables are among the arguments)."""
    if not (isinstance(chunk, int) and chunk >= 1):
        raise ValueError(f"ig_chunk_memory: chunk must be a positive int; found {chunk!r}")
    plan, dtype = _plan_for(f, x, baseline, stem)
    nodes = jnp.zeros((chunk,), dtype)
    return chunk_memory(plan.term, plan.consts, (nodes, nodes), chunk, who="ig_chunk_memory")


def chunk_memory(term: Callable, consts: Any, xs: Any, chunk: int, *, who: str = "chunk_memory") -> int:
    """Bytes XLA allocates for the chunk program of :func:`~jaxretina.explain.core.chunked_sum`
    holding ``chunk`` items of ``xs`` (the first ``chunk`` along the leading axis; only their
    shapes matter) — the one measure every batched method's chunk is chosen by."""
    part = jax.tree.map(lambda a: jax.ShapeDtypeStruct((chunk, *a.shape[1:]), a.dtype), xs)
    need = compiled_bytes(sum_over.lower(term, consts, part).compile())
    if need is None:
        raise RuntimeError(f"{who}: this backend's compiler reports no memory analysis")
    return need


def chunk_for_budget(term: Callable, consts: Any, xs: Any, budget_bytes: float, *, who: str = "chunk_for_budget",
                     ) -> tuple[int, int]:
    """The largest chunk of ``xs``'s items whose chunk program fits ``budget_bytes``, and its
    bytes: measured for chunks 1 and 2, the affine estimate ``a + b·c`` checked on the choice.
    Raises ``ValueError`` when one item already does not fit."""
    n = jax.tree.leaves(xs)[0].shape[0]
    measured: dict[int, int] = {}

    def bytes_for(chunk: int) -> int:
        if chunk not in measured:
            measured[chunk] = chunk_memory(term, consts, xs, chunk, who=who)
        return measured[chunk]

    one = bytes_for(1)
    if one > budget_bytes:
        raise ValueError(f"{who}: one item already needs {one / 1e9:.2f} GB; the budget is {budget_bytes / 1e9:.2f} GB "
                         "(use a smaller input or a narrower model)")
    if n == 1:
        return 1, one
    per_item = max(bytes_for(2) - one, 1)
    chunk = int(min(n, 1 + (budget_bytes - one) // per_item))
    while bytes_for(chunk) > budget_bytes and chunk > 1:  # the affine estimate was optimistic
        chunk -= 1
    return chunk, bytes_for(chunk)


def compiled_bytes(compiled: Any) -> int | None:
    """Device bytes of a compiled program by XLA's accounting — arguments + outputs +
    temporaries − aliased (donated) buffers, per device for a sharded program — or ``None``
    when the backend reports no memory analysis."""
    stats = compiled.memory_analysis()
    if stats is None:
        return None
    return int(stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
               - stats.alias_size_in_bytes)


def ig_chunk_for_budget(
    f: Callable, x: Any, budget_bytes: float, *, steps: int, baseline: Any = 0.0, stem: bool = True,
) -> tuple[int, int]:
    """The largest ``chunk <= steps`` whose IG program fits ``budget_bytes``, and its bytes.

    Raises ``ValueError`` when even one path point per program does not fit.  Compiles the
    programs for ``chunk`` 1, 2 and the chosen one (each once).
    """
    plan, dtype = _plan_for(f, x, baseline, stem)
    nodes = jax.ShapeDtypeStruct((int(steps),), dtype)
    try:
        return chunk_for_budget(plan.term, plan.consts, (nodes, nodes), budget_bytes, who="ig_chunk_for_budget")
    except ValueError as e:
        raise ValueError(str(e).replace("one item", "one path point")) from None


def pick_chunk(term: Callable, consts: Any, xs: Any, chunk: int | str | None, budget: float | None, *, who: str) -> int:
    """The chunk a batched method runs: ``chunk`` as given (``None`` = 8, ``"all"``), or, with
    ``budget`` (bytes), the largest that fits it (:func:`chunk_for_budget`)."""
    n = jax.tree.leaves(xs)[0].shape[0]
    if budget is None:
        return check_chunk(chunk, n, who=who)
    if chunk is not None:
        raise ValueError(f"{who}: give chunk or budget, not both")
    if not (isinstance(budget, (int, float)) and not isinstance(budget, bool) and budget > 0):
        raise ValueError(f"{who}: budget must be a positive number of bytes; found {budget!r}")
    return chunk_for_budget(term, consts, xs, float(budget), who=who)[0]
