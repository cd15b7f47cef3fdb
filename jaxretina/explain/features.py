"""Seed 004's feature visualisation: activation maps, dead filters, deconvnet reconstructions.

* :func:`activation_maps` — every filter's map of a layer for one example, ``(H_l, W_l, C_l)``
  (draw them as one mosaic with :func:`jaxretina.viz.filter_grid`).
* :func:`filter_peaks` / :func:`dead_filters` — over a dataset, the largest ``|activation|`` of
  every filter of every chosen layer, in one forward pass per batch (the reduction inside the
  compiled program, so activations never leave the device); a filter is *dead* when its
  activation is 0 on every input.
* :func:`deconvnet_reconstruction` — Zeiler & Fergus's deconvnet: one feature map (or its top-k
  activations, the rest set to 0) projected back to pixels through the network's layers in
  reverse — transposed convolutions, the ReLU applied to the backward signal, max-unpooling
  with the forward pass's switches, average-unpooling as the average's transpose.  That
  projection is exactly the vector–Jacobian product of the layer's activation with the
  deconvnet rule (the ``deconvnet`` composite of :mod:`jaxretina.propagation`): the VJP of a convolution is the convolution
  with the transposed (flipped) kernel, whatever its size (even kernels included), and the VJP
  of a max pool routes each value to the position that won (its switch).  Biases do not
  enter, as in the deconvnet.

Example::

    >>> acts = explain.activation_maps(model, variables, x, "conv1_2")
    >>> acts.shape                                                                 # (H, W, 64)
    (32, 32, 64)
    >>> dead = explain.dead_filters(model, variables, [xs], layers=["conv1_2", "conv3_3"])
    >>> {k: v.shape for k, v in dead.items()}                                      # {layer: (C,) bool}
    {'conv1_2': (64,), 'conv3_3': (256,)}
    >>> recon = explain.deconvnet_reconstruction(model, variables, x, "conv3_3", channel=[5, 17], top_k=9)
    >>> recon.shape                                                                # (2, H, W, 3)
    (2, 32, 32, 3)
"""

from __future__ import annotations

import functools
from typing import Any, Iterable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxretina import taps
from jaxretina.explain.core import check_input
from jaxretina.explain.lrp import for_rules
from jaxretina.propagation import named, with_rules

__all__ = ["activation_maps", "filter_peaks", "dead_filters", "deconvnet_reconstruction"]


def activation_maps(model: Any, variables: Any, x: Any, layer: str) -> jax.Array:
    """The tapped activation of ``layer`` for one example ``x`` (no batch axis): ``(…spatial, C)``."""
    x = check_input(x, who="activation_maps")
    _, acts = taps.activations(model, variables, x[None], [layer])
    return acts[layer][0]


@functools.partial(jax.jit, static_argnums=(0, 1))
def _peaks(model, layers, variables, x):
    fns = taps.tap_functions(model)
    _, acts = fns.tapped(variables, x, fns.zeros(variables, x))
    return tuple(jnp.abs(acts[name]).max(axis=tuple(range(acts[name].ndim - 1))) for name in layers)


def filter_peaks(model: Any, variables: Any, batches: Iterable[Any], layers: str | Sequence[str] = "all",
                 ) -> dict[str, jax.Array]:
    """``{layer: (C,) max over every input and position of |activation|}``, one compiled forward
    per batch shape; running maxima stay on the device.  ``batches``: model-input arrays
    (N, H, W, C) of equal shape (or ``(array, valid)`` pairs: padded rows of a last batch are
    dropped by ``valid``)."""
    names: tuple[str, ...] | None = None
    peaks: list[jax.Array] | None = None
    params = taps.params_only(variables)
    for batch in batches:
        x, valid = batch if isinstance(batch, tuple) else (batch, None)
        x = jnp.asarray(x)
        if valid is not None:  # padded rows repeat a real one: harmless for a maximum, but drop them
            x = x[np.asarray(valid, bool)]
        if names is None:
            names = taps.select_layers(taps.layer_names(model, (1, *x.shape[1:])), layers)
        got = _peaks(model, names, params, x)
        peaks = list(got) if peaks is None else [jnp.maximum(a, b) for a, b in zip(peaks, got)]
    if names is None:
        raise ValueError("filter_peaks: no batches given")
    return dict(zip(names, peaks))


