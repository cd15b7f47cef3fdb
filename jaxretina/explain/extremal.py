"""Extremal perturbations (Fong, Patrick & Vedaldi 2019), as TorchRay 1.0.0.2 computes them: the
smooth mask of a given area that keeps the target highest when the rest of the input is
blurred, found by gradient ascent — every area at once (``vmap``), the whole optimisation one
compiled ``lax.fori_loop``.

**Perturbation.**  A pyramid of ``L`` = ``levels`` inputs ``y_l``, from the most perturbed
(``l = 0``) to ``x`` itself (``l = L−1``): Gaussian blurs of standard deviation
``max_blur · (1 − l/(L−1))`` (separable, kernel ``exp(−i²/2σ²)`` on ``|i| ≤ ⌈4σ⌉`` normalised
to sum 1, zeros outside the input: TorchRay's ``imsmooth``) or, for ``"fade"``, ``(l/(L−1)) · x``.
A mask ``m ∈ [0, 1]`` picks, per pixel, the level ``m (L − 1)`` with linear interpolation
between neighbouring levels.

**Smooth masks.**  The parameters ``p`` live on a grid ``⌈n / step⌉`` per axis.  Each output
pixel ``u`` gathers the ``(2r+1)^d`` parameters around it (``r = 1 + ⌈σ/step⌉``, zero padding
``1 + ⌈2σ/step⌉``), weighs parameter ``i`` by ``k(|u − (σ + step·i)| / σ)`` with
``k(z) = exp(−2 max(z − ½, 0)²)``, and pools them by a soft maximum ``Σ w_j softmax(20 w)_j``,
clamped to [0, 1]; the mask is that map (with a margin of ``σ`` pixels) cropped to the input —
TorchRay's ``MaskGenerator``.

**Objective.**  With ``t`` the target, ``preserve`` maximises ``t(perturb(x, m))``, ``delete``
``−t(perturb(x, 1 − m))``, ``dual`` their sum, minus the area term
``λ_t · mean((sort(m) − r_a)²)`` over the mask with its margin, ``r_a`` the sorted mask of area
``a`` (zeros then ``⌈a N⌉``-ish ones, as TorchRay's ``reference``), ``λ_t = 300 · 1.0035^t``.
With ``jitter`` the perturbed input is flipped left–right at even iterations.  The parameters
start at 1 and are clamped to [0, 1] after each step of the optimiser: by default
:func:`torchray_sgd` (TorchRay's SGD: learning rate 0.01, momentum 0.9, dampening 0.9) — any
``optax`` optimiser can take its place (build it once: it is a static argument of the
compiled loop).  The masks returned are the last ones evaluated — those of the last recorded
reward (TorchRay's), before the last step.  Where mask values tie, the area term's gradient
goes to the tied pixels in index order (``jnp.sort`` is stable; the symmetric start has ties).

Example::

    >>> f = explain.model_fn(grader, grader_variables, targets.class_logit(3))
    >>> ep = explain.extremal_perturbation(f, z, areas=(0.1, 0.3), max_iter=20)
    >>> ep.masks.shape, ep.reward.shape
    ((2, 64, 64), (2, 20))
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import jax
import jax.numpy as jnp
import optax

from jaxretina.explain.core import along_axes, check_input, scalar_output, split_fn
from jaxretina.propagation.program import vary_like

__all__ = ["extremal_perturbation", "ExtremalPerturbation", "torchray_sgd", "TORCHRAY_SGD", "blur_pyramid", "smooth_mask",
           "VARIANTS", "PERTURBATIONS"]

VARIANTS = ("preserve", "delete", "dual")
PERTURBATIONS = ("blur", "fade")
_COLDNESS = 20.0
_AREA_WEIGHT, _AREA_GROWTH = 300.0, 1.0035
_TORCH_EPS32 = 1.1920929e-07   # TorchRay's EPSILON_SINGLE in the Gaussian's denominator


class ExtremalPerturbation(NamedTuple):
    """``masks`` (areas, *spatial) in [0, 1]; per iteration ``reward`` and ``area`` (the area
    term, negative) of each mask: (areas, max_iter)."""

    masks: jax.Array
    reward: jax.Array
    area: jax.Array


def torchray_sgd(learning_rate: float = 0.01, momentum: float = 0.9, dampening: float = 0.9,
                 ) -> optax.GradientTransformation:
    """PyTorch's ``SGD`` with momentum and dampening as an optax transformation: the buffer
    starts at the first gradient, then ``b ← μ b + (1 − d) g``; the update is ``−lr · b``."""

    def init(params):
        return (jax.tree.map(jnp.zeros_like, params), jnp.zeros((), jnp.int32))

    def update(grads, state, params=None):
        buf, count = state
        buf = jax.tree.map(lambda b, g: jnp.where(count == 0, g, momentum * b + (1 - dampening) * g), buf, grads)
        return jax.tree.map(lambda b: -learning_rate * b, buf), (buf, count + 1)

    return optax.GradientTransformation(init, update)


# One object: the optimiser is a static argument of the compiled loop (build yours once, too).
TORCHRAY_SGD = torchray_sgd()


def _gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n): zero-padded convolution with TorchRay's normalised Gaussian of ``sigma``."""
    width = math.ceil(4 * sigma)
    taps = np.arange(-width, width + 1) / (math.sqrt(2) * sigma + _TORCH_EPS32)
    taps = np.exp(-taps * taps)
    taps /= taps.sum()
    offset = np.arange(n)[None, :] - np.arange(n)[:, None]          # input j − output i
    return np.where(np.abs(offset) <= width, taps[np.clip(offset + width, 0, 2 * width)], 0.0)


