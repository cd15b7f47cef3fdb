"""Targets: reduce one example's model output to the scalar being explained.

A target is a :class:`Target` — a callable ``output -> scalar`` with a readable description.
Outputs are unbatched: a classifier gives logits ``(num_classes,)``; a 2D segmenter gives
``(H, W, C)`` and a 3D one ``(D, H, W, C)`` (channels last).  Several targets at once are a
``jax.vmap`` over the target index, e.g. ``jax.vmap(lambda c: class_probability(c)(out))``
for traced ``c``.

Segmentation targets turn logits into probabilities with ``probability=True``: a sigmoid
when the output has one channel (DRIU, DS6), a softmax over channels otherwise.

Seed 003's segmentation wrapper (argmax per voxel, then per class) comes in three forms,
which differ in the gradient they give:

* :func:`argmax_count` — the number of voxels of class ``c``: the seed's C-vector entry; zero
  gradient almost everywhere (for reporting, not for gradient methods);
* :func:`argmax_score` — class ``c``'s score summed over the voxels assigned to ``c``: the
  gradient of those voxels' scores (what gradient libraries compute for the seed's wrapper);
* :func:`soft_count` — ``Σ softmax(y / T)_c``: a smooth count, gradient at every voxel.

:func:`class_vector` stacks one of them over classes (the seed's ``C × 1`` vector).

Example::

    >>> import jax.numpy as jnp
    >>> from jaxretina import targets
    >>> out = jnp.zeros((4, 5, 1))                     # one DRIU output, logits
    >>> float(targets.segmentation_sum()(out))         # sigmoid(0) = 0.5 at 20 pixels
    10.0
"""

from __future__ import annotations

import functools

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxretina import caches

__all__ = [
    "Target",
    "class_logit",
    "class_probability",
    "top_class",
    "segmentation_sum",
    "segmentation_mean",
    "pixel",
    "argmax_score",
    "argmax_count",
    "soft_count",
    "class_vector",
]


class Target(NamedTuple):
    """A scalar reduction of one example's model output.  Hashable, so it can be a static
    argument of a jitted explainer: build it once and reuse it to avoid retracing."""

    fn: Callable[[jax.Array], jax.Array]
    description: str

    def __call__(self, output: jax.Array) -> jax.Array:
        return self.fn(output)

    def __repr__(self) -> str:
        return f"Target({self.description})"


def _check_class_output(out: jax.Array, c: Any, what: str) -> None:
    if out.ndim != 1:
        raise ValueError(
            f"{what}: expected one example's class logits of shape (num_classes,); found shape "
            f"{out.shape} (a batch goes through jax.vmap; segmentation outputs need "
            f"segmentation_sum / segmentation_mean / pixel)"
        )
    if isinstance(c, int) and not -out.shape[0] <= c < out.shape[0]:
        raise ValueError(f"{what}: class {c} out of range for {out.shape[0]} classes")


def _reused(factory):
    """Return the same Target for the same (hashable) arguments: explainers compile once per
    target object, so ``targets.class_logit(4)`` written inline in a loop must not recompile."""
    cached = caches.memoize(maxsize=256, typed=True)(factory)

    @functools.wraps(factory)
    def wrapper(*args, **kwargs):
        try:
            hash((args, tuple(sorted(kwargs.items()))))
        except TypeError:  # an array mask: a new target each call (build it once and reuse it)
            return factory(*args, **kwargs)
        return cached(*args, **kwargs)

    return wrapper


@_reused
def class_logit(c: int) -> Target:
    """``out[c]`` of one example's logits (num_classes,)."""

    def fn(out):
        _check_class_output(out, c, "class_logit")
        return out[c]

    return Target(fn, f"class_logit(c={c})")


@_reused
def class_probability(c: int) -> Target:
    """``softmax(out)[c]`` of one example's logits (num_classes,)."""

    def fn(out):
        _check_class_output(out, c, "class_probability")
        return jax.nn.softmax(out)[c]

    return Target(fn, f"class_probability(c={c})")


