"""Propagation rules: what flows backward through one site instead of its gradient.

A rule maps the relevance ``R`` arriving at a site's output to the relevance of each of its
inputs.  For a linear site ``z = lin(x, W) + b`` (a convolution or dense layer with its bias,
and a merged batch norm: ``W`` and ``b`` are then the merged kernel and bias), with
``stab(z) = z + ε · (sign(z) + [z = 0])``, ``x⁺ = max(x, 0)``, ``x⁻ = min(x, 0)`` and
``J(V)ᵀ g`` the transpose of ``x ↦ lin(x, V)`` applied to ``g``:

==================  =================================================================================
rule                ``R_in``
==================  =================================================================================
``Epsilon(ε)``      ``x ⊙ J(W)ᵀ (R / stab(z))`` — on any site (``Norm`` is ``Epsilon`` on pools,
                    sums and affine maps: ``R_i = x_i ⊙ ∂z/∂x_iᵀ (R / stab(z))``)
``ZPlus``           ``x⁺ ⊙ J(W⁺)ᵀ g + x⁻ ⊙ J(W⁻)ᵀ g``, ``g = R / stab(lin(x⁺, W⁺) + b⁺ + lin(x⁻, W⁻))``
``AlphaBeta(α,β)``  ``α (x⁺ J(W⁺)ᵀ g₊ + x⁻ J(W⁻)ᵀ g₊) − β (x⁺ J(W⁻)ᵀ g₋ + x⁻ J(W⁺)ᵀ g₋)`` with
                    ``g₊ = R / stab(lin(x⁺,W⁺) + b⁺ + lin(x⁻,W⁻))``, ``g₋ = R / stab(lin(x⁺,W⁻) + b⁻ + lin(x⁻,W⁺))``
``Gamma(γ)``        zennit's generalised γ: ``W₊ = W + γW⁺``, ``W₋ = W + γW⁻``; where ``z > 0``
                    ``x⁺ J(W₊)ᵀ g + x⁻ J(W₋)ᵀ g``, ``g = R / stab(lin(x⁺,W₊) + b + γb⁺ + lin(x⁻,W₋))``,
                    where ``z < 0`` the same with ``W₊ ↔ W₋`` and ``b + γb⁻``
``Flat``            ``J(1)ᵀ (R / stab(lin(1, 1)))`` (every input of a window shares alike)
``WSquare``         ``J(W²)ᵀ (R / stab(lin(1, W²) + b²))``
``ZBox(l, h)``      ``x J(W)ᵀ g − l J(W⁺)ᵀ g − h J(W⁻)ᵀ g``, ``g = R / stab(z − lin(l,W⁺) − b⁺ − lin(h,W⁻) − b⁻)``
``WeightRule(m)``   Captum's γ and α1β0: ``x ⊙ J(m(W))ᵀ (R / stab(lin(x, m(W)) + b))``
``Pass``            ``R`` (elementwise sites)
``Guided``          ``∂z/∂xᵀ max(R, 0)`` (guided backprop on an activation)
``Deconv``          ``max(R, 0)`` (deconvnet on an activation)
``Rescale``         DeepLIFT: ``R ⊙ (z − z₀) / (x − x₀)`` with the site's values at a reference
``RescaleMaxPool``  DeepLIFT on a max pool (Captum's rule): with ``m = max(z, z₀)`` and ``S_x``,
                    ``S_x₀`` the pool's switches at the input and at the reference,
                    ``(S_xᵀ(R ⊙ (m − z₀)) + S_x₀ᵀ(R ⊙ (z − m))) / (x − x₀)``
``Excitation``      excitation backprop: ``x ⊙ J(W⁺)ᵀ (R / (lin(x, W⁺) + ε))``; pools and sums share
                    ``x_i ⊙ ∂z/∂x_iᵀ (R / (z + ε))``
==================  =================================================================================

These are zennit's rules (its defaults: ``ε = 10⁻⁶``, stabiliser ``10⁻⁶``) and Captum's
(``WeightRule``; Captum's ``ε = 10⁻⁹``).  ``zero_bias=True`` drops the bias everywhere.

Example::

    >>> import jax.numpy as jnp
    >>> stabilize(jnp.array([0.0, -2.0, 3.0]), 0.5)
    Array([ 0.5, -2.5,  3.5], dtype=float32)
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxretina.propagation.program import vary_like

__all__ = [
    "stabilize", "Epsilon", "Norm", "ZPlus", "AlphaBeta", "Gamma", "Flat", "WSquare", "ZBox", "WeightRule",
    "Pass", "Guided", "Deconv", "Rescale", "RescaleMaxPool", "Excitation", "captum_gamma", "captum_alpha1_beta0",
]


def stabilize(z: jax.Array, epsilon: float) -> jax.Array:
    """``z + ε · (sign(z) + [z = 0])``: away from zero by ``ε``, zero to ``+ε``."""
    return z + epsilon * (jnp.sign(z) + (z == 0).astype(z.dtype))


def _pos(a):
    return jnp.maximum(a, 0)


def _neg(a):
    return jnp.minimum(a, 0)


def _split(view, x):
    """``(x⁺, x⁻)``; ``(x, None)`` on a site whose input is never negative (no max pass; the
    rules skip their x⁻ terms there)."""
    return (x, None) if view.site.nonneg else (_pos(x), _neg(x))


def _pull(view, x, weight, bias=None):
    """``(lin(x, weight) + bias, g ↦ J(weight)ᵀ g)``."""
    x = vary_like(x, view.xs[0])   # ones and bounds vary over the mesh axes the input does
    out, back = jax.vjp(lambda u: view.linear(u, weight), x)
    return (out if bias is None else out + bias), (lambda g: back(g)[0])


class Epsilon(NamedTuple):
    """LRP-ε (``epsilon=0`` is LRP-0).  On any site; ``zero_bias`` only matters on linear ones."""

    epsilon: float = 1e-6
    zero_bias: bool = False
    kinds = None   # every kind

    def __call__(self, view, R):
        if self.zero_bias and view.linear is not None:
            z, back = _pull(view, view.xs[0], view.weight())
            return (view.xs[0] * back(R / stabilize(z, self.epsilon)),)
        g = R / stabilize(view.z, self.epsilon)
        return tuple(x * t for x, t in zip(view.xs, view.transpose(g)))


def Norm(stabilizer: float = 1e-6) -> Epsilon:
    """zennit's ``Norm``: ε-rule as a stabiliser only (sums, pools)."""
    return Epsilon(stabilizer)


