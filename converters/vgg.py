"""VGG weights: torchvision state dicts and Keras applications' HDF5 files.

torchvision keys are ``features.N.weight`` / ``.bias`` (and ``running_mean`` … for
``vgg*_bn``) and ``classifier.{0,3,6}``; ``depth``, ``batch_norm``, ``num_classes`` and
``in_channels`` are read from them unless given.  torchvision flattens the 7×7×512 map
channels-first before ``classifier.0``; jaxretina's VGG flattens channels-last (as Keras does),
so ``classifier.0``'s input rows are permuted (the report notes it): the same weights give the
same function.

Keras files (:mod:`converters.keras`) name layers ``block1_conv1`` … ``fc1``, ``fc2``,
``predictions``; such weights set Keras's "caffe" input (BGR minus the ImageNet mean: the model
then takes 0..255 RGB pixels).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np

from converters.mapping import Report, torch_or_keras, torch_variables, widths_from_keys
from jaxretina.models.vgg import CONFIGS, KERAS_CAFFE_NORMALIZATION, VGG, VGG11, VGG13, VGG16, VGG19

__all__ = ["from_weights", "from_state_dict", "is_vgg", "reference", "CLASSES", "KERAS_INPUT"]

CLASSES = {11: VGG11, 13: VGG13, 16: VGG16, 19: VGG19}
KERAS_INPUT = {"normalization": KERAS_CAFFE_NORMALIZATION, "input_bgr": True}
_FEATURE = re.compile(r"^features\.(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$")


def is_vgg(state: Mapping[str, Any]) -> bool:
    """Whether a state dict has torchvision VGG keys."""
    return "features.0.weight" in state


def _layout_of(state: Mapping[str, Any]) -> tuple[int | None, bool]:
    convs = sorted(int(m.group(1)) for k in state if (m := _FEATURE.match(k)) and m.group(2) == "weight"
                   and np.ndim(state[k]) == 4)
    batch_norm = any(k.endswith(".running_mean") and k.startswith("features.") for k in state)
    for depth, cfg in CONFIGS.items():
        if sum(v != "M" for v in cfg) == len(convs):
            return depth, batch_norm
    return None, batch_norm


def build(depth: int | None, batch_norm: bool, source: str, options: dict) -> VGG:
    """The VGG class of ``depth`` with ``options``; ``ValueError`` when the file disagrees with them."""
    if depth is None:
        raise ValueError(f"{source}: the number of convolutions matches no VGG depth {sorted(CONFIGS)}")
    for option, found in (("depth", depth), ("batch_norm", batch_norm)):
        asked = options.pop(option, found)
        if asked != found:
            raise ValueError(f"{source}: holds a VGG with {option}={found}; asked for {option}={asked}")
    return CLASSES[depth](batch_norm=batch_norm, **options)


def channels_first_rows(w: np.ndarray, channels: int = 512, side: int = 7) -> np.ndarray:
    """A linear weight ``(out, C·H·W)`` reading a channels-first flatten, re-ordered to read the
    channels-last flatten ``(out, H·W·C)`` of the same map."""
    out = w.shape[0]
    if w.ndim != 2 or w.shape[1] != channels * side * side:
        return w   # the shape check of the mapping reports it
    return w.reshape(out, channels, side, side).transpose(0, 2, 3, 1).reshape(out, -1)


def from_state_dict(state: Mapping[str, np.ndarray], source: str, **options: Any) -> tuple[VGG, dict, Report]:
    """``(model, variables, report)`` from a torchvision VGG state dict."""
    depth, batch_norm = _layout_of(state)
    options.setdefault("include_top", "classifier.6.weight" in state)   # torchvision's `features` alone
    widths_from_keys(state, options, top="classifier.6.weight", first="features.0.weight")
    if "hidden" not in options and np.ndim(state.get("classifier.0.weight")) == 2:
        options["hidden"] = int(np.shape(state["classifier.0.weight"])[0])
    model = build(depth, batch_norm, source, options)
    state = dict(state)
    if "classifier.0.weight" in state:
        state["classifier.0.weight"] = channels_first_rows(np.asarray(state["classifier.0.weight"]))
    report = Report(source_format="PyTorch VGG state dict, torchvision keys", config=dict(options))
    report.notes["classifier.0"] = "input rows permuted from torchvision's channels-first flatten to channels-last"
    return model, torch_variables(model, state, report, source), report


def reference(model: VGG, state: Mapping[str, np.ndarray]):
    """``(torchvision VGG, its state dict, input side)``: the parity reference of ``jaxretina convert``."""
    if model.input_bgr or model.normalization is not None or not model.include_top:
        return "Keras-variant or classifier-less weights have no torchvision model counterpart"
    import torchvision

    name = f"vgg{model.depth}{'_bn' if model.batch_norm else ''}"
    return getattr(torchvision.models, name)(weights=None, num_classes=model.num_classes), state, 224


def from_weights(kind: str, content: Any, source: str, **options: Any) -> tuple[VGG, dict, Report]:
    """Dispatch for :func:`jaxretina.load`: a torchvision state dict or a Keras HDF5 file."""
    return torch_or_keras(kind, content, source, options, from_state_dict=from_state_dict,
                          keras_mapping="vgg_from_keras", model="vgg", recognised=is_vgg, keys="VGG",
                          example="features.0.weight, classifier.6.weight")
