"""Input preprocessing of the seed papers' networks, in jax.numpy (jittable, batched).

* :mod:`~jaxretina.preprocess.common` — DRIU's Caffe input, resizing, Gaussian blur, ImageNet
  normalisation;
* :mod:`~jaxretina.preprocess.seed000` — seed 000's DRIVE chain (green channel, blur, FOV mask,
  min–max inversion, illumination equalisation);
* :mod:`~jaxretina.preprocess.seed001` — seed 001's contrast-normalised retina on half-gray.

Example::

    >>> from skimage import data
    >>> x = driu_caffe_input(data.retina())        # uint8 RGB -> float32 BGR − mean
    >>> x.shape, x.dtype
    ((1411, 1411, 3), dtype('float32'))
    >>> y = seed001_input(data.retina())           # float32, half-gray = 128
    >>> y.shape
    (256, 256, 3)

Every function takes one image (H, W, C) or a batch (N, H, W, C) of equal-sized images and
is jittable; different image sizes compile once each.
"""

from jaxretina.preprocess.common import (
    DRIU_CAFFE_MEAN_BGR, driu_caffe_input, gaussian_blur, imagenet_normalization, imagenet_normalize, resize_image,
)
from jaxretina.preprocess.seed000 import (
    SEED000_EXPECTED_MEAN, SEED000_WINDOW, apply_fov_mask, box_mean, green_channel, illumination_equalize,
    minmax_invert, seed000_driu_input, seed000_input,
)
from jaxretina.preprocess.seed001 import HALF_GRAY, retina_extent, seed001_input

__all__ = [
    "DRIU_CAFFE_MEAN_BGR", "HALF_GRAY", "SEED000_EXPECTED_MEAN", "SEED000_WINDOW", "apply_fov_mask", "box_mean",
    "driu_caffe_input", "gaussian_blur", "green_channel", "illumination_equalize", "imagenet_normalization",
    "imagenet_normalize", "minmax_invert", "resize_image", "retina_extent", "seed000_driu_input", "seed000_input",
    "seed001_input",
]