def blur_pyramid(x: jax.Array, levels: int = 8, max_blur: float = 20.0, kind: str = "blur") -> jax.Array:
    """The ``levels`` perturbed copies of one example ``x`` (spatial…, C): ``(levels, *x.shape)``,
    level 0 the most perturbed, the last ``x`` (see the module docstring)."""
    out = []
    for s in np.linspace(0.0, 1.0, levels):
        if kind == "fade":
            out.append(x * jnp.asarray(s, x.dtype))
        else:
            sigma = (1 - s) * max_blur
            out.append(along_axes(x, [_gaussian_matrix(n, sigma) for n in x.shape[:-1]] + [None]))
    return jnp.stack(out)


def _perturb(pyramid: jax.Array, m: jax.Array) -> jax.Array:
    """The input at mask ``m`` (spatial…): level ``m (L − 1)``, linearly interpolated."""
    last = pyramid.shape[0] - 1
    w = (m * last)[None, ..., None]
    k = jnp.floor(w)
    frac = w - k
    k = k.astype(jnp.int32)
    lo = jnp.take_along_axis(pyramid, k, axis=0)[0]
    hi = jnp.take_along_axis(pyramid, jnp.minimum(k + 1, last), axis=0)[0]
    return (1 - frac[0]) * lo + frac[0] * hi


class _Geometry(NamedTuple):
    shape: tuple
    step: int
    sigma: float
    padding: int
    radius: int
    shape_in: tuple
    shape_mid: tuple
    shape_out: tuple

    @classmethod
    def of(cls, shape, step, sigma):
        padding = 1 + math.ceil((sigma + sigma) / step)   # TorchRay's margin = sigma
        radius = 1 + math.ceil(sigma / step)
        shape_in = tuple(math.ceil(n / step) for n in shape)
        shape_mid = tuple(n + 2 * padding - 2 * radius for n in shape_in)
        shape_out = tuple(step * n - step + 1 for n in shape_mid)
        return cls(tuple(shape), step, float(sigma), padding, radius, shape_in, shape_mid, shape_out)

    def weights(self) -> np.ndarray:
        """((2r+1)^d, *shape_out): each gathered parameter's weight at each output pixel."""
        size = 2 * self.radius + 1
        u = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in self.shape_out], indexing="ij")
        # TorchRay's float32 index arithmetic: floor(mid/up · u)
        inv = [np.float32(m) / np.float32(self.step * m) for m in self.shape_mid]
        base = [np.floor(i * a) for i, a in zip(inv, u)]
        out = []
        for ks in itertools.product(range(size), repeat=len(self.shape)):
            delta2 = sum((a.astype(np.float64) - (self.sigma + self.step * (b + k - self.padding))) ** 2
                         for a, b, k in zip(u, base, ks))
            z = np.sqrt(delta2) / self.sigma
            out.append(np.exp(-2 * np.maximum(z - 0.5, 0.0) ** 2))
        return np.stack(out)


