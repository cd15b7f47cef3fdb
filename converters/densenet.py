"""DenseNet weights from PyTorch state dicts: torchvision (current and legacy keys) and MONAI.

Key schemes (after :func:`converters.torch.unwrap` removed wrappers and ``module.``):

* torchvision: ``features.denseblock1.denselayer1.norm1.weight`` …, ``classifier.weight``;
* torchvision before 0.3 (``norm.1``, ``relu.1``, ``conv.2`` …): renamed with torchvision's own
  pattern ``^(.*denselayer\\d+\\.(?:norm|relu|conv))\\.((?:[12])\\.(?:weight|bias|running_mean|running_var))$``
  → ``group1 + group2`` (``norm.1.weight`` → ``norm1.weight``);
* MONAI ``DenseNet121``: ``…denselayerL.layers.norm1.weight`` and ``class_layers.out.*``.

``num_classes`` is read from the classifier weight and ``in_channels`` from ``conv0``'s unless
given.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import numpy as np
import jax.numpy as jnp

from converters.mapping import Report, require_state_dict, torch_variables, widths_from_keys
from jaxretina.models.densenet import DenseNet, DenseNet121

__all__ = ["from_weights", "from_state_dict", "normalize_keys", "is_densenet", "reference"]

_LEGACY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def is_densenet(state: Mapping[str, Any]) -> bool:
    """Whether a state dict has DenseNet dense-block keys (any of the schemes)."""
    return any(".denseblock" in k or k.startswith("denseblock") for k in state)


def normalize_keys(state: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], str]:
    """Rename legacy torchvision and MONAI keys to torchvision's; returns ``(state, scheme)``."""
    scheme = "torchvision"
    out = {}
    for key, value in state.items():
        new = key
        m = _LEGACY.match(new)
        if m:
            new, scheme = m.group(1) + m.group(2), "torchvision (legacy norm.1-style keys)"
        if ".layers." in new and ".denselayer" in new:
            new, scheme = new.replace(".layers.", ".", 1), "MONAI"
        if new.startswith("class_layers.out."):
            new, scheme = "classifier." + new[len("class_layers.out."):], "MONAI"
        out[new] = value
    return out, scheme


def from_state_dict(state: Mapping[str, np.ndarray], source: str, **model_kwargs: Any) -> tuple[DenseNet, dict, Report]:
    """``(model, variables, report)``; ``model_kwargs`` go to :class:`DenseNet121`."""
    state, scheme = normalize_keys(state)
    widths_from_keys(state, model_kwargs, top="classifier.weight", first="features.conv0.weight")
    model = DenseNet121(**model_kwargs)
    report = Report(source_format=f"PyTorch DenseNet state dict, {scheme} keys", config=dict(model_kwargs))
    return model, torch_variables(model, state, report, source), report


def reference(model: DenseNet, state: Mapping[str, np.ndarray]):
    """``(torchvision DenseNet, its state dict, input side)``: the parity reference of ``jaxretina convert``."""
    import torchvision

    state, _ = normalize_keys(state)
    ref = torchvision.models.DenseNet(
        growth_rate=model.growth_rate, block_config=tuple(model.block_config),
        num_init_features=model.num_init_features, bn_size=model.bn_size, num_classes=model.num_classes)
    return ref, state, 224


def from_weights(kind: str, content: Any, source: str, **model_kwargs: Any) -> tuple[DenseNet, dict, Report]:
    """Dispatch for :func:`jaxretina.load`: a PyTorch or safetensors state dict."""
    require_state_dict(kind, content, source, model="densenet121", recognised=is_densenet, keys="DenseNet",
                       example="features.denseblockN...")
    return from_state_dict(content, source, **model_kwargs)
