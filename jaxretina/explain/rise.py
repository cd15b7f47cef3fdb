"""RISE (Petsiuk et al. 2018): the target's response to random smooth masks, as TorchRay
builds them, every masked input batched.

``S = (1/N) Σ_i t(x ⊙ M_i) M_i`` over ``N`` masks (TorchRay's normalisation: no division by
the keep probability ``p``).  A mask: a ``cells × cells`` (× ``cells`` for volumes) grid of
Bernoulli(``p``) cells, reflect-padded by one cell, (bi/tri)linearly upsampled (half-pixel
centres, as ``F.interpolate(align_corners=False)``) to ``c · (cells + 2)`` per axis with
``c = ⌈(n + s) / cells⌉``, ``s = ⌈n / cells⌉``, and cropped to the input from ``c + shift``,
``shift`` uniform in ``[0, s)`` per axis — TorchRay's ``_upsample_reflect`` and shift.  Mask ``i`` is drawn from ``fold_in(key, i)``: the
same masks for any chunking, and :func:`rise_masks` returns them.  TorchRay passes the logits
through a sigmoid; here the target decides (e.g. ``lambda out: jax.nn.sigmoid(out[c])``).

Example::

    >>> f = explain.model_fn(grader, grader_variables, targets.class_logit(3))
    >>> s = explain.rise(f, z, key=jax.random.key(0), masks=16, cells=4, chunk=8)
    >>> s.shape == z.shape[:-1]
    True
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from jaxretina.explain.core import check_input, chunked_sum, split_fn
from jaxretina.explain.memory import pick_chunk

__all__ = ["rise", "rise_masks", "rise_mask"]


def rise_mask(key: jax.Array, spatial: Sequence[int], cells: int, p: float, dtype=jnp.float32) -> jax.Array:
    """One RISE mask of shape ``spatial`` (see the module docstring)."""
    spatial = tuple(int(n) for n in spatial)
    k_grid, k_shift = jax.random.split(key)
    grid = (jax.random.uniform(k_grid, (cells,) * len(spatial)) < p).astype(dtype)
    cell = tuple(math.ceil(n / cells) for n in spatial)                      # the shift's range
    inner = tuple(math.ceil((n + c) / cells) for n, c in zip(spatial, cell))   # a cell of the upsampled grid
    up = jax.image.resize(jnp.pad(grid, 1, mode="reflect"), tuple(c * (cells + 2) for c in inner), method="linear",
                          antialias=False)
    shift = jax.random.randint(k_shift, (len(spatial),), 0, jnp.asarray(cell))
    return jax.lax.dynamic_slice(up, tuple(s + c for s, c in zip(shift, inner)), spatial)


def rise_masks(key: jax.Array, count: int, spatial: Sequence[int], *, cells: int = 7, p: float = 0.5,
               dtype=jnp.float32) -> jax.Array:
    """The ``count`` masks :func:`rise` draws from ``key``: ``(count, *spatial)``."""
    return jax.vmap(lambda i: rise_mask(jax.random.fold_in(key, i), spatial, cells, p, dtype))(jnp.arange(count))


class _Masked(NamedTuple):
    fn: Callable   # static half of f (core.split_fn); its data travel traced in consts
    cells: int
    p: float
    given: bool   # masks passed in (xs are masks) or drawn (xs are indices)

    def __call__(self, consts, item):
        data, x, key = consts
        m = item if self.given else rise_mask(jax.random.fold_in(key, item), x.shape[:-1], self.cells, self.p, x.dtype)
        return self.fn(*data, x * m[..., None]) * m


def rise(f: Callable, x: Any, *, key: jax.Array | None = None, masks: int | Any = 4000, cells: int = 7,
         p: float = 0.5, chunk: int | str | None = None, budget: float | None = None) -> jax.Array:
    """RISE saliency of ``f`` at one example ``x``: the input's spatial shape.

    ``masks``: how many to draw from ``key`` (``fold_in(key, i)`` each), or the masks themselves
    ``(N, *spatial)`` (e.g. TorchRay's); ``cells`` and ``p`` shape the drawn ones.  ``chunk``
    masked inputs (or as many as fit ``budget`` bytes) per call of one compiled program.
    """
    who = "rise"
    x = check_input(x, who=who)
    if isinstance(masks, int) and not isinstance(masks, bool):
        if masks < 1 or key is None:
            raise ValueError(f"{who}: drawing masks needs key= and masks ≥ 1; found masks={masks}, key={key}")
        if not (isinstance(cells, int) and cells >= 1 and 0 < p < 1):
            raise ValueError(f"{who}: cells must be a positive integer and 0 < p < 1; found cells={cells!r}, p={p!r}")
        n, xs, given = masks, jnp.arange(masks), False
    else:
        xs = jnp.asarray(masks, x.dtype)
        if xs.ndim != x.ndim or xs.shape[1:] != x.shape[:-1]:
            raise ValueError(f"{who}: masks must be (N, {', '.join(map(str, x.shape[:-1]))}); found {xs.shape}")
        n, given, key = xs.shape[0], True, jax.random.key(0) if key is None else key
    fn, data = split_fn(f)
    term, consts = _Masked(fn, int(cells), float(p), given), (data, x, key)
    return chunked_sum(term, consts, xs, chunk=pick_chunk(term, consts, xs, chunk, budget, who=who)) / n
