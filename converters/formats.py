"""Recognise a weight file by its content and read it: Caffe, PyTorch or safetensors.

* zip archive, or a pickle stream (first byte ``0x80``, the legacy ``torch.save``): PyTorch;
* an 8-byte header length followed by ``{``: safetensors;
* otherwise: a ``.caffemodel`` (whose decoder says where it stops making sense if it is not).
"""

from __future__ import annotations

import os
import zipfile
from typing import Any

from converters.caffe import read_caffemodel
from converters.safetensors import is_safetensors, read_safetensors
from converters.torch import read_torch, unwrap

__all__ = ["read_weights", "sniff"]


def sniff(path: str) -> str:
    """``"pytorch"``, ``"safetensors"`` or ``"caffemodel"`` from the first bytes of ``path``."""
    if zipfile.is_zipfile(path):
        return "pytorch"
    with open(path, "rb") as fh:
        first = fh.read(1)
    if not first:
        raise ValueError(f"{path}: empty file; expected a .caffemodel, .pth/.pt or .safetensors file")
    if first == b"\x80":
        return "pytorch"
    if is_safetensors(path):
        return "safetensors"
    return "caffemodel"


def read_weights(path: str | os.PathLike, *, backend: str = "auto") -> tuple[str, Any]:
    """``(kind, content)``: a :class:`converters.caffe.CaffeNet` for Caffe, else a flat state
    dict ``{key: np.ndarray}`` with wrappers and ``module.``/``model.`` prefixes removed."""
    path = os.fspath(path)
    kind = sniff(path)
    if kind == "caffemodel":
        return kind, read_caffemodel(path)
    if kind == "safetensors":
        return kind, unwrap(read_safetensors(path), path)
    return kind, unwrap(read_torch(path, backend=backend), path)
