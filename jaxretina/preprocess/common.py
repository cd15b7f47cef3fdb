"""Preprocessing shared by the seed pipelines: DRIU's Caffe input, resizing, a separable
Gaussian blur and ImageNet normalisation, in jax.numpy (jittable, batched).

Example::

    >>> from skimage import data
    >>> x = driu_caffe_input(data.retina())        # uint8 RGB -> float32 BGR − mean
    >>> x.shape, x.dtype
    ((1411, 1411, 3), dtype('float32'))
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

__all__ = [
    "DRIU_CAFFE_MEAN_BGR", "driu_caffe_input", "resize_image", "gaussian_blur", "imagenet_normalization",
    "imagenet_normalize",
    "check_rgb",
]

# The constants of DRIU's official test script, subtracted from the B, G, R channels in that
# order *after* the RGB -> BGR flip (they look like an RGB mean applied in BGR order; the
# published weights were trained with exactly this).
DRIU_CAFFE_MEAN_BGR = (171.0773, 98.4333, 58.8811)


def check_rgb(image: Any, who: str) -> jax.Array:
    image = jnp.asarray(image)
    if image.ndim not in (3, 4) or image.shape[-1] != 3:
        hint = ""
        if image.ndim in (3, 4) and image.shape[-3] == 3:
            hint = " — this looks channels-first; pass (H, W, 3)"
        raise ValueError(
            f"{who}: expected an RGB image (H, W, 3) or a batch (N, H, W, 3); "
            f"found shape {image.shape}{hint}"
        )
    if not (image.dtype == jnp.uint8 or jnp.issubdtype(image.dtype, jnp.floating)):
        raise TypeError(
            f"{who}: expected uint8 pixels (or floats on the 0..255 scale); found dtype {image.dtype}"
        )
    return image


def driu_caffe_input(rgb: Any, *, dtype: Any = jnp.float32) -> jax.Array:
    """DRIU's official test-script preprocessing: float RGB 0..255 -> BGR -> minus the mean.

    Args:
      rgb: (H, W, 3) or (N, H, W, 3), uint8 or float on the 0..255 scale (not [0, 1]), RGB.
      dtype: output float dtype.

    Returns:
      Same shape, channels B, G, R minus :data:`DRIU_CAFFE_MEAN_BGR` — the model's input
      (channels-last; the Caffe script then transposes to CHW, which NHWC does not need).
    """
    image = check_rgb(rgb, "driu_caffe_input").astype(dtype)
    bgr = image[..., ::-1]
    return bgr - jnp.asarray(DRIU_CAFFE_MEAN_BGR, dtype)


def resize_image(image: Any, height: int, width: int) -> jax.Array:
    """Antialiased bilinear resize of (H, W, C) or (N, H, W, C) images; keeps the dtype's scale.

    uint8 input is rounded back to uint8.
    """
    image = jnp.asarray(image)
    if image.ndim not in (3, 4):
        raise ValueError(f"resize_image: expected (H, W, C) or (N, H, W, C); found shape {image.shape}")
    shape = (*image.shape[:-3], height, width, image.shape[-1])
    out = jax.image.resize(image.astype(jnp.float32), shape, method="linear", antialias=True)
    if image.dtype == jnp.uint8:
        return jnp.clip(jnp.round(out), 0, 255).astype(jnp.uint8)
    return out.astype(image.dtype)


def _gaussian_kernel(sigma: float, radius: int) -> jax.Array:
    t = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    k = jnp.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(image: Any, sigma: float, *, truncate: float = 4.0) -> jax.Array:
    """Separable Gaussian blur of (H, W, C) or (N, H, W, C) float images, mirrored borders.

    ``out = G_σ ⋆ image`` along H then W, the kernel truncated at ``truncate·σ`` and
    normalised to sum 1; borders reflect without repeating the edge pixel (SciPy's
    ``mode="mirror"``, OpenCV's ``BORDER_REFLECT_101``).  ``sigma`` is static (a Python float):
    one compiled program per (shape, dtype, sigma), also when called outside ``jit``.

    Example::

        >>> smooth = gaussian_blur(jnp.asarray(rgb, jnp.float32), sigma=4.0)
        >>> smooth.shape == rgb.shape
        True
    """
    image = jnp.asarray(image)
    if image.ndim not in (3, 4):
        raise ValueError(f"gaussian_blur: expected (H, W, C) or (N, H, W, C); found shape {image.shape}")
    if not jnp.issubdtype(image.dtype, jnp.floating):
        raise TypeError(f"gaussian_blur: expected a float image; found dtype {image.dtype}")
    if not sigma > 0:
        raise ValueError(f"gaussian_blur: sigma must be positive; found {sigma!r}")
    return _blur(image, float(sigma), float(truncate))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _blur(image: jax.Array, sigma: float, truncate: float) -> jax.Array:
    out = image
    for axis in (-3, -2):
        n = image.shape[axis]
        radius = min(int(truncate * sigma + 0.5), n - 1)
        if radius < 1:
            continue
        kernel = _gaussian_kernel(float(sigma), radius).astype(image.dtype)
        pad = [(0, 0)] * image.ndim
        pad[axis] = (radius, radius)
        padded = jnp.pad(out, pad, mode="reflect")
        # Σ_t k_t · shifted copies: 2r+1 fused multiply-adds, no convolution layout shuffles.
        acc = jnp.zeros_like(out)
        for t in range(2 * radius + 1):
            acc = acc + kernel[t] * jax.lax.slice_in_dim(padded, t, t + n, axis=axis % image.ndim)
        out = acc
    return out


def imagenet_normalization(scale: float = 255.0) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """torchvision's ImageNet ``(mean, std)`` for RGB on ``[0, scale]`` (seed 002's inputs).

    Pass it as a model's ``normalization`` (then the model explains 0..255 pixels directly) or
    use :func:`imagenet_normalize`.
    """
    from jaxretina.models.layers import IMAGENET_NORMALIZATION

    mean, std = IMAGENET_NORMALIZATION
    return tuple(m * scale for m in mean), tuple(s * scale for s in std)


def imagenet_normalize(rgb: Any, *, scale: float = 255.0) -> jax.Array:
    """``(x − mean) / std`` per RGB channel with ImageNet's statistics on ``[0, scale]``."""
    image = check_rgb(rgb, "imagenet_normalize").astype(jnp.float32)
    mean, std = (jnp.asarray(v, image.dtype) for v in imagenet_normalization(scale))
    return (image - mean) / std
