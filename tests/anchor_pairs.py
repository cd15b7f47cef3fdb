"""The model pairs the parity tests share: the same weights in jaxretina and in PyTorch.

* :func:`dense_pair`: a small torchvision DenseNet (random BatchNorm statistics, every ReLU an
  ``nn.ReLU`` module so hook libraries reach it) converted with ``converters.densenet``;
* :func:`driu_pair`: a full-width DRIU written as a ``.caffemodel`` and as the PyTorch
  ``DRIUModule`` of tests/reference;
* :func:`resnet_pair`: a torchvision ResNet-18 (random BatchNorm statistics, ReLUs not in
  place) converted with ``converters.resnet``.

Each returns ``(model, variables, torch module, x (H, W, C) float32, target)``.
"""

import numpy as np
import torch
import torchvision

from converters.caffe import read_caffemodel
from converters.densenet import from_state_dict
from converters.driu import from_caffe
from jaxretina import targets
from tests.reference.caffe_writer import driu_net_bytes
from tests.reference.densenet_torch import DenseNetModules, randomize
from tests.reference.driu_torch import DRIUModule, random_driu_weights

SMALL = dict(growth_rate=8, block_config=(2, 3), num_init_features=16, bn_size=2)
CLASS = 1


def dense_pair():
    tv = randomize(torchvision.models.DenseNet(num_classes=3, **SMALL), seed=0)
    model, variables, _ = from_state_dict({k: v.numpy() for k, v in tv.state_dict().items()}, "test", **SMALL)
    x = np.random.default_rng(1).normal(size=(45, 51, 3)).astype(np.float32)
    return model, variables, DenseNetModules(tv), x, targets.class_logit(CLASS)


def driu_pair():
    weights = random_driu_weights("vessel", seed=2)
    model, variables, _ = from_caffe(read_caffemodel(driu_net_bytes(weights)), "test")
    x = np.random.default_rng(3).normal(0, 0.5, size=(23, 29, 3)).astype(np.float32)   # odd sides, 4 poolings
    return model, variables, DRIUModule(weights).eval(), x, targets.segmentation_sum()


def torchvision_resnet(arch: str, classes: int, label: str):
    """``(jaxretina model, variables, torch module)``: torchvision's ``arch`` with random weights
    and BatchNorm statistics, its ReLUs not in place (hook libraries), converted with
    ``converters.resnet``."""
    from converters.resnet import from_state_dict as resnet_from_state_dict
    from tests.test_resnet_vgg import randomize_batch_norm

    torch.manual_seed(0)
    tv = randomize_batch_norm(getattr(torchvision.models, arch)(num_classes=classes), seed=1)
    for m in tv.modules():
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
    model, variables, _ = resnet_from_state_dict({k: v.numpy() for k, v in tv.state_dict().items()}, label)
    return model, variables, tv.eval()


def resnet_pair():
    model, variables, tv = torchvision_resnet("resnet18", 3, "test")
    x = np.random.default_rng(4).normal(size=(64, 72, 3)).astype(np.float32)
    return model, variables, tv, x, targets.class_logit(CLASS)


def nchw(x, dtype=torch.float64):
    """One (H, W, C) example as a (1, C, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(2, 0, 1)[None])).to(dtype)


def f64(variables, x):
    """Variables and input in float64 (under ``jax.enable_x64``)."""
    import jax
    import jax.numpy as jnp

    return jax.tree.map(lambda a: np.asarray(a, np.float64), variables), jnp.asarray(x, jnp.float64)
