"""Guided Grad-CAM (Selvaraju et al. 2017): guided backprop's fine map gated by a layer's
coarse Grad-CAM, ``G(x) ⊙ up(relu(Σ_c ḡ_c A_c))``.

The CAM is upsampled to the input's spatial size by ``interpolate``: ``"nearest"`` is PyTorch's
``F.interpolate(mode="nearest")`` (source index ``⌊i · in / out⌋``, Captum's default for
``GuidedGradCam``), ``"linear"`` jaxretina's Grad-CAM resize; the product broadcasts over the
input's channels.  One Grad-CAM pass and one guided-backprop pass, for one layer or
(:func:`guided_grad_cams`) for every layer.

Example::

    >>> m = explain.guided_grad_cam(grader, grader_variables, z, targets.class_logit(3), layer="transition1")
    >>> m.shape == z.shape
    True
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from jaxretina.explain.cam import grad_cam
from jaxretina.explain.core import check_input
from jaxretina.explain.relu_rules import guided_backprop

__all__ = ["guided_grad_cam", "guided_grad_cams", "nearest_resize"]


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
    return guided_grad_cams(model, variables, x, target, layers=[layer], interpolate=interpolate)[layer]


def guided_grad_cams(model: Any, variables: Any, x: Any, target: Callable, *, layers: str | Sequence[str] = "all",
                     interpolate: str = "nearest") -> dict[str, jax.Array]:
    """``{layer: Guided Grad-CAM}`` for every chosen layer (``"all"``: every spatial layer):
    one guided-backprop pass and one Grad-CAM pass for all of them; each map the shape of ``x``."""
    who = "guided_grad_cam"
    x = check_input(x, who=who)
    if interpolate not in ("nearest", "linear"):
        raise ValueError(f"{who}: interpolate must be 'nearest' or 'linear'; found {interpolate!r}")
    cams = grad_cam(model, variables, x, target, layers=layers, relu=True, resize=interpolate == "linear",
                    normalize=False)
    guided = guided_backprop(model, variables, x, target)
    spatial = x.shape[:-1]
    return {name: guided * (cam if cam.shape == spatial else nearest_resize(cam, spatial))[..., None]
            for name, cam in cams.items()}
