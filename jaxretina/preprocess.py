"""Input preprocessing of the seed papers' networks, in jax.numpy (jittable, batched).

Example::

    >>> from skimage import data
    >>> x = driu_caffe_input(data.retina())        # (1411, 1411, 3) uint8 -> float32 BGR − mean
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["DRIU_CAFFE_MEAN_BGR", "driu_caffe_input", "resize_image"]

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
