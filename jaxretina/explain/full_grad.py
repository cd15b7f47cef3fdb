"""FullGrad (Srinivas & Fleuret 2019): the input-gradient map plus every layer's bias-gradient
map, from one forward and one backward pass.

    ``S(x) = ψ(|x ⊙ ∂t/∂x|) + Σ_l Σ_c ψ(|b_lc · ∂t/∂z_lc|)``

``z_l`` is the output of a layer with a bias: a convolution ``z = conv(x, W) + b`` or a batch
norm ``z = γ (x − μ)/σ + β`` (its implicit bias ``b = β − μ γ / σ``), found in the traced
program (:func:`jaxretina.propagation.site_gradients`; an affine map of the raw input — an
input normalisation — is not a layer and is left out; so are dense layers, which have no
spatial map).  ``ψ`` rescales each channel's map to [0, 1] (``(a − min) / (ε + max(a − min))``)
and resizes it bilinearly to the input (half-pixel centres); the input term is summed over its
channels the same way, and the total is rescaled to [0, 1] again — pytorch-grad-cam's
``FullGrad`` (its ``ε = 1e-7``: :data:`PYTORCH_GRAD_CAM_FULLGRAD_EPS`; the default ``ε = 0``
is the exact min–max, a constant map becoming 0).  2-D and 3-D; any traceable model.

Example::

    >>> s = explain.full_grad(grader, grader_variables, z, targets.class_logit(3))
    >>> s.shape == z.shape[:-1], float(s.min()), float(s.max())
    (True, 0.0, 1.0)
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from jaxretina import taps
from jaxretina.explain.cam import check_cam_input, min_max
from jaxretina.explain.core import OneExample, scalar_output
from jaxretina.explain.lrp import for_rules
from jaxretina.propagation import site_gradients

__all__ = ["full_grad", "PYTORCH_GRAD_CAM_FULLGRAD_EPS"]

PYTORCH_GRAD_CAM_FULLGRAD_EPS = 1e-7   # pytorch-grad-cam's scale_cam_image: a / (1e-7 + max a)




class _Scored(NamedTuple):
    model: Any
    target: Callable

    def __call__(self, params, z):
        return scalar_output(self.target(OneExample(self.model, "full_grad")(params, z)), who="full_grad")


class _BiasLayer(NamedTuple):
    """Sites with a bias and a spatial output: convolutions with an affine tail, batch norms
    (affine sites) not applied to the raw input."""

    rank: int   # of the program's values: batch + spatial + channels
    patterns: tuple   # of layer names (fnmatch); () = every layer

    def __call__(self, program, site):
        if len(program.shapes[site.output]) != self.rank:
            return False
        if self.patterns and not any(site.matches(p) for p in self.patterns):
            return False
        if site.kind == "conv":
            return site.head < len(site.ops)
        return site.kind == "affine" and not set(site.inputs) <= set(program.input_ids)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _full_grad(model, target, eps, patterns, params, x):
    _, gx, found = site_gradients(_Scored(model, target), params, x, _BiasLayer(x.ndim + 1, patterns))
    spatial, axes = x.shape[:-1], tuple(range(x.ndim - 1))
    total = min_max(jnp.abs(x * gx), axes, eps).sum(-1)
    for _, bias, g in found:
        part = min_max(jnp.abs(bias[0] * g[0]), axes, eps).sum(-1)   # ψ per channel, summed (resize is linear)
        total = total + (part if part.shape == spatial else jax.image.resize(part, spatial, "linear", antialias=False))
    return min_max(total, axes, eps)


def full_grad(model: Any, variables: Any, x: Any, target: Callable, *, layers: str | Sequence[str] = "all",
              eps: float = 0.0) -> jax.Array:
    """FullGrad saliency of ``target`` for one example ``x`` (H, W, C) or (D, H, W, C): the
    input's spatial shape, in [0, 1] (see the module docstring).  ``layers``: ``"all"`` bias
    layers, or name patterns (fnmatch, ``/``-separated paths as
    :func:`jaxretina.propagation.layer_sites` lists them) to keep.  Batch with ``jax.vmap``."""
    who = "full_grad"
    x = check_cam_input(model, x, who)
    eps = float(eps)
    if not eps >= 0:
        raise ValueError(f"{who}: eps must be a non-negative number; found {eps}")
    patterns = () if isinstance(layers, str) and layers == "all" else (layers,) if isinstance(layers, str) else tuple(layers)
    if not all(isinstance(p, str) for p in patterns) or (not isinstance(layers, str) and not patterns):
        raise ValueError(f"{who}: layers must be 'all' or layer-name patterns; found {layers!r}")
    return _full_grad(for_rules(model, who), target, eps, patterns, taps.params_only(variables), x)
