"""DS6 3D U-Net (``U_Net_DeepSup``) weights from PyTorch state dicts.

DS6 checkpoints are ``.pth`` dicts ``{"state_dict": …, "optimizer": …}``; the published
``model.safetensors`` prefixes every key with ``model.`` — :func:`converters.torch.unwrap` and the
readers remove both.  Keys are the module paths (``Conv1.conv.0.weight``, ``Up5.up.1.bias``,
``Conv.weight`` …), which are jaxretina's Flax paths.  ``base_width``, ``in_channels`` and
``out_channels`` are read from ``Conv1.conv.0.weight`` and ``Conv.weight`` unless given.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from converters.mapping import Report, require_state_dict, torch_variables
from jaxretina.models.unet3d import UNet3D

__all__ = ["from_weights", "from_state_dict", "is_unet3d"]


def is_unet3d(state: Mapping[str, Any]) -> bool:
    """Whether a state dict has DS6 U-Net keys."""
    return any(k.startswith("Conv1.conv.") for k in state) and any(k.startswith("Up_conv2.") for k in state)


def from_state_dict(state: Mapping[str, np.ndarray], source: str, **model_kwargs: Any) -> tuple[UNet3D, dict, Report]:
    """``(model, variables, report)``; ``model_kwargs`` go to :class:`UNet3D`."""
    first, last = state.get("Conv1.conv.0.weight"), state.get("Conv.weight")
    if first is not None and np.ndim(first) == 5:
        model_kwargs.setdefault("base_width", int(np.shape(first)[0]))
        model_kwargs.setdefault("in_channels", int(np.shape(first)[1]))
    if last is not None and np.ndim(last) == 5:
        model_kwargs.setdefault("out_channels", int(np.shape(last)[0]))
    model = UNet3D(**model_kwargs)
    config = {k: getattr(model, k) for k in ("base_width", "in_channels", "out_channels")}
    report = Report(source_format="PyTorch DS6 U_Net_DeepSup state dict", config=config)
    return model, torch_variables(model, state, report, source), report


def from_weights(kind: str, content: Any, source: str, **model_kwargs: Any) -> tuple[UNet3D, dict, Report]:
    """Dispatch for :func:`jaxretina.load`: a PyTorch or safetensors state dict."""
    require_state_dict(kind, content, source, model="unet3d", recognised=is_unet3d, keys="DS6 U-Net",
                       example="Conv1.conv.0.weight, Up_conv2...")
    return from_state_dict(content, source, **model_kwargs)