def dead_filters(model: Any, variables: Any, batches: Iterable[Any], layers: str | Sequence[str] = "all", *,
                 tolerance: float = 0.0) -> dict[str, np.ndarray]:
    """``{layer: (C,) bool}``, True for filters whose ``|activation| <= tolerance`` on every input
    and position (seed 004: "activation maps all zero for many different inputs")."""
    return {name: np.asarray(p) <= tolerance for name, p in filter_peaks(model, variables, batches, layers).items()}


class _LayerOf(NamedTuple):
    model: Any
    layer: str

    def __call__(self, variables, z):
        fns = taps.tap_functions(self.model)
        _, acts = fns.tapped(variables, z[None], fns.zeros(variables, z[None]))
        return acts[self.layer][0]


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _reconstruct(model, layer, top_k, variables, x, channels):
    deconv = named("deconvnet")
    layer_of = with_rules(_LayerOf(model, layer), deconv.choose, merge=deconv.merge)
    a, pullback = jax.vjp(lambda z: layer_of(variables, z), x)

    def one(channel):
        keep = jnp.where(channel < 0, True, jnp.arange(a.shape[-1]) == channel)   # −1: every channel
        v = jnp.where(keep, a, 0)
        if top_k is not None:
            # the k largest activations (of the chosen map); ties at the k-th value all kept
            kth = jax.lax.top_k(jnp.where(keep, a, -jnp.inf).reshape(-1), top_k)[0][-1]
            v = jnp.where((v >= kth) & keep, v, 0)
        return pullback(v)[0]

    return jax.vmap(one)(channels)


def deconvnet_reconstruction(model: Any, variables: Any, x: Any, layer: str, *,
                             channel: int | Sequence[int] | None = None, top_k: int | None = None) -> jax.Array:
    """Zeiler–Fergus deconvnet projection of ``layer``'s activation back to the input.

    The layer's activation ``A`` (after its ReLU) with everything set to 0 except the chosen
    feature map(s) — and, with ``top_k``, except that map's ``k`` largest values — is passed down
    the network in reverse with the deconvnet rule at every ``act``: ``R = J_A(x)ᵀ v`` computed by
    the rule-swapped VJP, the covector ``v`` being the kept activations themselves.

    Args:
      x: one example (H, W, C) (or (D, H, W, C)), no batch axis.
      layer: a tapped layer name.
      channel: one feature map, a list of them (reconstructed together, one program: a ``vmap``
        over the channels), or ``None`` (the whole layer).
      top_k: keep only the ``k`` largest activations of the map (``None``: all).

    Returns:
      ``x``'s shape for one channel (or ``None``); ``(K, *x.shape)`` for a list of K channels.
      Compiled once per (model, layer, top_k, shape): the channels are traced.
    """
    who = "deconvnet_reconstruction"
    x = check_input(x, who=who)
    shapes = taps.layer_shapes(model, None, (1, *x.shape))
    taps.select_layers(tuple(shapes), layer)
    if top_k is not None and not (isinstance(top_k, int) and top_k >= 1):
        raise ValueError(f"{who}: top_k must be a positive int or None; found {top_k!r}")
    swapped = for_rules(model, who)
    single = channel is None or isinstance(channel, (int, np.integer))
    chans = np.atleast_1d(np.asarray(-1 if channel is None else channel, np.int32))
    width = shapes[layer].shape[-1]
    bad = [int(c) for c in chans if not (channel is None or 0 <= c < width)]
    if bad:
        raise ValueError(f"{who}: layer {layer!r} has {width} channels (0 … {width - 1}); found {bad}")
    out = _reconstruct(swapped, layer, top_k, taps.params_only(variables), x, jnp.asarray(chans))
    return out[0] if single else out
