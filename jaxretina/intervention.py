"""Seed 000's intervention: scale one layer's feature map by ``c`` and measure the segmentation.

The seed multiplies the maps DRIU's fuse convolution reads (``conv1_2_16``, ``upsample2``,
``upsample4``, ``upsample8``) by a constant and reports the masked mIoU (0.7502 unchanged,
0.7674 with ``upsample2`` raised).  Two equivalent forms:

* :func:`scale_layer` — functional: the tapped model with ``A_l ← c · A_l`` (the ``"scales"``
  tap collection; no weight changes).  Works for any tapped layer of any jaxretina model.
* :func:`fuse_weight_edit` — the same as a weight edit: the fuse kernel's input rows that read
  layer ``l`` multiplied by ``c`` (``W' [l rows] = c · W [l rows]``; the fuse is linear, so
  ``fuse(…, c·A_l, …) = fuse'(…, A_l, …)``).

:func:`scaling_sweep` evaluates a grid of ``c`` for several layers over a whole test set in one
compiled program: ``lax.map`` over the images, and per layer a ``vmap`` over ``c`` in which
everything that does not depend on ``c`` (the whole VGG trunk) stays unbatched and is computed
once per image (XLA also merges the trunk across layers).

Example::

    >>> images, vessels, fov = data.drive_folder("~/DRIVE", "test").arrays()   # (N, H, W, 3), (N, H, W) x2
    >>> x = preprocess.seed000_driu_input(images, fov)
    >>> sweep = intervention.scaling_sweep(model, variables, x, vessels, fov, ["upsample2", "conv1_2_16"],
    ...                                    jnp.linspace(0.5, 2.0, 7))
    >>> sweep.miou.shape                                         # (layers, c, images); DRIVE: (2, 7, 20)
    (2, 7, 2)
    >>> table = sweep.table()                                    # mean mIoU per (layer, c)
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxretina import metrics, taps
from jaxretina.models import spec

__all__ = ["scale_layer", "fuse_weight_edit", "ScalingSweep", "scaling_sweep"]


def scale_layer(model: Any, variables: Any, x: Any, layer: str | dict[str, Any], c: Any = None) -> Any:
    """Model output with ``layer``'s activation multiplied by ``c`` (or several layers: a dict
    ``{layer: c}``).  ``x``: a batch (N, H, W, 3); ``c``: a scalar or anything broadcasting
    against the activation (e.g. one factor per channel, (K,)).  Differentiable in ``c``.

    Example::

        >>> logits = intervention.scale_layer(model, variables, xs, "upsample2", 1.5)
        >>> logits.shape                                          # xs: (2, 32, 32, 3)
        (2, 32, 32, 1)
    """
    scales = dict(layer) if isinstance(layer, dict) else {layer: c}
    if not isinstance(layer, dict) and c is None:
        raise ValueError("scale_layer: give the factor c (or a dict {layer: c})")
    taps.select_layers(taps.layer_names(model, jnp.shape(x)), tuple(scales))
    return _scaled(model, variables, x, {k: jnp.asarray(v) for k, v in scales.items()})


@functools.partial(jax.jit, static_argnums=0)
def _scaled(model, variables, x, scales):
    return taps.tap_functions(model).scaled(variables, x, scales)


def fuse_weight_edit(model: Any, variables: Any, layer: str, c: Any) -> dict:
    """Variables whose fuse convolution sees ``c ·`` the named layer's map: its kernel rows for
    that layer's channels (``model.fuse_inputs()[layer]``) multiplied by ``c``.

    ``c``: a scalar or one factor per channel of the layer.  Only models with a linear fuse layer
    over concatenated maps have this form (DRIU); :func:`scale_layer` works for every model.
    """
    fuse_layer, rows = spec.fuse_inputs(model, "fuse_weight_edit (a DRIU-style fuse layer over concatenated maps; "
                                                "scale_layer works for every model)")
    if layer not in rows:
        raise ValueError(f"fuse_weight_edit: the fuse layer reads {list(rows)}; found {layer!r}")
    params = dict(taps.params_only(variables)["params"])
    fuse = dict(params[fuse_layer])
    kernel = fuse["kernel"]                                   # (1, 1, channels in, 1)
    idx = np.asarray(rows[layer])
    factor = jnp.broadcast_to(jnp.asarray(c, kernel.dtype), (len(idx),))
    fuse["kernel"] = kernel.at[:, :, idx, :].multiply(factor[:, None])
    params[fuse_layer] = fuse
    return {**taps.params_only(variables), "params": params}


class ScalingSweep(NamedTuple):
    """``miou[l, k, n]``: masked mIoU of image ``n`` with layer ``layers[l]`` scaled by ``cs[k]``;
    ``baseline[n]``: unchanged model (c = 1 everywhere)."""

    layers: tuple[str, ...]
    cs: np.ndarray
    miou: np.ndarray
    baseline: np.ndarray

    def table(self) -> dict[str, dict[float, float]]:
        """Mean mIoU over the images per layer and ``c``: ``{layer: {c: mean mIoU}}``."""
        return {name: {float(c): float(m) for c, m in zip(self.cs, self.miou[i].mean(-1))}
                for i, name in enumerate(self.layers)}

    def best(self) -> dict[str, tuple[float, float]]:
        """Per layer, the ``c`` with the highest mean mIoU and that mIoU."""
        out = {}
        for i, name in enumerate(self.layers):
            means = self.miou[i].mean(-1)
            k = int(np.nanargmax(means))
            out[name] = (float(self.cs[k]), float(means[k]))
        return out


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _sweep_program(model, layers, threshold, erode, variables, images, targets, masks, cs):
    fns = taps.tap_functions(model)
    logit_threshold = float(np.log(threshold / (1 - threshold)))   # sigmoid(z) > t  <=>  z > logit(t)

    def miou(logits, target, mask):
        return metrics.masked_miou(logits[..., 0] > logit_threshold, target, mask, erode=erode)

    def one(args):
        x, target, mask = args
        base = miou(fns.forward(variables, x[None])[0], target, mask)
        per_layer = [jax.vmap(lambda c, name=name: miou(fns.scaled(variables, x[None], {name: c})[0], target, mask))(cs)
                     for name in layers]
        return jnp.stack(per_layer), base

    return jax.lax.map(one, (images, targets, masks))


def scaling_sweep(model: Any, variables: Any, images: Any, targets: Any, fov_masks: Any, layers: Sequence[str],
                  cs: Any, *, threshold: float = 0.5, erode: int = 1) -> ScalingSweep:
    """Masked mIoU of every image for every ``(layer, c)``: one compiled program per (model,
    layers, shapes).

    Args:
      images: (N, H, W, 3) model inputs (e.g. :func:`jaxretina.preprocess.seed000_driu_input`).
      targets, fov_masks: (N, H, W) vessel labels and field-of-view masks (binary).
      layers: tapped layer names (the seed's ``conv1_2_16``, ``upsample2``, ``upsample4``, ``upsample8``).
      cs: (K,) scale factors.
      threshold: vessel where ``sigmoid(logit) > threshold`` (the model's output is logits).
      erode: FOV erosion in pixels (:func:`jaxretina.metrics.masked_miou`).

    Memory: per image, the trunk once and the fused maps of K factors (K × H × W × channels).
    """
    images = jnp.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"scaling_sweep: expected images (N, H, W, C); found shape {images.shape}")
    layers = taps.select_layers(taps.layer_names(model, images.shape), layers)
    cs = jnp.asarray(cs, images.dtype).reshape(-1)
    if not 0 < threshold < 1:
        raise ValueError(f"scaling_sweep: threshold must be in (0, 1); found {threshold!r}")
    targets, masks = jnp.asarray(targets), jnp.asarray(fov_masks)
    for name, a in (("targets", targets), ("fov_masks", masks)):
        if a.shape[:3] != images.shape[:3]:
            raise ValueError(f"scaling_sweep: {name} must be (N, H, W) = {images.shape[:3]}; found {a.shape}")
    miou, base = _sweep_program(model, layers, float(threshold), int(erode), taps.params_only(variables), images,
                                targets, masks, cs)
    return ScalingSweep(layers, np.asarray(cs), np.moveaxis(np.asarray(miou), 0, -1), np.asarray(base))
