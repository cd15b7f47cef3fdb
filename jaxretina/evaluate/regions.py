"""Checking the inputs every map metric shares: an attribution map, a binary region of the same
shape (a lesion or vessel mask) and an optional field of view (the pixels or voxels that count).

Every metric of :mod:`jaxretina.evaluate` takes one example and is a pure ``jax.numpy``
function: batch it with ``jax.vmap``, compile it with ``jax.jit``.  Concrete inputs are checked
here (shapes, dtypes, finite values, 0/1 masks); traced ones are checked for shape and dtype
only, at trace time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import jax
import jax.numpy as jnp

from jaxretina.validate import check_example

__all__ = ["check_map", "check_region", "chance_level"]


def check_map(a: Any, *, who: str) -> jax.Array:
    """``a`` as a float array of at least one axis with finite values (checked when concrete)."""
    if np.ndim(a) < 1:
        raise ValueError(f"{who}: expected an attribution map of at least one axis; found a scalar")
    check_example(a, name=f"{who}: map")
    a = jnp.asarray(a)
    return a if a.dtype.itemsize >= 4 else a.astype(jnp.float32)   # float16/bfloat16 sums in float32


def check_region(mask: Any, shape: tuple[int, ...], *, who: str, name: str = "mask") -> jax.Array:
    """``mask`` as booleans of ``shape``: a bool array, or numbers that are all 0 or 1 (checked
    when concrete; a traced number array counts its non-zero entries as inside)."""
    if np.shape(mask) != tuple(shape):
        raise ValueError(f"{who}: {name} must have the map's shape {tuple(shape)}; found {np.shape(mask)} "
                         "(sum a map's channels first, e.g. a.sum(-1), to compare it with a spatial mask)")
    dtype = np.result_type(mask) if not hasattr(mask, "dtype") else mask.dtype
    if dtype != np.bool_ and not np.issubdtype(dtype, np.number):
        raise ValueError(f"{who}: {name} must be booleans or 0/1 numbers; found dtype {dtype}")
    if dtype != np.bool_ and not isinstance(mask, jax.core.Tracer):
        values = np.asarray(mask)
        if not np.isin(values, (0, 1)).all():
            bad = values[~np.isin(values, (0, 1))]
            raise ValueError(f"{who}: {name} must hold only 0 and 1 (or be boolean); found {bad.size} other values, "
                             f"e.g. {bad.flat[0]!r} (a 0/255 image mask: pass mask > 0)")
    mask = jnp.asarray(mask)
    return mask if mask.dtype == jnp.bool_ else mask != 0


def chance_level(mask: Any, *, fov: Any = None) -> jax.Array:
    """The fraction of the field of view inside ``mask``: ``|mask ∩ fov| / |fov|``.

    What a map without information scores on average for the pointing game, relevance mass,
    relevance rank, top-k intersection and energy pointing game (a uniformly random position, or
    a constant map), and the precision of a random ranking (AUPRC's baseline); AUROC's chance
    level is 0.5.  NaN for an empty field of view."""
    region = check_region(mask, np.shape(mask), who="chance_level")
    view = jnp.ones(region.shape, bool) if fov is None else check_region(fov, region.shape, who="chance_level",
                                                                         name="fov")
    n = view.sum(dtype=jnp.float32)
    return jnp.where(n > 0, (region & view).sum(dtype=jnp.float32) / jnp.maximum(n, 1), jnp.nan)
