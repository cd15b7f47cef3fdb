"""Inception V3 weights from PyTorch state dicts (torchvision ``inception_v3`` key scheme).

Keys (after :func:`converters.torch.unwrap` removed wrappers and ``module.``) are torchvision's
module paths: ``Conv2d_1a_3x3.conv.weight``, ``Mixed_6b.branch7x7_2.bn.running_mean``, …,
``fc.weight``; ``AuxLogits.*`` when the file has the auxiliary classifier; a seed-001 top saved
from PyTorch as ``head.fc1`` / ``head.fc2`` / ``head.out``.  Read from the file unless given:
``num_classes`` (from the top's weight), ``aux_logits`` (whether ``AuxLogits`` keys exist),
``head`` and ``hidden`` (seed-001 keys and their widths).  ``transform_input`` is a property
of torchvision's model object, not of its weights: pass ``transform_input=True`` for
torchvision's ImageNet checkpoint.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from converters.mapping import Report, require_state_dict, torch_variables
from jaxretina.models.inception import InceptionV3

__all__ = ["from_weights", "from_state_dict", "is_inception", "reference"]


def is_inception(state: Mapping[str, Any]) -> bool:
    """Whether a state dict has Inception V3 keys."""
    return any(k.startswith("Mixed_5b.") for k in state)


def _config_from_keys(state: Mapping[str, np.ndarray], kwargs: dict) -> dict:
    config = dict(kwargs)
    seed001 = "head.out.weight" in state
    config.setdefault("head", "seed001" if seed001 else "torchvision")
    top = "head.out.weight" if config["head"] == "seed001" else "fc.weight"
    if "num_classes" not in config and top in state:
        config["num_classes"] = int(np.shape(state[top])[0])
    if config["head"] == "seed001" and "hidden" not in config and {"head.fc1.weight", "head.fc2.weight"} <= set(state):
        config["hidden"] = (int(np.shape(state["head.fc1.weight"])[0]), int(np.shape(state["head.fc2.weight"])[0]))
    config.setdefault("aux_logits", any(k.startswith("AuxLogits.") for k in state))
    return config


def from_state_dict(state: Mapping[str, np.ndarray], source: str, **model_kwargs: Any) -> tuple[InceptionV3, dict, Report]:
    """``(model, variables, report)``; ``model_kwargs`` go to :class:`InceptionV3`."""
    config = _config_from_keys(state, model_kwargs)
    model = InceptionV3(**config)
    report = Report(source_format="PyTorch Inception V3 state dict, torchvision keys",
                    config={k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()})
    return model, torch_variables(model, state, report, source), report


def reference(model: InceptionV3, state: Mapping[str, np.ndarray]):
    """``(torchvision Inception3, its state dict, input side)``: the parity reference of ``jaxretina convert``
    (a reason string for the seed-001 head, which torchvision has no counterpart of)."""
    if model.head != "torchvision":
        return "the seed-001 head has no torchvision counterpart"
    import torchvision

    ref = torchvision.models.inception_v3(weights=None, num_classes=model.num_classes, aux_logits=model.aux_logits,
                                          transform_input=model.transform_input, init_weights=False)
    return ref, state, 299


def from_weights(kind: str, content: Any, source: str, **model_kwargs: Any) -> tuple[InceptionV3, dict, Report]:
    """Dispatch for :func:`jaxretina.load`: a PyTorch or safetensors state dict."""
    require_state_dict(kind, content, source, model="inception_v3", recognised=is_inception, keys="Inception V3",
                       example="Mixed_5b..., Conv2d_1a_3x3...")
    return from_state_dict(content, source, **model_kwargs)