class ZPlus(NamedTuple):
    """LRP-z⁺ (α1β0 with negative inputs allowed, as zennit)."""

    stabilizer: float = 1e-6
    zero_bias: bool = False
    kinds = ("conv", "dense")

    def __call__(self, view, R):
        x, w, b = view.xs[0], view.weight(), view.bias()
        xp, xn = _split(view, x)
        z0, back0 = _pull(view, xp, _pos(w), None if self.zero_bias else _pos(b))
        if view.site.nonneg:   # after a ReLU x⁻ = 0: its terms vanish, and so do their passes
            return (xp * back0(R / stabilize(z0, self.stabilizer)),)
        z1, back1 = _pull(view, xn, _neg(w))
        g = R / stabilize(z0 + z1, self.stabilizer)
        return (xp * back0(g) + xn * back1(g),)


class AlphaBeta(NamedTuple):
    """LRP-αβ (``alpha - beta == 1``; zennit's form)."""

    alpha: float = 2.0
    beta: float = 1.0
    stabilizer: float = 1e-6
    zero_bias: bool = False
    kinds = ("conv", "dense")

    def __call__(self, view, R):
        x, w, b = view.xs[0], view.weight(), view.bias()
        xp, xn = _split(view, x)
        wp, wn = _pos(w), _neg(w)
        z0, b0 = _pull(view, xp, wp, None if self.zero_bias else _pos(b))
        z2, b2 = _pull(view, xp, wn, None if self.zero_bias else _neg(b))
        if view.site.nonneg:   # after a ReLU x⁻ = 0
            gp, gn = R / stabilize(z0, self.stabilizer), R / stabilize(z2, self.stabilizer)
            return (self.alpha * xp * b0(gp) - self.beta * xp * b2(gn),)
        z1, b1 = _pull(view, xn, wn)
        z3, b3 = _pull(view, xn, wp)
        gp = R / stabilize(z0 + z1, self.stabilizer)
        gn = R / stabilize(z2 + z3, self.stabilizer)
        return (self.alpha * (xp * b0(gp) + xn * b1(gp)) - self.beta * (xp * b2(gn) + xn * b3(gn)),)


