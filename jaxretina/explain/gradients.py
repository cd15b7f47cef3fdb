"""Gradient attributions of a scalar function of one example: IG, saliency, SmoothGrad.

Every function takes ``f`` mapping **one example** (no batch axis) to a scalar — usually
:func:`jaxretina.explain.model_fn` ``(model, variables, target)`` — and returns device arrays of
the example's shape.  A batch is ``jax.vmap`` over examples.  Each distinct ``f`` (and shape,
rule, step count, chunk) compiles once; build ``f`` once and reuse it.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import numpy as np
import jax
import jax.numpy as jnp

from jaxretina.explain.core import (
    as_baseline, check_chunk, check_input, chunked_map, chunked_sum, progress_callback, scalar_output, split_fn,
)
from jaxretina.explain.quadrature import quadrature

__all__ = ["Attribution", "integrated_gradients", "saliency", "gradient_x_input", "smoothgrad", "ig_plan",
           "input_gradient", "IGTerm", "finish_ig"]


class Attribution(NamedTuple):
    """An attribution map and its completeness error.

    ``values``: same shape as the input.  ``delta``: scalar, ``Σ values − (f(x) − f(baseline))``;
    zero for exact Integrated Gradients (the completeness axiom), so ``|delta|`` measures the
    quadrature error.  ``steps``: the number of quadrature nodes an adaptive call
    (``steps="auto"``) settled on; ``None`` when the caller fixed the steps.
    """

    values: jax.Array
    delta: jax.Array
    steps: int | None = None


class IGTerm(NamedTuple):
    """One quadrature term ``w · ∇f(x' + α (x − x'))`` (hashable: a static jit argument)."""

    fn: Callable

    def __call__(self, consts, node):
        data, x, baseline = consts
        alpha, weight = node
        point = baseline + alpha * (x - baseline)
        grad = jax.grad(lambda z: scalar_output(self.fn(*data, z), who="integrated_gradients"))(point)
        return weight * grad


class _Head(NamedTuple):
    """The model after its affine stem, as a scalar function of the stem's output."""

    fn: Callable

    def __call__(self, *args):
        return self.fn.head(*args)


def _complete(values, end, a, b) -> Attribution:
    """``values`` with their completeness error against ``end(a) − end(b)``, the integrated
    function's change along the path (``a``, ``b``: its ends, in ``end``'s input space)."""
    ends = jax.vmap(end)(jnp.stack([a, b]))
    return Attribution(values, values.sum() - (ends[0] - ends[1]))


def finish_ig(fn, data, x, baseline, grad_sum) -> Attribution:
    return _complete((x - baseline) * grad_sum, lambda z: fn(*data, z), x, baseline)


@functools.partial(jax.jit, static_argnums=0)
def _ig_finish(fn, data, x, baseline, grad_sum):
    return finish_ig(fn, data, x, baseline, grad_sum)


@functools.partial(jax.jit, static_argnums=0)
def _stem_ends(fn, data, x, baseline):
    return fn.stem(*data, x), fn.stem(*data, baseline)


@functools.partial(jax.jit, static_argnums=0)
def _ig_finish_stem(fn, data, x, baseline, zx, zb, grad_sum_z):
    # Σ_k w_k ∇ₓf(x_k) = Aᵀ Σ_k w_k ∇_z head(z_k): the stem's (constant) transposed Jacobian once.
    _, transpose = jax.vjp(lambda u: fn.stem(*data, u), x)
    return _complete((x - baseline) * transpose(grad_sum_z)[0], lambda z: fn.head(*data, z), zx, zb)


class _Plan(NamedTuple):
    """What the steps integrate: ``term`` over ``consts`` (the model's head between the stem's
    ends, or the whole function between x and x'), and ``finish(grad_sum) -> Attribution``."""

    term: Callable
    consts: tuple
    finish: Callable
    stemmed: bool


def ig_plan(fn, data, x, b, stem: bool) -> _Plan:
    if stem and getattr(fn, "has_affine_stem", False):
        zx, zb = _stem_ends(fn, data, x, b)
        return _Plan(IGTerm(_Head(fn)), (data, zx, zb),
                     lambda g: _ig_finish_stem(fn, data, x, b, zx, zb, g), True)
    return _Plan(IGTerm(fn), (data, x, b), lambda g: _ig_finish(fn, data, x, b, g), False)


