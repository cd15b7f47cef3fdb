"""The same random networks and inputs for jaxretina and the PyTorch anchors, rebuilt
deterministically in every benchmark process.

* ``driu``: the vessel DRIU at full width with He-scaled random weights (tests/reference), as
  Flax variables (through a ``.caffemodel`` and the Caffe converter) and as
  ``DRIUModule`` (``torch.nn`` with Caffe names); input 256×256, N(0, 50²) like a
  mean-subtracted fundus; target Σ vessel probability.
* ``densenet121``: torchvision ``densenet121(num_classes=5)``, random weights and random
  BatchNorm statistics, every ReLU an ``nn.ReLU`` module and none in place (so Captum's rules and
  pytorch-grad-cam's hooks see every activation unmodified), converted with
  ``converters.densenet``; input 224×224 N(0, 1); target the logit of class 1.
* ``resnet50``: torchvision ``resnet50(num_classes=5)``, random weights and random BatchNorm
  statistics, every ReLU module out of place, converted with ``converters.resnet``; input
  224×224 N(0, 1); target the logit of class 1; Grad-CAM layers: the stem's ReLU, the max pool
  and the 16 blocks (jaxretina's spatial taps; pytorch-grad-cam hooks the same modules).
"""

from __future__ import annotations

import os
import sys
from typing import Any, NamedTuple

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

SIZES = {"driu": (256, 256), "densenet121": (224, 224), "resnet50": (224, 224)}
CLASS = 1


class Pair(NamedTuple):
    jax_model: Any
    variables: Any
    target: Any            # jaxretina target (one example's output -> scalar)
    torch_model: Any       # nn.Module, eval mode, float32
    torch_forward: Any     # batch -> (N,) scalar per example (Captum's forward_func)
    cam_target: Any        # pytorch-grad-cam target (one example's output -> scalar)
    x: np.ndarray          # (H, W, 3) float32
    layers: dict           # jaxretina layer name -> torch module (every spatial layer)


def _driu() -> Pair:
    import torch

    from converters.caffe import read_caffemodel
    from converters.driu import from_caffe
    from jaxretina import targets
    from tests.reference.caffe_writer import driu_net_bytes
    from tests.reference.driu_torch import DRIUModule, random_driu_weights

    weights = random_driu_weights("vessel", seed=0)
    model, variables, _ = from_caffe(read_caffemodel(driu_net_bytes(weights)), "benchmark")
    ref = DRIUModule(weights).eval()
    x = np.random.default_rng(0).normal(0, 50, SIZES["driu"] + (3,)).astype(np.float32)

    def forward(inp):
        return torch.sigmoid(ref(inp)).sum(dim=(1, 2, 3))

    layers = {name: ref.tap_module(name) for name in model.layer_names()}
    return Pair(model, variables, targets.segmentation_sum(), ref, forward,
                lambda out: torch.sigmoid(out).sum(), x, layers)


def _densenet121() -> Pair:
    import torch
    import torchvision
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from converters.densenet import from_state_dict
    from jaxretina import targets
    from tests.reference.densenet_torch import DenseNetModules, randomize

    torch.manual_seed(0)
    tv = randomize(torchvision.models.densenet121(num_classes=5), seed=1, mean_std=0.2, bias_std=0.1)
    model, variables, _ = from_state_dict({k: v.numpy() for k, v in tv.state_dict().items()}, "benchmark")
    ref = DenseNetModules(tv)
    x = np.random.default_rng(0).normal(0, 1, SIZES["densenet121"] + (3,)).astype(np.float32)
    modules = dict(ref.named_modules())
    spatial = [n for n in model.layer_names() if n != "classifier"]
    # relu5 is torchvision's functional ReLU after norm5: DenseNetModules' own `relu` module
    layers = {n: modules["relu" if n == "relu5" else f"features.{n}"] for n in spatial}
    return Pair(model, variables, targets.class_logit(CLASS), ref, lambda inp: ref(inp)[:, CLASS],
                ClassifierOutputTarget(CLASS), x, layers)


def _resnet50() -> Pair:
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from jaxretina import targets
    from tests.anchor_pairs import torchvision_resnet

    model, variables, tv = torchvision_resnet("resnet50", 5, "benchmark")
    x = np.random.default_rng(0).normal(0, 1, SIZES["resnet50"] + (3,)).astype(np.float32)
    modules = dict(tv.named_modules())
    layers = {n: modules[n] for n in model.layer_names() if n != "fc"}
    return Pair(model, variables, targets.class_logit(CLASS), tv, lambda inp: tv(inp)[:, CLASS],
                ClassifierOutputTarget(CLASS), x, layers)


MODELS = {"driu": _driu, "densenet121": _densenet121, "resnet50": _resnet50}


def build(name: str) -> Pair:
    """The model pair ``name`` (a key of :data:`MODELS`)."""
    return MODELS[name]()