@_reused
def top_class(probability: bool = False) -> Target:
    """The largest logit (``probability=True``: the largest softmax probability) of one example:
    the score of the class the model predicts, whatever it is.  Its gradient is that class's
    (``max`` passes the gradient to its argmax), so a sweep over images of unknown grade
    explains each image's own prediction.
    """

    def fn(out):
        _check_class_output(out, None, "top_class")
        return (jax.nn.softmax(out) if probability else out).max()

    return Target(fn, f"top_class(probability={probability})")


def _segmentation_map(out: jax.Array, channel: int, probability: bool, what: str) -> jax.Array:
    if out.ndim not in (3, 4):
        raise ValueError(
            f"{what}: expected one example's segmentation output (H, W, C) or (D, H, W, C); "
            f"found shape {out.shape} (a batch goes through jax.vmap)"
        )
    n = out.shape[-1]
    if not -n <= channel < n:
        raise ValueError(f"{what}: channel {channel} out of range for an output with {n} channel(s)")
    if probability:
        out = jax.nn.sigmoid(out) if n == 1 else jax.nn.softmax(out, axis=-1)
    return out[..., channel]


def _check_mask(mask: Any, shape: tuple[int, ...], what: str) -> jax.Array:
    mask = jnp.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"{what}: mask must have the spatial shape {shape}; found {mask.shape}")
    return mask


@_reused
def segmentation_sum(channel: int = 0, mask: Any = None, probability: bool = True) -> Target:
    """``Σ_p m_p · y_p`` over pixels (voxels) ``p`` of channel ``channel``.

    ``y`` is the probability (``probability=True``) or the logit; ``m`` the optional mask of the
    spatial shape (bool or weights; ``None`` = every pixel).  Seed 000's target for DRIU.
    """
    desc = f"segmentation_sum(channel={channel}, mask={'yes' if mask is not None else 'no'}, probability={probability})"

    def fn(out):
        y = _segmentation_map(out, channel, probability, "segmentation_sum")
        if mask is None:
            return y.sum()
        m = _check_mask(mask, y.shape, "segmentation_sum")
        return jnp.where(m, y, 0).sum() if m.dtype == jnp.bool_ else (y * m.astype(y.dtype)).sum()

    return Target(fn, desc)


@_reused
def segmentation_mean(channel: int = 0, mask: Any = None, probability: bool = True) -> Target:
    """Mean of channel ``channel`` over the pixels in ``mask`` (all pixels if ``None``).

    With a weight mask: ``Σ m·y / Σ m``.  An all-zero mask gives NaN (there is nothing to average).
    """
    desc = f"segmentation_mean(channel={channel}, mask={'yes' if mask is not None else 'no'}, probability={probability})"

    def fn(out):
        y = _segmentation_map(out, channel, probability, "segmentation_mean")
        if mask is None:
            return y.mean()
        m = _check_mask(mask, y.shape, "segmentation_mean").astype(y.dtype)
        return (y * m).sum() / m.sum()

    return Target(fn, desc)


@_reused
def pixel(i: int, j: int, channel: int = 0, probability: bool = True) -> Target:
    """The output at pixel ``(i, j)`` of channel ``channel`` (probability or logit)."""

    def fn(out):
        y = _segmentation_map(out, channel, probability, "pixel")
        if y.ndim != 2:
            raise ValueError(f"pixel: expected a 2D output map; found spatial shape {y.shape}")
        if not (0 <= i < y.shape[0] and 0 <= j < y.shape[1]):
            raise ValueError(f"pixel: ({i}, {j}) outside the {y.shape[0]}x{y.shape[1]} output")
        return y[i, j]

    return Target(fn, f"pixel(i={i}, j={j}, channel={channel}, probability={probability})")


def _class_scores(out: jax.Array, probability: bool, what: str) -> jax.Array:
    """Per-voxel class scores ``(..., K)``: a one-channel output is two classes (background,
    foreground) with logits ``(0, z)`` — probabilities ``(1 − σ(z), σ(z))`` —, K > 1 channels
    are K classes (softmax)."""
    if out.ndim not in (3, 4):
        raise ValueError(
            f"{what}: expected one example's segmentation output (H, W, C) or (D, H, W, C); "
            f"found shape {out.shape} (a batch goes through jax.vmap)"
        )
    if out.shape[-1] == 1:
        out = jnp.concatenate([jnp.zeros_like(out), out], axis=-1)
    return jax.nn.softmax(out, axis=-1) if probability else out