@functools.partial(jax.jit, static_argnums=0)
def _ig_whole(fn, data, x, baseline, alphas, weights):
    # All steps vmap-ed, endpoints and delta in the same program.
    grads = jax.vmap(IGTerm(fn), in_axes=(None, 0))((data, x, baseline), (alphas, weights))
    return finish_ig(fn, data, x, baseline, grads.sum(0))


def integrated_gradients(
    f: Callable,
    x: Any,
    *,
    baseline: Any,
    steps: int | str = 50,
    rule: str = "gausslegendre",
    chunk: int | str | None = None,
    tol: float = 0.01,
    max_steps: int = 512,
    stem: bool = True,
    progress: bool | Callable[[int, int], None] | None = None,
) -> Attribution:
    """Integrated Gradients of a scalar function of one example.

    ``IG_i = (x_i − x'_i) · ∫₀¹ ∂f(x' + α(x − x'))/∂x_i dα ≈ (x_i − x'_i) Σ_k w_k ∂_i f(x' + α_k(x − x'))``
    with nodes/weights from :func:`jaxretina.explain.quadrature.quadrature` (``rule``).

    Args:
      f: one example -> scalar.  A :class:`jax.tree_util.Partial` (e.g. from
        :func:`model_fn`) passes its bound arrays as data instead of compile-time constants.
      x: one example, any shape, float dtype, finite.
      baseline: ``x'``: a scalar or an array broadcastable to ``x`` (e.g. a half-gray image).
      steps: number of quadrature nodes, or ``"auto"``: more nodes round by round until the
        completeness error is small, ``|delta| <= tol · |f(x) − f(baseline)|`` (at most
        ``max_steps``; the result says how many it used in ``steps``).  With
        ``rule="clenshaw_curtis"`` the rounds are 9, 17, 33, … nested nodes and every gradient
        is reused (the cost is the final round's; memory holds one gradient per node); with
        another rule, 8, 16, 32, … nodes recomputed each round (at most twice the final cost).
        Every round reuses one compiled chunk program.  Measured to 1 % (benchmarks/anchors.py):
        DenseNet121 224², Gauss–Legendre 8 nodes 0.94 s vs Clenshaw–Curtis 9 nodes 1.30 s;
        random-weight DRIU 256² (a rough path: ReLU kinks), Gauss–Legendre 128 nodes (248
        evaluated) 103 s vs Clenshaw–Curtis 257 nodes 101 s — so Gauss–Legendre stays the default.
      rule: ``gausslegendre`` (Captum's default), ``riemann_left|right|middle|trapezoid`` or
        ``captum_trapezoid`` (Captum's trapezoid weights, summing to (n−1)/n, for parity).
      tol, max_steps: the adaptive rule's relative tolerance and step limit (``steps="auto"``).
      chunk: nodes per compiled chunk (Captum's ``internal_batch_size``): ``None`` = 8 (as
        fast as one ``vmap`` of all steps on the build machine, at a fraction of the memory),
        ``"all"`` = every step in one ``vmap``.  Peak memory grows with ``chunk`` × one
        forward + backward.  With ``chunk >= steps`` (and no stem split) the whole IG,
        endpoints and ``delta`` included, is one compiled program.
      stem: for ``f`` from :func:`model_fn` on a model with an affine stem (DRIU, DenseNet:
        :mod:`jaxretina.models.stem`), run the stem once at ``x`` and ``x'`` and integrate
        the rest: exact (an affine map keeps the path straight; its input gradient is applied
        once to the summed head gradients) and each step skips the first convolution's
        forward and input gradient.  ``False``: the whole model at every step, as Captum.
      progress: ``True`` for a progress bar over the steps (tqdm), or a callable
        ``(steps done, steps)`` called after each chunk; each chunk is then waited for.  Not
        under ``jit``/``vmap``, and not when all steps are one program (``chunk >= steps``).

    Returns:
      :class:`Attribution` ``(values, delta)``, ``values`` of ``x``'s shape.

    Example::

      >>> f = explain.model_fn(model, variables, targets.segmentation_sum())
      >>> ig = explain.integrated_gradients(f, x, baseline=0.0, steps=16, chunk=8)
      >>> ig.values.shape == x.shape, bool(abs(ig.delta) < 0.05 * abs(f(x) - f(jnp.zeros_like(x))))
      (True, True)
      >>> batch = jax.vmap(lambda xi: explain.integrated_gradients(f, xi, baseline=0.0, steps=8))(xs)
      >>> batch.values.shape
      (2, 32, 32, 3)
      >>> ig = explain.integrated_gradients(f, x, baseline=0.0, steps="auto", tol=0.05)
      >>> ig.steps in (8, 16, 32, 64)                # the nodes it needed
      True
    """
    who = "integrated_gradients"
    x = check_input(x, who=who)
    b = as_baseline(baseline, x, who=who)
    if isinstance(steps, str):
        if steps != "auto":
            raise ValueError(f"{who}: steps must be a positive int or 'auto'; found {steps!r}")
        return _ig_auto(f, x, b, rule=rule, chunk=chunk, tol=tol, max_steps=max_steps, stem=stem)
    alphas, weights = quadrature(rule, steps)
    alphas, weights = alphas.astype(x.dtype), weights.astype(x.dtype)
    chunk = check_chunk(chunk, steps, who=who)
    fn, data = split_fn(f)
    plan = ig_plan(fn, data, x, b, stem)
    if chunk >= steps and not plan.stemmed:
        return _ig_whole(fn, data, x, b, alphas, weights)
    report = progress_callback(progress, desc="Integrated Gradients", unit="step")
    return plan.finish(chunked_sum(plan.term, plan.consts, (alphas, weights), chunk=chunk, progress=report))


