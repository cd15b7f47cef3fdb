"""The networks jaxretina explains, as Flax linen modules (channels-last), the contract they
meet (:mod:`~jaxretina.models.spec`) and the registry of named models
(:mod:`~jaxretina.models.registry`)."""

from jaxretina.models import spec
from jaxretina.models.densenet import DenseNet, DenseNet121
from jaxretina.models.explainable import Explainable, explainable
from jaxretina.models.driu import DEEPDRAW_OPTIONS, DRIU, HED_CROP_OFFSETS, IMAGENET_NORMALIZATION
from jaxretina.models.inception import InceptionV3
from jaxretina.models.keras_model import KerasModel, from_keras
from jaxretina.models.random_init import random_variables
from jaxretina.models.resnet import ResNet, ResNet18, ResNet34, ResNet50, ResNet101, ResNet152
from jaxretina.models.tap_points import TapPoints
from jaxretina.models.unet3d import UNet3D
from jaxretina.models.vgg import VGG, VGG11, VGG13, VGG16, VGG19
from jaxretina.models import registry  # noqa: E402 - registers the models above
from jaxretina.models.registry import ModelSpec, register

__all__ = ["DRIU", "DenseNet", "DenseNet121", "InceptionV3", "ResNet", "ResNet18", "ResNet34", "ResNet50", "ResNet101",
           "ResNet152", "UNet3D", "VGG", "VGG11", "VGG13", "VGG16", "VGG19", "DEEPDRAW_OPTIONS", "HED_CROP_OFFSETS",
           "IMAGENET_NORMALIZATION", "Explainable", "explainable", "KerasModel", "from_keras", "ModelSpec", "TapPoints", "random_variables", "register", "registry", "spec"]
