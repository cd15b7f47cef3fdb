"""ResNet weights: torchvision state dicts and Keras applications' HDF5 files.

torchvision keys (after :func:`converters.torch.unwrap` removed wrappers and ``module.``) are
the module paths (``conv1.weight``, ``layer3.22.bn2.running_var``, ``layer2.0.downsample.0.weight``,
``fc.weight``).  ``depth`` (blocks per stage, and Bottleneck or BasicBlock from ``conv3``),
``num_classes`` and ``in_channels`` are read from the keys unless given.

Keras files (:mod:`converters.keras`) name layers ``conv1_conv``, ``conv2_block1_1_conv``,
``conv2_block1_0_bn`` …, ``predictions``; such weights set :data:`~jaxretina.models.resnet.KERAS_OPTIONS`
(stride in the first 1×1 conv, biases, BatchNorm ε 1.001e-5) and Keras's "caffe" input (BGR
minus the ImageNet mean: the model then takes 0..255 RGB pixels).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from converters.mapping import Report, torch_or_keras, torch_variables, widths_from_keys
from jaxretina.models.resnet import KERAS_OPTIONS, STAGES, ResNet, ResNet18, ResNet34, ResNet50, ResNet101, ResNet152
from jaxretina.models.vgg import KERAS_CAFFE_NORMALIZATION

__all__ = ["from_weights", "from_state_dict", "is_resnet", "reference", "CLASSES", "KERAS_INPUT"]

KERAS_INPUT = {**KERAS_OPTIONS, "normalization": KERAS_CAFFE_NORMALIZATION, "input_bgr": True}
CLASSES = {18: ResNet18, 34: ResNet34, 50: ResNet50, 101: ResNet101, 152: ResNet152}
_BLOCK = re.compile(r"^layer([1-4])\.(\d+)\.")


def is_resnet(state: Mapping[str, Any]) -> bool:
    """Whether a state dict has torchvision ResNet keys."""
    return "conv1.weight" in state and any(k.startswith("layer4.") for k in state)


def depth_of(state: Mapping[str, Any]) -> int | None:
    """The depth whose stage layout the keys show, or ``None``."""
    counts = [0, 0, 0, 0]
    for key in state:
        m = _BLOCK.match(key)
        if m:
            stage, block = int(m.group(1)), int(m.group(2))
            counts[stage - 1] = max(counts[stage - 1], block + 1)
    bottleneck = "layer1.0.conv3.weight" in state
    for depth, layout in STAGES.items():
        if layout == (bottleneck, tuple(counts)):
            return depth
    return None


def build(depth: int | None, source: str, options: dict) -> ResNet:
    """The ResNet class of ``depth`` (``ResNet50`` …) with ``options``; a ``ValueError`` for an
    unknown stage layout."""
    if depth is None:
        raise ValueError(f"{source}: the blocks per stage match no ResNet depth {sorted(STAGES)}")
    asked = options.pop("depth", depth)
    if asked != depth:
        raise ValueError(f"{source}: holds a ResNet-{depth}; asked for depth {asked}")
    return CLASSES[depth](**options)


def from_state_dict(state: Mapping[str, np.ndarray], source: str, **options: Any) -> tuple[ResNet, dict, Report]:
    """``(model, variables, report)`` from a torchvision ResNet state dict."""
    options.setdefault("include_top", "fc.weight" in state)
    widths_from_keys(state, options, top="fc.weight", first="conv1.weight")
    model = build(depth_of(state), source, options)
    report = Report(source_format="PyTorch ResNet state dict, torchvision keys", config=dict(options))
    return model, torch_variables(model, state, report, source), report


def reference(model: ResNet, state: Mapping[str, np.ndarray]):
    """``(torchvision ResNet, its state dict, input side)``: the parity reference of ``jaxretina convert``."""
    if model.stride_in_1x1 or model.conv_bias or model.input_bgr or model.normalization is not None \
            or not model.include_top:
        return "Keras-variant or classifier-less weights have no torchvision model counterpart"
    import torchvision

    return getattr(torchvision.models, f"resnet{model.depth}")(weights=None, num_classes=model.num_classes), state, 224


def from_weights(kind: str, content: Any, source: str, **options: Any) -> tuple[ResNet, dict, Report]:
    """Dispatch for :func:`jaxretina.load`: a torchvision state dict or a Keras HDF5 file."""
    return torch_or_keras(kind, content, source, options, from_state_dict=from_state_dict,
                          keras_mapping="resnet_from_keras", model="resnet", recognised=is_resnet, keys="ResNet",
                          example="conv1.weight, layer1.0.conv1.weight ...")