def _ig_auto(f, x, b, *, rule, chunk, tol, max_steps, stem) -> Attribution:
    # Doubling rounds on the host: each round's completeness check needs one device-to-host
    # scalar.  Chunked every round (not one vmap of all steps), so one compiled chunk program
    # serves every round.
    who = "integrated_gradients"
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"{who}: tol must be a positive number; found {tol!r}")
    if not (isinstance(max_steps, int) and max_steps >= 8):
        raise ValueError(f"{who}: max_steps must be an int >= 8; found {max_steps!r}")
    chunk = 8 if chunk == "all" else check_chunk(chunk, 8, who=who)  # every round: chunks of <= 8
    fn, data = split_fn(f)
    plan = ig_plan(fn, data, x, b, stem)
    if rule == "clenshaw_curtis":
        return _ig_auto_nested(plan, x, chunk=chunk, tol=tol, max_steps=max_steps)
    steps = 8
    while True:
        alphas, weights = quadrature(rule, steps)
        result = plan.finish(chunked_sum(plan.term, plan.consts, (alphas.astype(x.dtype), weights.astype(x.dtype)),
                                         chunk=chunk))
        if _converged(result, tol) or steps * 2 > max_steps:
            return Attribution(result.values, result.delta, steps)
        steps *= 2


def _converged(result, tol) -> bool:
    delta = float(result.delta)
    return abs(delta) <= tol * abs(float(result.values.sum()) - delta)  # tol · |f(x) - f(baseline)|


def _ig_auto_nested(plan, x, *, chunk, tol, max_steps) -> Attribution:
    # Clenshaw-Curtis with 2^j + 1 nodes: doubling the intervals keeps every old node (the even
    # ones) and adds the odd ones, so each round evaluates only the new gradients; the weights
    # of all nodes change, hence one stored gradient per node (of the stem's output shape
    # when the model has an affine stem).
    intervals = 8
    alphas, _ = quadrature("clenshaw_curtis", intervals + 1)
    ones = np.ones_like(alphas)
    grads = chunked_map(plan.term, plan.consts, (alphas.astype(x.dtype), ones.astype(x.dtype)), chunk=chunk)
    while True:
        _, weights = quadrature("clenshaw_curtis", intervals + 1)
        result = plan.finish(jnp.tensordot(jnp.asarray(weights, x.dtype), grads, axes=1))
        if _converged(result, tol) or 2 * intervals + 1 > max_steps:
            return Attribution(result.values, result.delta, intervals + 1)
        intervals *= 2
        alphas, _ = quadrature("clenshaw_curtis", intervals + 1)
        new = alphas[1::2]
        fresh = chunked_map(plan.term, plan.consts, (new.astype(x.dtype), np.ones_like(new).astype(x.dtype)),
                            chunk=chunk)
        merged = jnp.zeros((intervals + 1,) + grads.shape[1:], x.dtype)
        grads = merged.at[0::2].set(grads).at[1::2].set(fresh)


@functools.partial(jax.jit, static_argnums=(0, 3))
def input_gradient(fn, data, x, absolute):
    g = jax.grad(lambda z: scalar_output(fn(*data, z), who="saliency"))(x)
    return jnp.abs(g) if absolute else g


