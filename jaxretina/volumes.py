"""Whole volumes through 64³ patches: DS6's sliding-window inference, and attribution the same way.

DS6 segments a whole MRA volume patch by patch: patches of 64³ on a grid with overlap, each
patch's output divided by its own maximum, and the overlapping outputs averaged.
:func:`sliding_window` does this for any per-patch function (a model's probabilities, a
guided-backprop map, IG, every layer's map); :func:`predict` and :func:`attribute` are the two
common cases.

Patch grid per axis of length ``n`` (after padding to at least ``patch``): origins
``0, s, 2s, …`` with stride ``s = patch − round(overlap · patch)``, and the last patch flush
with the end, so every voxel is covered.  Voxel value = mean over the patches covering it
(each patch's map first divided by its maximum when ``normalize="max"``, by its largest
magnitude when ``normalize="absmax"``: signed maps keep their sign).

Programs per (function, volume shape, patch, batch): a batch of patches is cut out on the
device (``vmap`` of ``dynamic_slice``), mapped with ``vmap(fn)`` (compiled, for a forward pass)
or handed to an explainer that runs its own compiled programs, and added into the running sum
and count in place (buffers donated); a short last batch is padded with zero-weight patches,
so it reuses the programs.  Nothing leaves the device until the caller reads the result.

Example::

    >>> model = UNet3D(base_width=2, deep_supervision=False)             # DS6: base_width=64
    >>> variables = models.random_variables(model, (1, 16, 16, 16, 1))
    >>> prob = volumes.predict(model, variables, volume, patch=16, overlap=0.5)        # seed 003: patch=64
    >>> prob.shape                                                                      # (D, H, W, 1)
    (32, 32, 32, 1)
    >>> gbp = volumes.attribute("guided_backprop", model, variables, volume, targets.segmentation_sum(), patch=16)
    >>> gbp.shape
    (32, 32, 32, 1)
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import jax
import jax.numpy as jnp
from jax.tree_util import Partial

from jaxretina import caches, explain, taps
from jaxretina.models import spec
from jaxretina.explain.core import example_output, split_fn
from jaxretina.validate import check_example

__all__ = ["patch_origins", "sliding_window", "predict", "attribute", "METHODS"]

_NORMALIZE = (None, "max", "absmax")


def _triple(v: int | Sequence[int], what: str) -> tuple[int, int, int]:
    t = (v,) * 3 if isinstance(v, (int, np.integer)) else tuple(v)
    if len(t) != 3 or not all(isinstance(i, (int, np.integer)) and i > 0 for i in t):
        raise ValueError(f"{what} must be a positive int or three positive ints; found {v!r}")
    return tuple(int(i) for i in t)


def patch_origins(shape: Sequence[int], patch: int | Sequence[int] = 64, overlap: float = 0.5) -> np.ndarray:
    """Patch corners ``(P, 3)`` covering a volume of spatial ``shape`` (each axis ``>= patch``).

    Example::

      >>> patch_origins((100, 64, 64), 64, 0.5)[:, 0]
      array([ 0, 32, 36], dtype=int32)
    """
    patch = _triple(patch, "patch")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1); found {overlap!r}")
    axes = []
    for n, p in zip(shape, patch):
        if n < p:
            raise ValueError(f"volume axis of length {n} is shorter than the patch ({p}); pad it first")
        stride = max(1, p - int(round(overlap * p)))
        starts = list(range(0, n - p + 1, stride))
        if starts[-1] != n - p:
            starts.append(n - p)
        axes.append(starts)
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    return grid.astype(np.int32)


def _normalized(maps: jax.Array, how: str | None) -> jax.Array:
    if how is None:
        return maps
    axes = tuple(range(maps.ndim - 4, maps.ndim))  # per patch (and per leading map) over D, H, W, C
    top = (jnp.abs(maps) if how == "absmax" else maps).max(axis=axes, keepdims=True)
    return jnp.where(top > 0, maps / jnp.where(top > 0, top, 1), 0)


@functools.partial(jax.jit, static_argnums=0)
def _cut(patch, volume, origins):
    return jax.vmap(lambda o: jax.lax.dynamic_slice(volume, (*o, 0), (*patch, volume.shape[-1])))(origins)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _mapped(fn, normalize, data, patches):
    return _normalized(jax.vmap(lambda p: fn(*data, p))(patches), normalize)


@functools.partial(jax.jit, static_argnums=(0, 1), donate_argnums=(2, 3))
def _accumulate(normalize, patch, total, count, maps, origins, weights):
    maps = _normalized(maps, normalize)
    lead = total.ndim - 4

    def add(i, carry):
        total, count = carry
        start = (0,) * lead + tuple(origins[i]) + (0,)
        old = jax.lax.dynamic_slice(total, start, maps.shape[1:])
        total = jax.lax.dynamic_update_slice(total, old + weights[i] * maps[i], start)
        old = jax.lax.dynamic_slice(count, (*origins[i], 0), (*patch, 1))
        return total, jax.lax.dynamic_update_slice(count, old + weights[i], (*origins[i], 0))

    return jax.lax.fori_loop(0, origins.shape[0], add, (total, count))


def _step(fn, normalize, patch, data, volume, total, count, origins, weights, jit):
    patches = _cut(patch, volume, origins)
    if jit:  # fn compiled with the batch's vmap (model forward passes)
        maps = _mapped(fn, None, data, patches)
    elif patches.shape[0] == 1:  # fn runs its own compiled programs (explainers): called as it is
        maps = fn(*data, patches[0])[None]
    else:
        maps = jax.vmap(lambda p: fn(*data, p))(patches)
    return _accumulate(normalize, patch, total, count, maps, origins, weights)


@caches.memoize(maxsize=64)
def _output_shape(fn, treedef, leaf_shapes, patch_shape, dtype):
    data = jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(s, d) for s, d in leaf_shapes])
    return jax.eval_shape(lambda d, p: fn(*d, p), data, jax.ShapeDtypeStruct(patch_shape, dtype))


def sliding_window(
    fn: Callable, volume: Any, *, patch: int | Sequence[int] = 64, overlap: float = 0.5, batch: int = 1,
    normalize: str | None = None, jit: bool = True,
) -> jax.Array:
    """Apply ``fn`` to overlapping patches of one volume and average the overlaps.

    Args:
      fn: one patch ``(p_d, p_h, p_w, C)`` -> a map ``(*lead, p_d, p_h, p_w, C')`` (e.g. an
        attribution, or ``(L, …)`` maps of L layers).  A :class:`jax.tree_util.Partial` passes
        its bound arrays (model variables) as traced data; the function itself must be
        hashable and is compiled once (build it once, reuse it).
      volume: one volume ``(D, H, W, C)``, float, finite.  Axes shorter than the patch are
        zero-padded at the end and cropped back.
      patch: patch size (DS6: 64).  overlap: fraction of a patch shared with the next (DS6's
        torchio grid: 0.5).  batch: patches per ``vmap`` (memory grows with it).
      normalize: ``None``, ``"max"`` (each patch map divided by its maximum: DS6) or
        ``"absmax"`` (by its largest magnitude: signed attributions).
      jit: compile ``vmap(fn)`` over a batch of patches (for a model's forward pass).
        ``False`` for a function that runs compiled programs of its own (jaxretina's
        explainers): it is called as it is — one patch at a time, or under ``vmap`` for
        ``batch > 1`` — so its programs (e.g. IG's chunk program) compile once and are reused
        for every patch, instead of being unrolled into one large program.

    Returns:
      ``(*lead, D, H, W, C')``: the averaged map.
    """
    who = "sliding_window"
    check_example(volume, name=f"{who}: volume", rank=4)
    if normalize not in _NORMALIZE:
        raise ValueError(f"{who}: normalize must be one of {_NORMALIZE}; found {normalize!r}")
    if not (isinstance(batch, (int, np.integer)) and batch >= 1):
        raise ValueError(f"{who}: batch must be a positive int; found {batch!r}")
    patch = _triple(patch, "patch")
    volume = jnp.asarray(volume)
    shape = volume.shape[:3]
    padded = tuple(max(n, p) for n, p in zip(shape, patch))
    if padded != shape:
        volume = jnp.pad(volume, [(0, q - n) for q, n in zip(padded, shape)] + [(0, 0)])
    static, data = split_fn(fn)
    leaves, treedef = jax.tree.flatten(data)  # traced once per (fn, shapes), not once per call
    out = _output_shape(static, treedef, tuple((tuple(jnp.shape(a)), jnp.result_type(a)) for a in leaves),
                        (*patch, volume.shape[-1]), volume.dtype)
    if out.ndim < 4 or out.shape[-4:-1] != patch:
        raise ValueError(f"{who}: fn must map a patch {(*patch, volume.shape[-1])} to a map (..., {patch[0]}, "
                         f"{patch[1]}, {patch[2]}, C'); it returned shape {out.shape}")
    lead = out.shape[:-4]
    origins = patch_origins(padded, patch, overlap)
    n = -(-len(origins) // batch) * batch
    weights = np.zeros(n, np.float32)
    weights[: len(origins)] = 1
    origins = np.concatenate([origins, np.repeat(origins[-1:], n - len(origins), 0)])
    total = jnp.zeros((*lead, *padded, out.shape[-1]), out.dtype)
    count = jnp.zeros((*padded, 1), out.dtype)
    for i in range(0, n, batch):
        total, count = _step(static, normalize, patch, data, volume, total, count,
                             jnp.asarray(origins[i:i + batch]), jnp.asarray(weights[i:i + batch], out.dtype), jit)
    result = total / count
    return result[..., : shape[0], : shape[1], : shape[2], :]


class _Probability(NamedTuple):
    model: Any

    def __call__(self, variables, patch):
        out = example_output(self.model.apply(variables, patch[None]), who="predict")
        return jax.nn.sigmoid(out) if out.shape[-1] == 1 else jax.nn.softmax(out, axis=-1)


def predict(
    model: Any, variables: Any, volume: Any, *, patch: int | Sequence[int] = 64, overlap: float = 0.5,
    batch: int = 1, normalize: str | None = "max",
) -> jax.Array:
    """DS6 inference: sigmoid (softmax for several channels) of each patch, divided by the
    patch's maximum (``normalize="max"``, DS6's scheme; ``None`` keeps probabilities), overlaps
    averaged.  A UNet3D with deep supervision is explained by its main output.  ``(D, H, W, C)``."""
    model = spec.for_explaining(model)
    f = Partial(_Probability(model), taps.params_only(variables))
    return sliding_window(f, volume, patch=patch, overlap=overlap, batch=batch, normalize=normalize, jit=True)


METHODS = ("guided_backprop", "deconvnet", "saliency", "integrated_gradients", "layerwise_guided_backprop")


class _PatchMethod(NamedTuple):
    method: str
    model: Any
    target: Callable | None
    options: tuple

    def __call__(self, variables, patch):
        opts = dict(self.options)
        if self.method in ("guided_backprop", "deconvnet"):
            return getattr(explain, self.method)(self.model, variables, patch, self.target)
        if self.method == "saliency":
            return explain.saliency(explain.model_fn(self.model, variables, self.target), patch, abs=False)
        if self.method == "integrated_gradients":
            return explain.integrated_gradients(explain.model_fn(self.model, variables, self.target), patch,
                                                **opts).values
        return explain.layerwise_guided_backprop(self.model, variables, patch, **opts)[0]


def attribute(
    method: str, model: Any, variables: Any, volume: Any, target: Callable | None = None, *,
    patch: int | Sequence[int] = 64, overlap: float = 0.5, batch: int = 1, normalize: str | None = "absmax",
    **options: Any,
) -> jax.Array:
    """An attribution of a whole volume, patch by patch (DS6's grid, per-patch normalisation).

    Args:
      method: one of :data:`METHODS`.  ``options`` go to the method (IG: ``baseline``,
        ``steps``, ``rule``, ``chunk``; layer-wise: ``layers``, ``channel``, ``rule``, ``chunk``).
      target: the patch's scalar (e.g. ``targets.segmentation_sum()``, ``targets.argmax_score(1)``);
        not used by ``layerwise_guided_backprop``.
      normalize: per-patch normalisation before averaging (default ``"absmax"``: each patch's
        map divided by its largest magnitude, as DS6 does with its outputs).

    Returns:
      ``(D, H, W, C)`` (``(L, D, H, W, C)`` for the layer-wise maps).

    Example::

      >>> ig = volumes.attribute("integrated_gradients", unet, unet_variables, volume, targets.segmentation_sum(),
      ...                        patch=16, baseline=0.0, steps=4, chunk=2)
      >>> ig.shape
      (32, 32, 32, 1)
    """
    if method not in METHODS:
        raise ValueError(f"attribute: unknown method {method!r}; expected one of {METHODS}")
    if method != "layerwise_guided_backprop" and target is None:
        raise ValueError(f"attribute: {method} needs a target (e.g. targets.segmentation_sum())")
    model = spec.for_explaining(model)
    options = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))
    f = Partial(_PatchMethod(method, model, target, options), taps.params_only(variables))
    return sliding_window(f, volume, patch=patch, overlap=overlap, batch=batch, normalize=normalize, jit=False)
