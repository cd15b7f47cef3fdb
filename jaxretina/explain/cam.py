"""Grad-CAM and Grad-CAM++ of every tapped layer from one forward and one backward pass.

For a layer with activation ``A`` of shape (*spatial, K) and ``G = ∂y/∂A`` (``y`` the target
scalar), both methods form ``map = Σ_k w_k A_k`` and differ only in the channel weights:

* Grad-CAM (Selvaraju et al.): ``w_k = mean_p G_pk``.
* Grad-CAM++ (Chattopadhay et al., exponential-output closed form):
  ``a_pk = G_pk² / (2 G_pk² + (Σ_q A_qk) G_pk³ + ε)`` (0 where ``G_pk = 0``),
  ``w_k = Σ_p a_pk · relu(G_pk)``.  By default ``ε = 0`` and ``a_pk`` is computed as the
  equal ``1 / (2 + (Σ_q A_qk) G_pk)`` (0 where the denominator is exactly 0): no ε to swamp
  small gradients (at DenseNet121's shallow layers ``G ~ 1e-5``, so ``G² ~ 1e-10`` and an ε of
  1e-7 changes maps by up to 97 %) and no underflow of ``G²``.  ``eps=1e-6`` reproduces
  pytorch-grad-cam's ``GradCAMPlusPlus``, which adds it to the denominator.

``relu=True`` keeps the positive part (the usual CAM); ``relu=False`` keeps the sign (seed 000
shows positive contributions green and negative red: :func:`jaxretina.viz.signed_map`).
``resize=True`` brings each map to the input's spatial size with (bi/tri)linear interpolation
(half-pixel centres, as OpenCV/PyTorch ``align_corners=False``).  ``normalize=True`` rescales
each map to [0, 1] (min–max; with ``relu=False``: divides by max |map|, giving [−1, 1]).
Min–max after a linear resize equals pytorch-grad-cam's ReLU → min–max → resize → min–max,
since linear interpolation commutes with the affine min–max map.

All layers come from one tapped forward pass and one ``jax.grad`` with respect to zero
perturbations at every layer (:mod:`jaxretina.taps`); the program is jitted once per
(model, target, layers, options, input shape).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from jaxretina import taps
from jaxretina.models import spec
from jaxretina.explain.core import check_input, example_output, scalar_output

__all__ = ["grad_cam", "grad_cam_plus_plus", "layer_gradients", "tapped_gradients", "chosen_layers",
           "class_activation_maps", "finish_map", "min_max", "check_cam_input", "check_cam_layer",
           "PYTORCH_GRAD_CAM_EPS"]

PYTORCH_GRAD_CAM_EPS = 1e-6  # what pytorch-grad-cam's GradCAMPlusPlus adds to its denominator


def _gradcam(a: jax.Array, g: jax.Array, eps: float) -> jax.Array:
    return (a * g.mean(axis=tuple(range(g.ndim - 1)))).sum(-1)


def _gradcampp(a: jax.Array, g: jax.Array, eps: float) -> jax.Array:
    spatial = tuple(range(g.ndim - 1))
    total = a.sum(axis=spatial)
    if eps:
        g2 = g * g
        alpha = jnp.where(g != 0, g2 / (2 * g2 + total * g2 * g + eps), 0.0)
    else:  # G² / (2 G² + S G³) = 1 / (2 + S G) for G ≠ 0, without forming G²
        denom = 2 + total * g
        ok = (g != 0) & (denom != 0)
        alpha = jnp.where(ok, 1 / jnp.where(ok, denom, 1), 0.0)
    return (a * (alpha * jax.nn.relu(g)).sum(axis=spatial)).sum(-1)


def chosen_layers(model, x, layers) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """``(((name asked for, layer), ...), distinct layers)`` for ``layers`` (``"all"``: every
    spatial layer; names and the model's aliases) of ``model`` at one example ``x``."""
    # ((name asked for, layer), ...) and the distinct layers to compute.  "all" means every layer with a spatial map (a
    # classifier's logits have none); a non-spatial layer asked for by name gets the error in
    # _cam_program.  The model's aliases (e.g. MONAI's module paths) resolve too.
    # Names and ranks only: probe in float32 whatever x's dtype (a float64 input would meet the
    # float32 parameters that a fresh init makes).
    if isinstance(layers, str) and layers == "all":
        pairs = taps.resolve_layers(taps.spatial_layer_names(model, (1, *x.shape)), layers)
    else:
        pairs = taps.resolve_layers(taps.layer_names(model, (1, *x.shape)), layers, taps.layer_aliases(model))
    return pairs, tuple(dict.fromkeys(layer for _, layer in pairs))


def tapped_gradients(model, variables, x, target, chosen):
    """``(activations, gradients)`` of the ``chosen`` layers (tap names) of ``target`` for one
    example ``x``, one forward and one backward pass (traceable: the raw material of CAM and
    layer-path methods)."""
    fns = taps.tap_functions(model)
    batch = x[None]
    deltas = fns.zeros(variables, batch)
    wanted = {n: deltas[n] for n in chosen}
    fixed = {n: d for n, d in deltas.items() if n not in wanted}  # constants: backprop stops early

    def score(d):
        out, acts = fns.tapped(variables, batch, {**fixed, **d})
        return scalar_output(target(example_output(out)), who="target"), acts

    grads, acts = jax.grad(score, has_aux=True)(wanted)
    return {n: acts[n][0] for n in chosen}, {n: grads[n][0] for n in chosen}


def finish_map(cam, spatial, relu, resize, normalize):
    """A CAM's last steps: ReLU, (bi/tri)linear resize to ``spatial``, normalisation (see the
    module docstring)."""
    if relu:
        cam = jax.nn.relu(cam)
    if resize and cam.shape != spatial:
        cam = jax.image.resize(cam, spatial, method="linear", antialias=False)
    if normalize:
        # Exact min-max (no absolute epsilon: a CAM's scale follows the target's units, and
        # ε = 1e-7 against a range of 4e-4 already shifts values by 2.5e-4); a constant map
        # becomes 0.
        if relu:
            cam = min_max(cam)
        else:
            top = jnp.abs(cam).max()
            cam = jnp.where(top > 0, cam / jnp.where(top > 0, top, 1), 0)
    return cam


def min_max(a: jax.Array, axes: tuple[int, ...] | None = None, eps: float = 0.0) -> jax.Array:
    """``a`` mapped to [0, 1] by its minimum and maximum over ``axes`` (all by default):
    ``(a − min) / (ε + max − min)``; with ``ε = 0`` exactly, a constant ``a`` becoming 0
    (``ε = 1e-7`` is pytorch-grad-cam's ``scale_cam_image``)."""
    d = a - a.min(axis=axes, keepdims=True)
    span = d.max(axis=axes, keepdims=True)
    if eps:
        return d / (eps + span)
    return jnp.where(span > 0, d / jnp.where(span > 0, span, 1), 0)


def check_cam_layer(name: str, a: jax.Array, x: jax.Array, who: str) -> None:
    """A CAM needs the layer's activation ``a`` to be a spatial map of ``x``'s rank, channels last."""
    if a.ndim != x.ndim:
        raise ValueError(f"{who}: layer {name!r} has activation shape {a.shape}; a CAM needs a spatial map "
                         f"with channels last, of the input's rank {x.ndim}")


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5, 6, 7, 8))
def _cam_program(cam_map, model, target, chosen, relu, resize, normalize, eps, who, variables, x):
    acts, grads = tapped_gradients(model, variables, x, target, chosen)
    spatial = x.shape[:-1]
    maps = {}
    for name in chosen:
        a, g = acts[name], grads[name]
        check_cam_layer(name, a, x, who)
        maps[name] = finish_map(cam_map(a, g, eps), spatial, relu, resize, normalize)
    return maps


