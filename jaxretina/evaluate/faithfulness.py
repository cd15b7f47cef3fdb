"""Faithfulness by perturbation: does removing what a map ranks highest change the model's score
most?  Every perturbed input of one example runs batched through one compiled program, built
on the device from the ranks (no host round-trip per step), ``chunk`` at a time.

With ``f`` a function of one example to a scalar (:func:`jaxretina.explain.model_fn`), ``x`` the
example, ``a`` the map (the example's shape, or its spatial shape: a position is then a pixel or
voxel with all its channels), ``n`` positions ranked by ``a`` (``order="morf"``: most relevant
first, ties by position; ``"lerf"``: least relevant first) and ``K`` steps, step ``k`` changes
the first ``c_k = ⌈k n / K⌉`` positions:

* ``mode="deletion"`` — they take the reference's values (a number, e.g. 0 or the half-gray
  image, or an array of ``x``'s shape such as a blurred copy): Petsiuk et al.'s deletion curve,
  Bach et al.'s pixel flipping (Quantus' ``PixelFlipping`` with ``features_in_step = n / K``
  values, which omits the unperturbed ``k = 0``);
* ``mode="insertion"`` — the reference takes ``x``'s values there (insertion curve).

:func:`perturbation_curve` returns the ``K + 1`` scores ``s_k`` at fractions ``k / K`` and the
trapezoid area under them over ``[0, 1]``; :func:`aopc` is ``(1 / (K+1)) Σ_k (s_0 − s_k)``
(Samek et al.'s area over the MoRF perturbation curve).  Cost: ``K + 1`` forward passes.

:func:`infidelity` (Yeh et al.) compares the map's prediction of the score's change under random
perturbations, ``Σ I · a``, with the change itself; :func:`faithfulness_correlation` (Bhatt et
al. 2020) correlates the map's sum over random subsets of positions with the score's drop when
they take the reference's values; :func:`confidence_change` is the score's change
when the example is multiplied by the map (pytorch-grad-cam's).

Example::

    >>> f = explain.model_fn(grader, grader_variables, targets.class_logit(3))
    >>> a = explain.gradient_x_input(f, z).sum(-1)                        # (64, 64)
    >>> curve = evaluate.perturbation_curve(f, z, a, steps=16, baseline=0.0)
    >>> curve.scores.shape, float(curve.fractions[-1])
    ((17,), 1.0)
    >>> r = evaluate.faithfulness_correlation(f, z, a, key=jax.random.key(0), runs=8, subset=64)
    >>> bool(-1 <= r <= 1)
    True
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np
import jax
import jax.numpy as jnp

from jaxretina.evaluate.agreement import pearson
from jaxretina.evaluate.regions import check_map
from jaxretina.evaluate.robustness import check_draws, draw_noise
from jaxretina.explain.core import as_baseline, check_input, chunked_map, split_fn
from jaxretina.explain.memory import pick_chunk

__all__ = ["Curve", "example_and_map", "perturbation_curve", "aopc", "infidelity", "confidence_change", "MODES",
           "ORDERS", "faithfulness_correlation", "draw_subset"]

MODES = ("deletion", "insertion")
ORDERS = ("morf", "lerf")


def example_and_map(x, a, who):
    """The checked example and its map (the example's shape, or its spatial shape)."""
    x, a = check_input(x, who=who), check_map(a, who=who)
    if a.shape not in (x.shape, x.shape[:-1]):
        raise ValueError(f"{who}: the map must have the example's shape {x.shape} or its spatial shape "
                         f"{x.shape[:-1]}; found {a.shape}")
    return x, a


class Curve(NamedTuple):
    """Scores along a perturbation curve: ``fractions`` and ``scores`` ``(K + 1,)``, ``auc`` the
    trapezoid area under ``scores`` over the fractions ``[0, 1]``."""
    fractions: jax.Array
    scores: jax.Array
    auc: jax.Array


class _Stepped(NamedTuple):
    fn: Callable   # static half of f (core.split_fn); its data travel traced in consts
    insertion: bool
    per_pixel: bool   # ranks over the spatial positions: broadcast over the channels

    def __call__(self, consts, count):
        data, x, base, rank = consts
        changed = rank < count
        if self.per_pixel:
            changed = changed[..., None]
        return self.fn(*data, jnp.where(changed, x, base) if self.insertion else jnp.where(changed, base, x))


def _ranks(a: jax.Array, order: str) -> jax.Array:
    """Each position's place in the perturbation order (0 first)."""
    flat = a.reshape(-1)
    ordered = jnp.argsort(-flat if order == "morf" else flat, stable=True)
    return jnp.zeros(flat.size, jnp.int32).at[ordered].set(jnp.arange(flat.size, dtype=jnp.int32)).reshape(a.shape)


def perturbation_curve(f: Callable, x: Any, a: Any, *, steps: int = 100, mode: str = "deletion",
                       order: str = "morf", baseline: Any = 0.0, chunk: int | str | None = None,
                       budget: float | None = None) -> Curve:
    """The deletion or insertion curve of ``f`` at one example ``x`` ranked by the map ``a``
    (module docstring): ``steps + 1`` scores, ``chunk`` perturbed inputs per call of one compiled
    program (``budget=`` bytes picks the largest chunk that fits)."""
    who = "perturbation_curve"
    x, a = example_and_map(x, a, who)
    if mode not in MODES or order not in ORDERS:
        raise ValueError(f"{who}: mode must be one of {MODES} and order one of {ORDERS}; found {mode!r}, {order!r}")
    n = a.size
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= n:
        raise ValueError(f"{who}: steps must be an integer in [1, {n}] (the map's positions); found {steps!r}")
    counts = -(-np.arange(steps + 1, dtype=np.int64) * n // steps)            # ⌈k n / K⌉, exact
    base = as_baseline(baseline, x, who=who)
    fn, data = split_fn(f)
    term = _Stepped(fn, mode == "insertion", a.shape != x.shape)
    consts, xs = (data, x, base, _ranks(a, order)), jnp.asarray(counts, jnp.int32)
    scores = chunked_map(term, consts, xs, chunk=pick_chunk(term, consts, xs, chunk, budget, who=who))
    fractions = jnp.asarray(counts / n, scores.dtype)
    return Curve(fractions, scores, jnp.trapezoid(scores, fractions))


class _Perturbed(NamedTuple):
    fn: Callable   # static half of f (core.split_fn); its data travel traced in consts
    per_pixel: bool
    std: float

    def __call__(self, consts, s):
        """``(f(x − I_s), Σ I_s · a)``; ``s = −1`` is the example itself (I = 0)."""
        data, x, a, key = consts
        noise = jnp.where(s >= 0, draw_noise(key, s, x.shape, x.dtype, gaussian=True, scale=self.std), 0)
        weights = a[..., None] if self.per_pixel else a
        return self.fn(*data, x - noise), (noise * weights).sum()


def infidelity(f: Callable, x: Any, a: Any, *, key: jax.Array, samples: int = 10, std: float = 0.1,
               normalize: bool = False, chunk: int | str | None = None, budget: float | None = None) -> jax.Array:
    """Infidelity (Yeh et al. 2019; Captum's ``infidelity``) of the map ``a`` for ``f`` at ``x``:
    with ``I_s ~ N(0, std²)`` per value (:func:`~jaxretina.evaluate.draw_noise`), ``u_s = Σ I_s · a``
    (a spatial map weighs every channel of its pixel) and ``Δ_s = f(x) − f(x − I_s)``,
    ``mean_s (u_s − Δ_s)²``; ``normalize``: ``mean_s (β u_s − Δ_s)²`` with the least-squares
    ``β = Σ u Δ / Σ u²`` (Captum's ``normalize=True``).  ``samples + 1`` forward passes."""
    who = "infidelity"
    x, a = example_and_map(x, a, who)
    check_draws(samples, std, key, who=who)
    fn, data = split_fn(f)
    term, consts, xs = _Perturbed(fn, a.shape != x.shape, float(std)), (data, x, a.astype(x.dtype), key), \
        jnp.arange(-1, samples)
    scores, u = chunked_map(term, consts, xs, chunk=pick_chunk(term, consts, xs, chunk, budget, who=who))
    delta, u = scores[0] - scores[1:], u[1:]
    if normalize:
        uu = (u * u).sum()
        beta = jnp.where(uu == 0, 0, (u * delta).sum() / jnp.where(uu == 0, 1, uu))
        u = beta * u
    return ((u - delta) ** 2).mean()


class _Multiplied(NamedTuple):
    fn: Callable   # static half of f (core.split_fn); its data travel traced in consts
    per_pixel: bool

    def __call__(self, consts, which):
        data, x, a = consts
        weights = a[..., None] if self.per_pixel else a
        return self.fn(*data, jnp.where(which > 0, x * weights, x))


def confidence_change(f: Callable, x: Any, a: Any) -> jax.Array:
    """``f(x ⊙ a) − f(x)``: the score's change when the example is multiplied by the map (a CAM
    in [0, 1]; spatial maps weigh every channel of their pixel) — pytorch-grad-cam's
    ``CamMultImageConfidenceChange``; its ``DropInConfidence`` is ``max(0, −change)`` and
    ``IncreaseInConfidence`` is ``change > 0``.  Two forward passes in one program."""
    who = "confidence_change"
    x, a = example_and_map(x, a, who)
    fn, data = split_fn(f)
    scores = chunked_map(_Multiplied(fn, a.shape != x.shape), (data, x, a.astype(x.dtype)), jnp.arange(2), chunk=2)
    return scores[1] - scores[0]


def aopc(curve: Curve) -> jax.Array:
    """``mean_k (s_0 − s_k)`` over the curve's ``K + 1`` points: the area over a MoRF deletion
    curve (large: the map found what the score rests on)."""
    return (curve.scores[0] - curve.scores).mean()


def draw_subset(key: jax.Array, s: Any, n: int, size: int) -> jax.Array:
    """Draw ``s`` of :func:`faithfulness_correlation`: ``size`` distinct flat positions of ``n``
    from ``fold_in(key, s)`` (pass these to an anchor to give it the same draws)."""
    return jax.random.choice(jax.random.fold_in(key, s), n, (size,), replace=False)


class _Subsets(NamedTuple):
    fn: Callable   # static half of f (core.split_fn); its data travel traced in consts
    per_pixel: bool
    size: int

    def __call__(self, consts, s):
        """``(f(x with subset s at the reference), Σ a over subset s)``; ``s = −1``: ``(f(x), 0)``."""
        data, x, a, base, key = consts
        chosen = jnp.zeros(a.size, bool).at[draw_subset(key, s, a.size, self.size)].set(s >= 0).reshape(a.shape)
        wide = chosen[..., None] if self.per_pixel else chosen
        return self.fn(*data, jnp.where(wide, base, x)), jnp.where(chosen, a, 0).sum()


def faithfulness_correlation(f: Callable, x: Any, a: Any, *, key: jax.Array, runs: int = 100, subset: int = 224,
                             baseline: Any = 0.0, chunk: int | str | None = None,
                             budget: float | None = None) -> jax.Array:
    """Faithfulness correlation (Bhatt et al. 2020; Quantus' ``FaithfulnessCorrelation``): over
    ``runs`` random subsets ``S_s`` of ``subset`` positions of ``a`` (:func:`draw_subset`; a
    spatial map's positions carry all their channels), the Pearson correlation of
    ``Σ_{S_s} a`` with ``f(x) − f(x[S_s ← baseline])``.  ``runs + 1`` forward passes."""
    who = "faithfulness_correlation"
    x, a = example_and_map(x, a, who)
    if isinstance(runs, bool) or not isinstance(runs, (int, np.integer)) or runs < 2:
        raise ValueError(f"{who}: runs must be an integer ≥ 2 (a correlation needs two points); found {runs!r}")
    if key is None:
        raise ValueError(f"{who}: a key is required (subset s is drawn from fold_in(key, s))")
    if isinstance(subset, bool) or not isinstance(subset, (int, np.integer)) or not 1 <= subset < a.size:
        raise ValueError(f"{who}: subset must be an integer in [1, {a.size}) (the map's positions); found {subset!r}")
    fn, data = split_fn(f)
    term = _Subsets(fn, a.shape != x.shape, int(subset))
    consts, xs = (data, x, a.astype(x.dtype), as_baseline(baseline, x, who=who), key), jnp.arange(-1, runs)
    scores, sums = chunked_map(term, consts, xs, chunk=pick_chunk(term, consts, xs, chunk, budget, who=who))
    return pearson(sums[1:], scores[0] - scores[1:])