def _check_class(c: int, k: int, what: str) -> None:
    if not -k <= c < k:
        raise ValueError(f"{what}: class {c} out of range for {k} classes (a one-channel output has 2: "
                         "background 0 and foreground 1)")


@_reused
def argmax_score(c: int = 1, probability: bool = True) -> Target:
    """Seed 003's segmentation wrapper, differentiable form: ``Σ_p [argmax_k y_p,k = c] · y_p,c``.

    Every voxel is assigned its argmax class; the target sums class ``c``'s score over the
    voxels assigned to ``c`` (Captum's segmentation recipe; ``y`` = probabilities or, with
    ``probability=False``, logits).  Its gradient is the gradient of ``y_p,c`` summed over
    those voxels only: the assignment is piecewise constant, so it contributes nothing where
    it is differentiable, and voxels of other classes pass no gradient.  A one-channel output
    (DS6, DRIU) is two classes: 0 background (``σ(z) ≤ 0.5``), 1 vessel.
    """

    def fn(out):
        y = _class_scores(out, probability, "argmax_score")
        _check_class(c, y.shape[-1], "argmax_score")
        chosen = jnp.argmax(y, axis=-1) == (c % y.shape[-1])
        return jnp.where(chosen, y[..., c], 0).sum()

    return Target(fn, f"argmax_score(c={c}, probability={probability})")


@_reused
def argmax_count(c: int = 1) -> Target:
    """Seed 003's wrapper as a count: the number of voxels whose argmax class is ``c``.

    Piecewise constant in the input: its gradient is zero almost everywhere (gradient methods
    return zeros; IG's completeness then fails by the count's change).  Use it to *report* the
    quantity the seed's C-vector holds; explain :func:`argmax_score` (the same assignment, a
    usable gradient) or :func:`soft_count` (the count made smooth).
    """

    def fn(out):
        y = _class_scores(out, False, "argmax_count")
        _check_class(c, y.shape[-1], "argmax_count")
        return (jnp.argmax(y, axis=-1) == (c % y.shape[-1])).sum().astype(out.dtype)

    return Target(fn, f"argmax_count(c={c})")


@_reused
def soft_count(c: int = 1, temperature: float = 1.0) -> Target:
    """Differentiable count of class ``c``: ``Σ_p softmax(y_p / T)_c`` over logits ``y``.

    At ``T = 1`` this is the expected number of voxels of class ``c`` (the sum of its
    probabilities; for one channel ``Σ σ(z)``, :func:`segmentation_sum`); as ``T → 0`` it tends
    to :func:`argmax_count`.  Its gradient is nonzero at every voxel, largest where the class
    is uncertain (``σ'`` peaks at the decision boundary).
    """
    if not (isinstance(temperature, (int, float)) and temperature > 0):
        raise ValueError(f"soft_count: temperature must be a positive number; found {temperature!r}")

    def fn(out):
        logits = _class_scores(out, False, "soft_count")
        _check_class(c, logits.shape[-1], "soft_count")
        return jax.nn.softmax(logits / temperature, axis=-1)[..., c].sum()

    return Target(fn, f"soft_count(c={c}, temperature={temperature})")


class _ClassVector(NamedTuple):
    factory: Callable[[int], Target]
    classes: tuple[int, ...]

    def __call__(self, out):
        return jnp.stack([self.factory(c)(out) for c in self.classes])


def class_vector(factory: Callable[[int], Target], classes: Any) -> Callable[[jax.Array], jax.Array]:
    """Seed 003's C-vector: ``out -> (t_c(out))_c`` for ``t_c = factory(c)``, shape ``(len(classes),)``.

    For :func:`jaxretina.explain.integrated_gradients_vector` (every class's map in one program)
    or for reporting.  Hashable: build it once and reuse it.

    Example::

      >>> counts = targets.class_vector(targets.argmax_count, (0, 1))
      >>> out = jnp.zeros((4, 4, 4, 2)).at[..., 1].set(1.0)   # a two-class 3-D output: all vessel
      >>> counts(out)                                   # (2,): background and vessel voxels
      Array([ 0., 64.], dtype=float32)
    """
    return _ClassVector(factory, tuple(int(c) for c in classes))
