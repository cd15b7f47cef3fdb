"""Targets: reduce one example's model output to the scalar being explained.

A target is a :class:`Target` — a callable ``output -> scalar`` with a readable description.
Outputs are unbatched: a classifier gives logits ``(num_classes,)``; a 2D segmenter gives
``(H, W, C)`` and a 3D one ``(D, H, W, C)`` (channels last).  Several targets at once are a
``jax.vmap`` over the target index, e.g. ``jax.vmap(lambda c: class_probability(c)(out))``
for traced ``c``.

Segmentation targets turn logits into probabilities with ``probability=True``: a sigmoid
when the output has one channel (DRIU, DS6), a softmax over channels otherwise.

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

__all__ = [
    "Target",
    "class_logit",
    "class_probability",
    "segmentation_sum",
    "segmentation_mean",
    "pixel",
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
    cached = functools.lru_cache(maxsize=256, typed=True)(factory)

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