class Gamma(NamedTuple):
    """zennit's generalised LRP-γ (equal to Montavon's γ-rule on positive inputs)."""

    gamma: float = 0.25
    stabilizer: float = 1e-6
    zero_bias: bool = False
    kinds = ("conv", "dense")

    def __call__(self, view, R):
        x, w, b = view.xs[0], view.weight(), view.bias()
        xp, xn = _split(view, x)
        wa, wb = w + self.gamma * _pos(w), w + self.gamma * _neg(w)
        ba = None if self.zero_bias else b + self.gamma * _pos(b)
        bb = None if self.zero_bias else b + self.gamma * _neg(b)
        z0, b0 = _pull(view, xp, wa, ba)
        z2, b2 = _pull(view, xp, wb, bb)
        z = view.z
        if view.site.nonneg:   # after a ReLU x⁻ = 0
            gp = (z > 0).astype(R.dtype) * R / stabilize(z0, self.stabilizer)
            gn = (z < 0).astype(R.dtype) * R / stabilize(z2, self.stabilizer)
            return (xp * b0(gp) + xp * b2(gn),)
        z1, b1 = _pull(view, xn, wb)
        z3, b3 = _pull(view, xn, wa)
        gp = (z > 0).astype(R.dtype) * R / stabilize(z0 + z1, self.stabilizer)
        gn = (z < 0).astype(R.dtype) * R / stabilize(z2 + z3, self.stabilizer)
        return (xp * b0(gp) + xn * b1(gp) + xp * b2(gn) + xn * b3(gn),)


class Flat(NamedTuple):
    """LRP-flat: every input of an output's window gets an equal share (bias dropped)."""

    stabilizer: float = 1e-6
    kinds = ("conv", "dense")

    def __call__(self, view, R):
        x, w = view.xs[0], view.weight()
        z, back = _pull(view, jnp.ones_like(x), jnp.ones_like(w))
        return (back(R / stabilize(z, self.stabilizer)),)


class WSquare(NamedTuple):
    """LRP-w²: shares by the squared weights (bias squared, as zennit)."""

    stabilizer: float = 1e-6
    zero_bias: bool = False
    kinds = ("conv", "dense")

    def __call__(self, view, R):
        x, w, b = view.xs[0], view.weight(), view.bias()
        z, back = _pull(view, jnp.ones_like(x), w * w, None if self.zero_bias else b * b)
        return (back(R / stabilize(z, self.stabilizer)),)


class ZBox(NamedTuple):
    """LRP-z^B for inputs bounded by ``low`` and ``high`` (scalars or arrays broadcasting to
    the input, e.g. per channel)."""

    low: Any
    high: Any
    stabilizer: float = 1e-6
    kinds = ("conv", "dense")

    def __call__(self, view, R):
        x, w, b = view.xs[0], view.weight(), view.bias()
        lo = jnp.broadcast_to(jnp.asarray(self.low, x.dtype), x.shape)
        hi = jnp.broadcast_to(jnp.asarray(self.high, x.dtype), x.shape)
        z0, b0 = _pull(view, x, w, b)
        z1, b1 = _pull(view, lo, _pos(w), _pos(b))
        z2, b2 = _pull(view, hi, _neg(w), _neg(b))
        g = R / stabilize(z0 - z1 - z2, self.stabilizer)
        return (x * b0(g) - lo * b1(g) - hi * b2(g),)


class WeightRule(NamedTuple):
    """Captum's rules: the layer's kernel replaced by ``modify(W)`` (bias kept unless
    ``zero_bias``), the input unsplit: ``x ⊙ J(m(W))ᵀ (R / stab(lin(x, m(W)) + b))``."""

    modify: Callable[[jax.Array], jax.Array]
    epsilon: float = 1e-9
    zero_bias: bool = False
    kinds = ("conv", "dense")

    def __call__(self, view, R):
        x = view.xs[0]
        z, back = _pull(view, x, self.modify(view.weight()), None if self.zero_bias else view.bias())
        return (x * back(R / stabilize(z, self.epsilon)),)


class _GammaWeights(NamedTuple):
    gamma: float

    def __call__(self, w):
        return w + self.gamma * jnp.maximum(w, 0)


