"""Recognise a weight file by its content and read it: Caffe, PyTorch, safetensors or Keras.

* the HDF5 signature, or a zip holding ``config.json`` and ``model.weights.h5`` (a ``.keras``
  archive): Keras (:mod:`converters.keras`);
* any other zip archive, or a pickle stream (first byte ``0x80``, the legacy ``torch.save``): PyTorch;
* an 8-byte header length followed by ``{``: safetensors;
* otherwise: a ``.caffemodel`` (whose decoder says where it stops making sense if it is not).
"""

from __future__ import annotations

import os
import zipfile
from typing import Any

from converters.caffe import read_caffemodel
from converters.keras import is_hdf5, is_keras_archive, read_keras
from converters.safetensors import is_safetensors, read_safetensors
from converters.torch import read_torch, unwrap

__all__ = ["read_weights", "sniff"]


def sniff(path: str) -> str:
    """``"pytorch"``, ``"safetensors"``, ``"keras"`` or ``"caffemodel"`` from the first bytes of ``path``."""
    if zipfile.is_zipfile(path):
        return "keras" if is_keras_archive(path) else "pytorch"
    with open(path, "rb") as fh:
        first = fh.read(1)
    if not first:
        raise ValueError(f"{path}: empty file; expected a .caffemodel, .pth/.pt, .safetensors or Keras .h5 file")
    if first == b"\x80":
        return "pytorch"
    if is_safetensors(path):
        return "safetensors"
    if is_hdf5(path):
        return "keras"
    return "caffemodel"


def read_weights(path: str | os.PathLike, *, backend: str = "auto") -> tuple[str, Any]:
    """``(kind, content)``: a :class:`converters.caffe.CaffeNet` for Caffe, a
    :class:`converters.keras.KerasWeights` for Keras, else a flat state dict ``{key: np.ndarray}``
    with wrappers and ``module.``/``model.`` prefixes removed."""
    path = os.fspath(path)
    kind = sniff(path)
    if kind == "keras":
        return kind, read_keras(path)
    if kind == "caffemodel":
        return kind, read_caffemodel(path)
    if kind == "safetensors":
        return kind, unwrap(read_safetensors(path), path)
    return kind, unwrap(read_torch(path, backend=backend), path)
