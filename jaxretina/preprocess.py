"""Input preprocessing of the seed papers' networks, in jax.numpy (jittable, batched).

Example::

    >>> from skimage import data
    >>> x = driu_caffe_input(data.retina())        # (1411, 1411, 3) uint8 -> float32 BGR − mean
    >>> y = seed001_input(data.retina())           # (256, 256, 3) float32, half-gray = 128

Every function takes one image (H, W, 3) or a batch (N, H, W, 3) of equal-sized images and
is jittable; different image sizes compile once each.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

__all__ = [
    "DRIU_CAFFE_MEAN_BGR", "HALF_GRAY", "driu_caffe_input", "resize_image", "gaussian_blur",
    "retina_extent", "seed001_input", "imagenet_normalization", "imagenet_normalize",
]

# The constants of DRIU's official test script, subtracted from the B, G, R channels in that
# order *after* the RGB -> BGR flip (they look like an RGB mean applied in BGR order; the
# published weights were trained with exactly this).
DRIU_CAFFE_MEAN_BGR = (171.0773, 98.4333, 58.8811)


def _check_rgb(image: Any, who: str) -> jax.Array:
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
    image = _check_rgb(rgb, "driu_caffe_input").astype(dtype)
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


# ---------------------------------------------------------------------------------------------
# Seed 001 (Li et al., Inception V3 DR grader): contrast-normalised retina on a half-gray field.

HALF_GRAY = 128.0  # the seed's "half-gray" on the 0..255 scale: its baseline and fill colour


def _gaussian_kernel(sigma: float, radius: int) -> jax.Array:
    t = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    k = jnp.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(image: Any, sigma: float, *, truncate: float = 4.0) -> jax.Array:
    """Separable Gaussian blur of (H, W, C) or (N, H, W, C) float images, mirrored borders.

    ``out = G_σ ⋆ image`` along H then W, the kernel truncated at ``truncate·σ`` and
    normalised to sum 1; borders reflect without repeating the edge pixel (SciPy's
    ``mode="mirror"``, OpenCV's ``BORDER_REFLECT_101``).  ``sigma`` is static (a Python float).

    Example::

        >>> smooth = gaussian_blur(jnp.asarray(img, jnp.float32), sigma=4.0)
    """
    image = jnp.asarray(image)
    if image.ndim not in (3, 4):
        raise ValueError(f"gaussian_blur: expected (H, W, C) or (N, H, W, C); found shape {image.shape}")
    if not jnp.issubdtype(image.dtype, jnp.floating):
        raise TypeError(f"gaussian_blur: expected a float image; found dtype {image.dtype}")
    if not sigma > 0:
        raise ValueError(f"gaussian_blur: sigma must be positive; found {sigma!r}")
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


def retina_extent(image: Any, *, threshold: float = 10.0) -> tuple[jax.Array, jax.Array]:
    """``(diameter, centre_column)`` of the retina from the middle row's non-black pixels.

    A pixel is non-black when its channel mean exceeds ``threshold`` (0..255 scale).  The
    diameter is their count (seed 001, step 1); the centre is the midpoint of the first and last
    of them.  Shapes: ``()`` each for one image, ``(N,)`` for a batch.
    """
    image = _check_rgb(image, "retina_extent")
    row = image[..., image.shape[-3] // 2, :, :].astype(jnp.float32).mean(-1)   # (..., W)
    bright = row > threshold
    count = bright.sum(-1)
    cols = jnp.arange(row.shape[-1], dtype=jnp.float32)
    first = jnp.where(bright, cols, jnp.float32(row.shape[-1])).min(-1)
    last = jnp.where(bright, cols, jnp.float32(-1)).max(-1)
    centre = jnp.where(count > 0, (first + last) / 2, jnp.float32((row.shape[-1] - 1) / 2))
    return count, centre


def seed001_input(
    rgb: Any,
    *,
    size: int = 256,
    noise_sigma: float = 0.5,
    background_sigma: float | None = None,
    contrast: float = 4.0,
    crop: float = 0.1,
    threshold: float = 10.0,
    gray: float = HALF_GRAY,
) -> jax.Array:
    """Seed 001's fundus preprocessing, on the 0..255 scale with half-gray ``gray`` as neutral.

    1. retina diameter ``d`` and centre from the middle row (:func:`retina_extent`);
    2. a light Gaussian blur against sensor noise (``noise_sigma``, output pixels; done after
       the rescale, which itself low-passes with an antialiasing filter);
    3. rescale so the retina's diameter spans ``size`` pixels, centred (``d`` is traced, so one
       compiled program serves every retina size of one image shape);
    4. subtract a heavily blurred copy: ``gray + contrast · (I − G_σ ⋆ I)`` with
       ``σ = background_sigma`` (default radius/30, the Kaggle-2015 winner's choice that this
       pipeline follows);
    5. keep the disc of radius ``(1 − crop) · size/2``; outside it, ``gray``.

    The seed gives the steps, not the constants; ``contrast``, ``noise_sigma`` and the blur
    radius are the usual ones for this pipeline and are parameters.

    Args:
      rgb: (H, W, 3) or (N, H, W, 3) uint8 or float on 0..255 (equal sizes within a batch).
    Returns:
      float32 ``(…, size, size, 3)`` clipped to [0, 255].

    Example::

        >>> x = seed001_input(skimage.data.retina())       # (256, 256, 3)
    """
    image = _check_rgb(rgb, "seed001_input").astype(jnp.float32)
    if not 0 <= crop < 1:
        raise ValueError(f"seed001_input: crop must be in [0, 1); found {crop!r}")
    if image.ndim == 4:
        one = lambda im: seed001_input(im, size=size, noise_sigma=noise_sigma,  # noqa: E731
                                       background_sigma=background_sigma, contrast=contrast,
                                       crop=crop, threshold=threshold, gray=gray)
        return jax.vmap(one)(image)
    diameter, centre_col = retina_extent(image, threshold=threshold)
    diameter = jnp.maximum(diameter, 1).astype(jnp.float32)
    scale = size / diameter
    centre_row = (image.shape[0] - 1) / 2.0
    # output pixel p samples input ((p + ½) − t)/s − ½; put the retina centre at the output centre.
    translation = jnp.stack([size / 2.0 - (centre_row + 0.5) * scale,
                             size / 2.0 - (centre_col + 0.5) * scale])
    scaled = jax.image.scale_and_translate(
        image, (size, size, 3), (0, 1), jnp.stack([scale, scale]), translation,
        method="linear", antialias=True,
    )
    if noise_sigma:
        scaled = gaussian_blur(scaled, noise_sigma)
    sigma = background_sigma if background_sigma is not None else size / 2.0 / 30.0
    out = gray + contrast * (scaled - gaussian_blur(scaled, sigma))
    r = (jnp.arange(size, dtype=jnp.float32) + 0.5) - size / 2.0
    inside = (r[:, None] ** 2 + r[None, :] ** 2) <= ((1.0 - crop) * size / 2.0) ** 2
    return jnp.clip(jnp.where(inside[..., None], out, gray), 0.0, 255.0)


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
    image = _check_rgb(rgb, "imagenet_normalize").astype(jnp.float32)
    mean, std = (jnp.asarray(v, image.dtype) for v in imagenet_normalization(scale))
    return (image - mean) / std
