"""The affine stem of a model: its layers before the first nonlinearity, split off with
``model.apply(variables, x, part="stem" | "head")``.

A model with ``AFFINE_STEM = True`` accepts ``part``: ``"stem"`` maps the image to the stem's
output ``z = A(x)`` (normalisation, the first convolution and — for DenseNet in eval mode —
its BatchNorm: an affine map), ``"head"`` maps ``z`` to the model's output, and
``head(stem(x)) == model(x)``.

Why: Integrated Gradients integrates along the straight path ``x' + α(x − x')``, and an affine
map keeps it straight, ``A(x' + α(x − x')) = A(x') + α(A(x) − A(x'))``, while its input gradient
is one fixed transposed map, ``∇ₓ f(x_k) = Aᵀ ∇_z head(z_k)``.  So
:func:`jaxretina.explain.integrated_gradients` evaluates the stem twice (at ``x`` and ``x'``),
sums the weighted head gradients over the steps, and applies ``Aᵀ`` once — exact, and every
step is spared the first convolution's forward and input gradient (its 3-channel input
gradient is among the least efficient convolutions on a CPU).

Example::

    >>> s = model.apply(variables, xs, part="stem")
    >>> y = model.apply(variables, s, part="head")
    >>> bool(jnp.allclose(y, model.apply(variables, xs), rtol=1e-4, atol=1e-4))
    True
"""

from __future__ import annotations

import jax

__all__ = ["PARTS", "check_part", "check_stem_output"]

PARTS = ("all", "stem", "head")


def check_part(part: str) -> None:
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}; found {part!r}")


def check_stem_output(z: jax.Array, channels: int, model: str) -> jax.Array:
    """``z`` if it can be the stem output (N, H, W, ``channels``) the head expects."""
    if z.ndim != 4 or z.shape[-1] != channels:
        raise ValueError(f"{model} part='head' expects the stem's output (N, H, W, {channels}); "
                         f"found shape {tuple(z.shape)}")
    return z
