"""Shared machinery of the explainers: scalar functions with traced data, chunked sums.

**Why functions are split in two.**  A jitted program embeds every array a Python closure
captures as a literal constant: a model's parameters captured by ``lambda z: score(model.apply(
variables, z))`` make compiles slow and double the memory.  Explainers therefore accept either
a plain callable (compiled once per distinct callable object, treated as static) or a
:class:`jax.tree_util.Partial`, whose bound arguments travel as ordinary traced arguments;
:func:`model_fn` builds such a function from (model, variables, target).

**How steps are chunked.**  :func:`chunked_sum` evaluates ``Σ_i term(consts, xs[i])`` with
``chunk`` terms ``vmap``-ed per jitted call and a host loop over the chunks that accumulates on
the device (no transfer to the host).  Measured on the 2-core build machine
(``python -m benchmarks.driu_attribution --chunking``: DRIU 256×256, IG 16 steps, chunks of 8):
host loop 6.6 s at 1.7 GB; ``lax.map(batch_size=8)`` 31.3 s; ``lax.scan`` over chunks 31.6 s;
the scan unrolled 7.4 s at 2.7 GB; all 16 steps in one ``vmap`` 8.3 s at 2.7 GB.  Under an
outer ``jit`` the loop simply unrolls, so the explainers stay jittable as a whole.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import jax
import jax.numpy as jnp
from jax.tree_util import Partial

from jaxretina import taps
from jaxretina.models import spec
from jaxretina.validate import check_example, check_finite

__all__ = [
    "DEFAULT_CHUNK", "model_fn", "split_fn", "chunked_sum", "check_chunk", "as_baseline", "scalar_output",
    "sum_over", "progress_callback", "example_output", "check_input", "OneExample", "along_axes", "box_mask",
]


def example_output(out: Any, *, who: str = "target") -> jax.Array:
    """The one example of a batched model output ``(1, ...)``; a clear error for a model that
    returns several outputs (the DS6 U-Net with ``deep_supervision=True``)."""
    if isinstance(out, (tuple, list)):
        raise ValueError(
            f"{who}: the model returns {len(out)} outputs (a tuple); explainers need one output map — "
            "use jaxretina.models.spec.for_explaining(model) (for UNet3D: DS6's inference output)"
        )
    return out[0]


def box_mask(shape: Sequence[int], starts: Sequence[Any], sizes: Sequence[int]) -> jax.Array:
    """Booleans of ``shape``: True where every one of the first ``len(starts)`` axes lies in
    ``[start, start + size)`` (the later axes, e.g. channels, all inside).  ``starts`` may be
    traced (one box of a vmapped batch)."""
    inside = jnp.ones(tuple(shape), bool)
    for axis, (start, size) in enumerate(zip(starts, sizes)):
        at, start = jax.lax.broadcasted_iota(jnp.int32, tuple(shape), axis), jnp.asarray(start, jnp.int32)
        inside = inside & (at >= start) & (at < start + size)
    return inside


def along_axes(a: jax.Array, matrices: Sequence[Any]) -> jax.Array:
    """``a`` with axis ``d`` replaced by ``matrices[d] @ a`` along it (``(m, n_d)`` matrices;
    ``None`` leaves an axis as it is): a separable linear map, e.g. a resize or a window sum."""
    for axis, m in enumerate(matrices):
        if m is not None:
            a = jnp.moveaxis(jnp.tensordot(jnp.asarray(m, a.dtype), a, axes=([1], [axis])), 0, axis)
    return a


class OneExample(NamedTuple):
    """``(params, z) -> model's output for the one example z`` (no batch axis in or out): the
    function rule-based methods trace; ``who`` names the method in errors."""

    model: Any
    who: str

    def __call__(self, params, z):
        return example_output(self.model.apply(params, z[None]), who=self.who)


class _ModelScore(NamedTuple):
    model: Any
    target: Callable

    def __call__(self, variables, x):
        return self.target(example_output(self.model.apply(variables, x[None])))

    @property
    def has_affine_stem(self) -> bool:
        """The model splits into an affine stem and a head (:mod:`jaxretina.models.stem`)."""
        return spec.has_affine_stem(self.model)

    def stem(self, variables, x):
        return self.model.apply(variables, x[None], part="stem")[0]

    def head(self, variables, z):
        return self.target(example_output(self.model.apply(variables, z[None], part="head")))


def model_fn(model: Any, variables: Any, target: Callable) -> Partial:
    """``x -> target(model(x))`` for one example, with ``variables`` passed as traced data.

    Tap-point collections that ``model.init`` returns (sized for its example input) are
    dropped, so variables initialised at any size explain inputs of every size.

    Example::

      >>> f = explain.model_fn(model, variables, targets.segmentation_sum())
      >>> ig = explain.integrated_gradients(f, x, baseline=0.0, steps=32)
    """
    return Partial(_ModelScore(model, target), taps.params_only(variables))


def split_fn(f: Callable) -> tuple[Callable, tuple]:
    """``(static, data)`` with ``f(x) == static(*data, x)``; ``data`` is traced, ``static`` hashed."""
    if isinstance(f, Partial):
        if f.keywords:
            raise TypeError(
                "a jax.tree_util.Partial passed as the explained function must bind positional "
                f"arguments only; found keywords {sorted(f.keywords)}"
            )
        return f.func, tuple(f.args)
    if not callable(f):
        raise TypeError(f"expected a callable mapping one example to a scalar; found {type(f).__name__}")
    return f, ()


def scalar_output(value: Any, *, who: str) -> jax.Array:
    """Check (at trace time) that a user function returned a scalar."""
    if jnp.shape(value) != ():
        raise ValueError(
            f"{who}: the function must map one example to a scalar; it returned shape "
            f"{jnp.shape(value)} (reduce the output with a jaxretina.targets target)"
        )
    return value


# Steps (or samples) per compiled chunk when the caller gives none.  Measured on the 2-core
# build machine (benchmarks/driu_attribution.py, DRIU 256×256, IG 16 steps): chunks of 8 ran
# 7.2 s at 1.7 GB peak; chunks of 4 8.4 s at 1.2 GB; all 16 in one vmap 8.3 s at 2.7 GB (and
# all 64 steps in one vmap peaked at 16 GB on the same net).  So the default bounds memory for free.
DEFAULT_CHUNK = 8


def check_chunk(chunk: int | str | None, n: int, *, who: str) -> int:
    """Resolve ``chunk`` to a positive int ``<= n``.

    ``None`` = :data:`DEFAULT_CHUNK`; ``"all"`` = all ``n`` in one ``vmap``.
    """
    if chunk is None:
        return min(DEFAULT_CHUNK, n)
    if chunk == "all":
        return n
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"{who}: chunk must be a positive int, 'all' or None; found {chunk!r}")
    return min(int(chunk), n)


def as_baseline(baseline: Any, x: jax.Array, *, who: str) -> jax.Array:
    """A baseline of ``x``'s shape and dtype from a scalar or a broadcastable array."""
    if baseline is None:
        raise ValueError(f"{who}: a baseline is required (e.g. 0.0, or a half-gray image)")
    b = jnp.asarray(baseline)
    try:
        b = jnp.broadcast_to(b.astype(x.dtype), x.shape)
    except ValueError:
        raise ValueError(
            f"{who}: baseline of shape {np.shape(baseline)} does not broadcast to the input "
            f"shape {x.shape}"
        ) from None
    check_finite(baseline, name=f"{who}: baseline")
    return b