def check_cam_input(model, x, who):
    """One example of the rank ``model`` takes (2-D or 3-D), checked as any input."""
    spatial = spec.spatial_dims(model)  # models declare 2 (images) or 3 (volumes)
    ranks = (3, 4) if spatial is None else (spatial + 1,)
    if jnp.ndim(x) not in ranks:
        layout = {3: "(H, W, C)", 4: "(D, H, W, C)"}
        raise ValueError(
            f"{who}: expected one example {' or '.join(layout[r] for r in ranks)} for "
            f"{type(model).__name__} (a batch is jax.vmap over examples); found shape {jnp.shape(x)}"
        )
    return check_input(x, who=who)


def class_activation_maps(cam_map: Callable, model: Any, variables: Any, x: Any, target: Callable, *,
                          layers: str | Sequence[str] = "all", relu: bool = True, resize: bool = True,
                          normalize: bool = False, eps: float = 0.0, who: str = "cam") -> dict[str, jax.Array]:
    """``{layer: cam_map(A, G, eps)}`` (then ReLU, resize, normalise as :func:`grad_cam`) for
    every requested layer, from one forward and one backward pass: the CAM family's common
    program.  ``cam_map`` takes one layer's activation ``A`` and gradient ``G`` (spatial…, K)
    and returns the spatial map; a module-level function (it is a static argument)."""
    x = check_cam_input(model, x, who)
    pairs, chosen = chosen_layers(model, x, layers)
    eps = float(eps)
    if not eps >= 0:
        raise ValueError(f"{who}: eps must be a non-negative number; found {eps}")
    maps = _cam_program(cam_map, model, target, chosen, bool(relu), bool(resize), bool(normalize), eps, who,
                        variables, x)
    return {asked: maps[layer] for asked, layer in pairs}  # the order asked (jit outputs sort dict keys)