def smooth_mask(p: jax.Array, geometry: _Geometry, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(mask cropped to the input, mask with its margin)`` from the parameters ``p`` (shape_in)."""
    g = geometry
    size = 2 * g.radius + 1
    padded = jnp.pad(p, g.padding)
    patches = jnp.stack([padded[tuple(slice(k, k + n) for k, n in zip(ks, g.shape_mid))]
                         for ks in itertools.product(range(size), repeat=p.ndim)])
    for axis in range(1, p.ndim + 1):   # nearest upsampling by step, then the last step − 1 cut
        patches = jnp.repeat(patches, g.step, axis=axis)
    patches = patches[(slice(None), *(slice(0, n) for n in g.shape_out))] * weights
    pooled = (patches * jax.nn.softmax(_COLDNESS * patches, axis=0)).sum(0)
    # clamped to [0, 1] with torch.clamp's derivative: 1 on the closed interval (jnp.clip halves
    # it where a value sits exactly on a bound, as the all-ones start does)
    full = jnp.where(pooled > 1, 1.0, jnp.where(pooled < 0, 0.0, pooled)).astype(pooled.dtype)
    m = round(g.sigma)
    return full[tuple(slice(m, m + n) for n in g.shape)], full


class _Problem(NamedTuple):
    fn: Callable   # static half of f (core.split_fn); its data travel traced
    variant: str
    jitter: bool
    geometry: _Geometry

    def energy(self, p, t, data, pyramid, weights, reference, lam):
        mask, full = smooth_mask(p, self.geometry, weights)
        flip = jnp.asarray(self.jitter) & (t % 2 == 0)

        def score(z):
            z = jnp.where(flip, jnp.flip(z, axis=z.ndim - 2), z)   # left–right (the width axis)
            return scalar_output(self.fn(*data, z), who="extremal_perturbation")

        if self.variant == "preserve":
            reward = score(_perturb(pyramid, mask))
        elif self.variant == "delete":
            reward = -score(_perturb(pyramid, 1 - mask))
        else:
            reward = score(_perturb(pyramid, mask)) - score(_perturb(pyramid, 1 - mask))
        area = -jnp.mean((jnp.sort(full.reshape(-1)) - reference) ** 2) * lam
        return reward + area, (reward, area)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _optimise(problem: _Problem, optimizer, max_iter, data, x_pyramid, weights, references):
    grad = jax.grad(problem.energy, has_aux=True)
    p0 = vary_like(jnp.ones(problem.geometry.shape_in, x_pyramid.dtype), x_pyramid)   # inside shard_map too

    def one_area(reference):
        def body(t, carry):
            p, _, state, rewards, areas = carry
            lam = jnp.asarray(_AREA_WEIGHT, p.dtype) * jnp.asarray(_AREA_GROWTH, p.dtype) ** t
            g, (reward, area) = grad(p, t, data, x_pyramid, weights, reference, lam)
            updates, state = optimizer.update(jax.tree.map(jnp.negative, g), state, p)   # ascent
            stepped = jnp.clip(optax.apply_updates(p, updates), 0.0, 1.0)
            return stepped, p, state, rewards.at[t].set(reward), areas.at[t].set(area)

        zeros = vary_like(jnp.zeros((max_iter,), p0.dtype), x_pyramid)
        _, last, _, rewards, areas = jax.lax.fori_loop(0, max_iter, body,
                                                       (p0, p0, optimizer.init(p0), zeros, zeros))
        return smooth_mask(last, problem.geometry, weights)[0], rewards, areas

    return jax.vmap(one_area)(references)


def extremal_perturbation(f: Callable, x: Any, *, areas: float | Sequence[float] = (0.1,), variant: str = "preserve",
                          perturbation: str = "blur", max_iter: int = 800, levels: int = 8, max_blur: float = 20.0,
                          step: int = 7, sigma: float = 21.0, jitter: bool = True,
                          optimizer: optax.GradientTransformation | None = None) -> ExtremalPerturbation:
    """Extremal perturbation masks of ``f`` at one example ``x`` (spatial…, C), one per area
    (fractions of the input), optimised together (see the module docstring; defaults as
    TorchRay's).  ``f`` maps one example to a scalar (:func:`~jaxretina.explain.model_fn`)."""
    who = "extremal_perturbation"
    x = check_input(x, who=who)
    areas = (areas,) if isinstance(areas, (int, float)) else tuple(areas)
    if not areas or not all(isinstance(a, (int, float)) and 0 < a < 1 for a in areas):
        raise ValueError(f"{who}: areas must be fractions strictly between 0 and 1; found {areas!r}")
    if variant not in VARIANTS or perturbation not in PERTURBATIONS:
        raise ValueError(f"{who}: variant must be one of {VARIANTS} and perturbation one of {PERTURBATIONS}; "
                         f"found {variant!r}, {perturbation!r}")
    for name, value, low in (("max_iter", max_iter, 1), ("levels", levels, 2), ("step", step, 1)):
        if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low):
            raise ValueError(f"{who}: {name} must be an integer ≥ {low}; found {value!r}")
    if not (sigma > 0 and max_blur > 0):
        raise ValueError(f"{who}: sigma and max_blur must be positive; found {sigma!r}, {max_blur!r}")
    geometry = _Geometry.of(x.shape[:-1], int(step), float(sigma))
    total = math.prod(geometry.shape_out)
    references = np.ones((len(areas), total))
    for i, a in enumerate(areas):
        references[i, :int(total * (1 - a))] = 0
    fn, data = split_fn(f)
    masks, rewards, area = _optimise(_Problem(fn, variant, bool(jitter), geometry), optimizer or TORCHRAY_SGD,
                                     int(max_iter), data, blur_pyramid(x, int(levels), float(max_blur), perturbation),
                                     jnp.asarray(geometry.weights(), x.dtype), jnp.asarray(references, x.dtype))
    return ExtremalPerturbation(masks, rewards, area)
