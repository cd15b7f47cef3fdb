"""pytorch-grad-cam's gradient CAMs beyond Grad-CAM(++), every layer from the same one forward
and one backward pass (:func:`~jaxretina.explain.cam.class_activation_maps`).

For a layer with activation ``A`` (spatial…, K), ``G = ∂y/∂A``, positions ``p`` and channels ``k``:

=========================  =====================================================================
method                     map (before the optional ReLU, resize and normalisation)
=========================  =====================================================================
:func:`hires_cam`          ``Σ_k G_pk A_pk`` (Draelos & Carin: Grad-CAM without the averaging)
:func:`grad_cam_elementwise`  ``Σ_k max(G_pk A_pk, 0)``
:func:`xgrad_cam`          ``Σ_k w_k A_pk``, ``w_k = Σ_p G_pk A_pk / (Σ_p A_pk + ε)`` (Fu et al.;
                           a channel with ``Σ_p A_pk + ε = 0`` weighs 0)
:func:`layer_cam`          ``Σ_k max(G_pk, 0) A_pk`` (Jiang et al.)
:func:`eigen_cam`          the projection of ``A`` (positions × channels, centred per channel) on
                           its first principal direction (Muhammad & Yeasin; no gradient)
:func:`eigen_grad_cam`     the same of ``G ⊙ A``
=========================  =====================================================================

A principal direction has no sign of its own (``v`` and ``−v`` alike); pytorch-grad-cam keeps
whatever its SVD returns, so its EigenCAM can come out as the complement of the object.
Here the projection is turned so that its largest magnitude is positive (Seg-Eigen-CAM's sign
correction, Chung & Ying 2025), the same for every run and backend.  The direction is the top
eigenvector of the smaller Gram matrix (``AᵀA`` or ``AAᵀ``), exact and cheap for the few
positions of a deep layer or the few channels of a shallow one.

Example::

    >>> m = explain.layer_cam(grader, grader_variables, z, targets.class_logit(3), layers="transition1")
    >>> m["transition1"].shape == z.shape[:-1]
    True
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from jaxretina.explain.cam import class_activation_maps

__all__ = ["hires_cam", "grad_cam_elementwise", "xgrad_cam", "layer_cam", "eigen_cam", "eigen_grad_cam",
           "principal_projection", "PYTORCH_GRAD_CAM_XGRAD_EPS"]

PYTORCH_GRAD_CAM_XGRAD_EPS = 1e-7   # what pytorch-grad-cam's XGradCAM adds to Σ_p A_pk


def principal_projection(a: jax.Array) -> jax.Array:
    """``a`` (spatial…, K) centred per channel and projected on its first principal direction:
    a map of the spatial shape, its largest magnitude positive."""
    m = a.reshape(-1, a.shape[-1])
    m = m - m.mean(axis=0)
    if m.shape[0] <= m.shape[1]:   # few positions: the top eigenvector u of m mᵀ; m v = σ u
        w, u = jnp.linalg.eigh(m @ m.T)
        proj = u[:, -1] * jnp.sqrt(jnp.maximum(w[-1], 0))
    else:                          # few channels: the top eigenvector v of mᵀ m
        _, v = jnp.linalg.eigh(m.T @ m)
        proj = m @ v[:, -1]
    top = proj[jnp.argmax(jnp.abs(proj))]
    return (jnp.where(top < 0, -proj, proj)).reshape(a.shape[:-1])


def _spatial(a):
    return tuple(range(a.ndim - 1))


def _hires(a, g, eps):
    return (g * a).sum(-1)


def _elementwise(a, g, eps):
    return jnp.maximum(g * a, 0).sum(-1)


def _xgrad(a, g, eps):
    total = a.sum(axis=_spatial(a)) + eps
    ok = total != 0
    w = jnp.where(ok, (g * a).sum(axis=_spatial(a)) / jnp.where(ok, total, 1), 0)
    return (a * w).sum(-1)


def _layercam(a, g, eps):
    return (jnp.maximum(g, 0) * a).sum(-1)


def _eigen(a, g, eps):
    return principal_projection(a)


def _eigengrad(a, g, eps):
    return principal_projection(g * a)


def hires_cam(model: Any, variables: Any, x: Any, target: Callable, *, layers: str | Sequence[str] = "all",
              relu: bool = True, resize: bool = True, normalize: bool = False) -> dict[str, jax.Array]:
    """HiResCAM of every requested layer (the contract of :func:`~jaxretina.explain.grad_cam`)."""
    return class_activation_maps(_hires, model, variables, x, target, layers=layers, relu=relu, resize=resize,
                                 normalize=normalize, who="hires_cam")


def grad_cam_elementwise(model: Any, variables: Any, x: Any, target: Callable, *, layers: str | Sequence[str] = "all",
                         relu: bool = True, resize: bool = True, normalize: bool = False) -> dict[str, jax.Array]:
    """pytorch-grad-cam's GradCAMElementWise of every requested layer."""
    return class_activation_maps(_elementwise, model, variables, x, target, layers=layers, relu=relu, resize=resize,
                                 normalize=normalize, who="grad_cam_elementwise")


def xgrad_cam(model: Any, variables: Any, x: Any, target: Callable, *, layers: str | Sequence[str] = "all",
              relu: bool = True, resize: bool = True, normalize: bool = False, eps: float = 0.0) -> dict[str, jax.Array]:
    """XGradCAM of every requested layer; ``eps`` is added to ``Σ_p A_pk``
    (:data:`PYTORCH_GRAD_CAM_XGRAD_EPS` gives pytorch-grad-cam's ``XGradCAM``)."""
    return class_activation_maps(_xgrad, model, variables, x, target, layers=layers, relu=relu, resize=resize,
                                 normalize=normalize, eps=eps, who="xgrad_cam")


def layer_cam(model: Any, variables: Any, x: Any, target: Callable, *, layers: str | Sequence[str] = "all",
              relu: bool = True, resize: bool = True, normalize: bool = False) -> dict[str, jax.Array]:
    """LayerCAM of every requested layer."""
    return class_activation_maps(_layercam, model, variables, x, target, layers=layers, relu=relu, resize=resize,
                                 normalize=normalize, who="layer_cam")


def eigen_cam(model: Any, variables: Any, x: Any, target: Callable, *, layers: str | Sequence[str] = "all",
              relu: bool = True, resize: bool = True, normalize: bool = False) -> dict[str, jax.Array]:
    """EigenCAM of every requested layer (the activations' first principal component; the
    map does not use the target)."""
    return class_activation_maps(_eigen, model, variables, x, target, layers=layers, relu=relu, resize=resize,
                                 normalize=normalize, who="eigen_cam")


def eigen_grad_cam(model: Any, variables: Any, x: Any, target: Callable, *, layers: str | Sequence[str] = "all",
                   relu: bool = True, resize: bool = True, normalize: bool = False) -> dict[str, jax.Array]:
    """EigenGradCAM of every requested layer (the first principal component of ``G ⊙ A``)."""
    return class_activation_maps(_eigengrad, model, variables, x, target, layers=layers, relu=relu, resize=resize,
                                 normalize=normalize, who="eigen_grad_cam")