def saliency(f: Callable, x: Any, *, abs: bool = True) -> jax.Array:  # noqa: A002 (Captum's name)
    """Vanilla gradient ``∂f/∂x`` (its absolute value by default, as Captum's ``Saliency``).

    Example::

      >>> s = explain.saliency(explain.model_fn(model, variables, target), x)
      >>> s.shape == x.shape
      True
    """
    x = check_input(x, who="saliency")
    fn, data = split_fn(f)
    return input_gradient(fn, data, x, bool(abs))


def gradient_x_input(f: Callable, x: Any) -> jax.Array:
    """``x · ∂f/∂x`` — IG with a zero baseline and one right-Riemann step."""
    x = check_input(x, who="gradient_x_input")
    fn, data = split_fn(f)
    return x * input_gradient(fn, data, x, False)


class _NoisyTerm(NamedTuple):
    explainer: Callable
    squares: bool = False

    def __call__(self, consts, index):
        data, x, key, sigma = consts
        noise = sigma * jax.random.normal(jax.random.fold_in(key, index), x.shape, x.dtype)
        a = self.explainer(*data, x + noise)
        return (a, jax.tree.map(jnp.square, a)) if self.squares else a


NOISE_TUNNEL = ("smoothgrad", "smoothgrad_sq", "vargrad")


def smoothgrad(
    explainer: Callable,
    x: Any,
    *,
    key: jax.Array,
    samples: int = 16,
    sigma: float,
    chunk: int | str | None = None,
    variant: str = "smoothgrad",
) -> Any:
    """SmoothGrad around any explainer: ``mean_s explainer(x + ε_s)``, ``ε_s ~ N(0, σ²)``.

    ``variant`` is Captum's ``NoiseTunnel`` type: ``"smoothgrad"`` the mean ``E[a]``,
    ``"smoothgrad_sq"`` the mean of squares ``E[a²]``, ``"vargrad"`` the variance
    ``E[a²] − E[a]²`` (Adebayo et al. 2018), all from the same draws in one pass.

    Args:
      explainer: one example -> attribution (an array or a pytree such as
        :class:`Attribution`, averaged leaf by leaf), e.g.
        ``lambda z: explain.saliency(f, z)``; a ``jax.tree_util.Partial`` passes its bound arrays
        as data.
      key: a ``jax.random`` key; sample ``s`` uses ``fold_in(key, s)``, so results do not depend
        on ``chunk``.
      samples: number of noisy copies.
      sigma: noise standard deviation in the input's units (Smilkov et al. suggest 10–20 % of
        the input's range).
      chunk: samples per compiled chunk: ``None`` = 8, ``"all"`` = every sample in one ``vmap``.
        Lower it for heavy explainers (IG inside SmoothGrad multiplies the memory).

    Example::

      >>> f = explain.model_fn(model, variables, targets.segmentation_sum())
      >>> sg = explain.smoothgrad(lambda v: explain.saliency(f, v), x,
      ...                         key=jax.random.key(0), samples=4, sigma=10.0, chunk=2)
      >>> sg.shape == x.shape
      True
    """
    who = "smoothgrad"
    x = check_input(x, who=who)
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"{who}: samples must be a positive int; found {samples!r}")
    if not (np.isscalar(sigma) and np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"{who}: sigma must be a finite number >= 0; found {sigma!r}")
    if not isinstance(key, jax.Array):
        raise TypeError(f"{who}: key must be a jax.random key (jax.random.key(seed)); found {type(key).__name__}")
    if variant not in NOISE_TUNNEL:
        raise ValueError(f"{who}: variant must be one of {list(NOISE_TUNNEL)}; found {variant!r}")
    chunk = check_chunk(chunk, samples, who=who)
    fn, data = split_fn(explainer)
    consts = (data, x, key, jnp.asarray(sigma, x.dtype))
    total = chunked_sum(_NoisyTerm(fn, variant != "smoothgrad"), consts, jnp.arange(samples), chunk=chunk)
    if variant == "smoothgrad":
        return jax.tree.map(lambda t: t / samples, total)
    mean, mean_sq = (jax.tree.map(lambda t: t / samples, part) for part in total)
    if variant == "smoothgrad_sq":
        return mean_sq
    return jax.tree.map(lambda m2, m: m2 - m * m, mean_sq, mean)