def grad_cam(
    model: Any,
    variables: Any,
    x: Any,
    target: Callable,
    *,
    layers: str | Sequence[str] = "all",
    relu: bool = True,
    resize: bool = True,
    normalize: bool = False,
) -> dict[str, jax.Array]:
    """Grad-CAM of every requested layer, from one forward and one backward pass.

    Args:
      model, variables: a jaxretina model (any module with tap points) and its variables.
      x: **one** example (H, W, C) — or (D, H, W, C) for 3D models — float, finite.
      target: one example's model output -> scalar (:mod:`jaxretina.targets`); build it once
        (it is a static argument: a new target object compiles anew).
      layers: ``"all"``, one layer name, or a list (see ``model.layer_names()``).
      relu, resize, normalize: see the module docstring.

    Returns:
      ``{layer: map}`` in execution order; maps are (H, W) with ``resize=True``, else the
      layer's own spatial shape.

    Example::

      >>> model = DRIU(); variables = jaxretina.models.random_variables(model, x[None].shape)   # x: (32, 32, 3)
      >>> cams = explain.grad_cam(model, variables, x, targets.segmentation_sum())
      >>> len(cams), cams["upsample2"].shape == x.shape[:2]
      (21, True)
      >>> batched = jax.vmap(lambda xi: explain.grad_cam(model, variables, xi, target, layers="upsample2"))(xs)
      >>> batched["upsample2"].shape                                           # xs: (2, 32, 32, 3)
      (2, 32, 32)
    """
    return class_activation_maps(_gradcam, model, variables, x, target, layers=layers, relu=relu, resize=resize,
                                 normalize=normalize, who="gradcam")


def grad_cam_plus_plus(
    model: Any,
    variables: Any,
    x: Any,
    target: Callable,
    *,
    layers: str | Sequence[str] = "all",
    relu: bool = True,
    resize: bool = True,
    normalize: bool = False,
    eps: float = 0.0,
) -> dict[str, jax.Array]:
    """Grad-CAM++ of every requested layer (same contract as :func:`grad_cam`).

    ``eps``: added to the weights' denominator ``2 G² + (Σ A) G³``; the default 0 is the
    published formula (see the module docstring); ``PYTORCH_GRAD_CAM_EPS`` (1e-6) gives
    pytorch-grad-cam's ``GradCAMPlusPlus``.
    """
    return class_activation_maps(_gradcampp, model, variables, x, target, layers=layers, relu=relu, resize=resize,
                                 normalize=normalize, eps=eps, who="gradcampp")


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _grads_program(model, target, chosen, variables, x):
    return tapped_gradients(model, variables, x, target, chosen)


def layer_gradients(
    model: Any, variables: Any, x: Any, target: Callable, *, layers: str | Sequence[str] = "all"
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """``(activations, gradients)`` of the target at every requested layer of one example.

    One forward and one backward pass; both dicts map layer names (execution order) to arrays
    of the layer's shape without the batch axis.  The raw material of every CAM method.
    """
    x = check_cam_input(model, x, "layer_gradients")
    pairs, chosen = chosen_layers(model, x, layers)
    acts, grads = _grads_program(model, target, chosen, variables, x)
    return {a: acts[n] for a, n in pairs}, {a: grads[n] for a, n in pairs}
