"""The networks jaxretina explains, as Flax linen modules (channels-last)."""

from jaxretina.models.densenet import DenseNet, DenseNet121
from jaxretina.models.driu import DEEPDRAW_OPTIONS, DRIU, HED_CROP_OFFSETS, IMAGENET_NORMALIZATION
from jaxretina.models.inception import InceptionV3
from jaxretina.models.random_init import random_variables
from jaxretina.models.unet3d import UNet3D

__all__ = ["DRIU", "DenseNet", "DenseNet121", "InceptionV3", "UNet3D", "DEEPDRAW_OPTIONS", "HED_CROP_OFFSETS",
           "IMAGENET_NORMALIZATION", "random_variables"]