def captum_gamma(gamma: float = 0.25, zero_bias: bool = False) -> WeightRule:
    """Captum's ``GammaRule``: ``W + γ W⁺``, bias kept (``set_bias_to_zero=False``)."""
    return WeightRule(_GammaWeights(gamma), 1e-9, zero_bias)


def captum_alpha1_beta0(zero_bias: bool = False) -> WeightRule:
    """Captum's ``Alpha1_Beta0_Rule``: ``W⁺``, bias kept, input unsplit."""
    return WeightRule(_pos, 1e-9, zero_bias)


class Rescale(NamedTuple):
    """DeepLIFT's rescale rule on an activation (Shrikumar et al. 2017): the multiplier
    ``(z − z₀) / (x − x₀)`` from the site's values at the input and at the reference, the
    derivative where ``|x − x₀| < eps`` (Captum's ``eps = 1e-10``).  Needs a reference run."""

    eps: float = 1e-10
    kinds = ("activation",)

    def __call__(self, view, R):
        x, x0 = _reference(view, "Rescale")
        return (_per_difference(R * (view.z - view.ref_z), x - x0, self.eps, lambda: view.transpose(R)[0]),)


def _reference(view, rule: str):
    """The site's input at the example and at the reference."""
    if view.ref_xs is None:
        raise ValueError(f"the {rule} rule needs the reference run (with_rules(..., reference=True))")
    return view.xs[0], view.ref_xs[0]


def _per_difference(contribution, dx, eps: float, gradient: Callable):
    """DeepLIFT's multiplier ``contribution / Δx``; ``gradient()`` where ``|Δx| < eps``."""
    near = jnp.abs(dx) < eps
    return jnp.where(near, gradient(), contribution / jnp.where(near, 1, dx))


class RescaleMaxPool(NamedTuple):
    """DeepLIFT's max-pool rule (Captum's ``maxpool``): the output's difference
    ``z − z₀ = (m − z₀) + (z − m)``, ``m = max(z, z₀)``, is sent back through the input's switches
    (the first part) and the reference's (the second), then divided by ``x − x₀`` to a
    multiplier; the gradient where ``|x − x₀| < eps``.  Needs a reference run."""

    eps: float = 1e-10
    kinds = ("maxpool",)

    def __call__(self, view, R):
        x, x0 = _reference(view, "RescaleMaxPool")
        top = jnp.maximum(view.z, view.ref_z)
        at_x = jax.vjp(view.fn, x)[1]
        at_ref = jax.vjp(view.fn, x0)[1]
        delta = at_x(R * (top - view.ref_z))[0] + at_ref(R * (view.z - top))[0]
        return (_per_difference(delta, x - x0, self.eps, lambda: at_x(R)[0]),)


class Excitation(NamedTuple):
    """Excitation backprop (Zhang et al. 2016, TorchRay's rules): on a linear layer the
    positive weights share the input's probability, ``x ⊙ J(W⁺)ᵀ (R / (lin(x, W⁺) + ε))``
    (bias dropped, input unsplit); on a pool or sum each input its share
    ``x_i ⊙ ∂z/∂x_iᵀ (R / (z + ε))`` (``ε = 1e-20`` on pools and layers, none on sums)."""

    eps: float = 1e-20
    kinds = ("conv", "dense", "avgpool", "sum")

    def __call__(self, view, R):
        if view.linear is not None:
            x = view.xs[0]
            z, back = _pull(view, x, _pos(view.weight()))
            return (x * back(R / (z + self.eps)),)
        eps = 0.0 if view.kind == "sum" else self.eps
        g = R / (view.z + eps)
        return tuple(x * t for x, t in zip(view.xs, view.transpose(g)))


class Pass(NamedTuple):
    """The relevance passes unchanged (elementwise sites: activations, batch norms)."""

    kinds = ("activation", "affine")

    def __call__(self, view, R):
        return (R,)


class Guided(NamedTuple):
    """Guided backprop on an activation: ``∂z/∂xᵀ max(R, 0)``."""

    kinds = ("activation",)

    def __call__(self, view, R):
        return view.transpose(jnp.maximum(R, 0))


class Deconv(NamedTuple):
    """Deconvnet on an activation: ``max(R, 0)``."""

    kinds = ("activation",)

    def __call__(self, view, R):
        return (jnp.maximum(R, 0),)
