"""Guided Grad-CAM (Selvaraju et al. 2017): guided backprop's fine map gated by a layer's
coarse Grad-CAM, ``G(x) ⊙ up(relu(Σ_c ḡ_c A_c))``.

The CAM is upsampled to the input's spatial size by ``interpolate``: ``"nearest"`` is PyTorch's
``F.interpolate(mode="nearest")`` (source index ``⌊i · in / out⌋``, Captum's default for
``GuidedGradCam``), ``"linear"`` jaxretina's Grad-CAM resize; the product broadcasts over the
input's channels.  One Grad-CAM pass and one guided-backprop pass.

Example::

    >>> m = explain.guided_grad_cam(grader, grader_variables, z, targets.class_logit(3), layer="transition1")
    >>> m.shape == z.shape
    True
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxretina.explain.cam import grad_cam
from jaxretina.explain.core import check_input
from jaxretina.explain.relu_rules import guided_backprop

__all__ = ["guided_grad_cam", "nearest_resize"]


def nearest_resize(a: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """``a`` resized to ``shape`` by PyTorch's nearest rule: output ``i`` takes input
    ``⌊i · n_in / n_out⌋`` on every axis."""
    for axis, (n_in, n_out) in enumerate(zip(a.shape, shape)):
        if n_in != n_out:
            index = (jnp.arange(n_out) * n_in) // n_out
            a = jnp.take(a, index, axis=axis)
    return a


def guided_grad_cam(model: Any, variables: Any, x: Any, target: Callable, *, layer: str,
                    interpolate: str = "nearest") -> jax.Array:
    """Guided Grad-CAM of ``target`` at ``layer`` for one example ``x``: shape of ``x``."""
    who = "guided_grad_cam"
    x = check_input(x, who=who)
    if interpolate not in ("nearest", "linear"):
        raise ValueError(f"{who}: interpolate must be 'nearest' or 'linear'; found {interpolate!r}")
    cam = grad_cam(model, variables, x, target, layers=[layer], relu=True, resize=interpolate == "linear",
                   normalize=False)[layer]
    spatial = x.shape[:-1]
    if cam.shape != spatial:
        cam = nearest_resize(cam, spatial)
    return guided_backprop(model, variables, x, target) * cam[..., None]