def check_input(x: Any, *, who: str) -> jax.Array:
    check_example(x, name=f"{who}: x")
    return jnp.asarray(x)


@functools.partial(jax.jit, static_argnums=0)
def sum_over(term: Callable, consts: Any, xs: Any) -> Any:
    terms = jax.vmap(term, in_axes=(None, 0))(consts, xs)
    return jax.tree.map(lambda a: a.sum(0), terms)


def chunked_sum(term: Callable, consts: Any, xs: Any, *, chunk: int,
                progress: Callable[[int, int], None] | None = None) -> Any:
    """``Σ_i term(consts, xs_i)`` over the leading axis of the pytree ``xs``.

    ``term`` must be hashable (it is a static argument of the jitted chunk); ``consts`` and
    ``xs`` are traced.  At most two programs are compiled per (term, shapes): one for full
    chunks and one for a shorter last chunk.  ``progress(done, total)`` (items) is called after
    each chunk has finished (waiting for it: without ``progress`` chunks are only dispatched).
    """
    total = None
    n = jax.tree.leaves(xs)[0].shape[0]
    done = 0
    for part in _chunks(xs, chunk):
        size = jax.tree.leaves(part)[0].shape[0]
        part = sum_over(term, consts, part)
        total = part if total is None else jax.tree.map(jnp.add, total, part)
        if progress is not None:
            jax.block_until_ready(total)
            done += size
            progress(done, n)
    return total


def progress_callback(progress: Any, *, desc: str, unit: str) -> Callable[[int, int], None] | None:
    """``progress`` as a ``(done, total)`` callable: ``None``/``False`` -> ``None``, ``True`` -> a
    tqdm bar (closed when it reaches the total), a callable -> itself."""
    if progress is None or progress is False:
        return None
    if callable(progress):
        return progress
    if progress is not True:
        raise TypeError(f"progress must be True, False, None or a callable (done, total); found {progress!r:.40}")
    from tqdm.auto import tqdm

    bar = [None]

    def update(done: int, total: int) -> None:
        if bar[0] is None:
            bar[0] = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)
        bar[0].update(done - bar[0].n)
        if done >= total:
            bar[0].close()

    return update


def _chunks(xs: Any, chunk: int):
    """Consecutive slices of ``chunk`` along the leading axis of the pytree ``xs`` (the last may
    be shorter)."""
    n = jax.tree.leaves(xs)[0].shape[0]
    for start in range(0, n, chunk):
        yield jax.tree.map(lambda a: a[start : start + chunk], xs)


@functools.partial(jax.jit, static_argnums=0)
def _map_over(term: Callable, consts: Any, xs: Any) -> Any:
    return jax.vmap(term, in_axes=(None, 0))(consts, xs)


def chunked_map(term: Callable, consts: Any, xs: Any, *, chunk: int) -> Any:
    """``[term(consts, xs_i)]_i`` stacked along a new leading axis, computed ``chunk`` at a time
    (same compile contract as :func:`chunked_sum`)."""
    parts = [_map_over(term, consts, part) for part in _chunks(xs, chunk)]
    return jax.tree.map(lambda *p: jnp.concatenate(p, axis=0), *parts)
