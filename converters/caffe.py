"""Read Caffe ``.caffemodel`` files (serialized ``NetParameter``) without Caffe.

:func:`read_caffemodel` returns every layer of the file — V2 ``layer`` (field 100) and V1
``layers`` (field 2, with an embedded V0 layer's blobs when present) — with its name, type,
bottoms, tops, blobs as numpy arrays and its convolution / pooling / crop parameters.
Field numbers follow BVLC ``src/caffe/proto/caffe.proto`` (proto2); unknown fields are skipped
by wire type, so files from forks (HED, OSVOS) read the same.  See ``converters/wire.py`` for
why this is a small wire decoder rather than the protobuf runtime.

Blob shapes: ``BlobProto.shape`` (field 7) when present; the legacy 4-D ``(num, channels,
height, width)`` when any legacy field is present; ``double_data`` wins when non-empty.

Example::

    >>> net = read_caffemodel("DRIU_DRIVE.caffemodel")
    >>> [(l.name, l.type, [b.shape for b in l.blobs]) for l in net.layers][:2]
    [('data', 'Input', []), ('conv1_1', 'Convolution', [(64, 3, 3, 3), (64,)])]
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from converters.wire import FIXED32, FIXED64, LENGTH, DecodeError, Field, fields, packed_or_run, scalars

__all__ = ["CaffeLayer", "CaffeNet", "read_caffemodel", "V1_TYPES", "DecodeError"]

# V1LayerParameter.LayerType enum -> V2 type string.
V1_TYPES = {
    0: "None", 1: "Accuracy", 2: "BNLL", 3: "Concat", 4: "Convolution", 5: "Data", 6: "Dropout",
    7: "EuclideanLoss", 8: "Flatten", 9: "HDF5Data", 10: "HDF5Output", 11: "Im2col",
    12: "ImageData", 13: "InfogainLoss", 14: "InnerProduct", 15: "LRN", 16: "MultinomialLogisticLoss",
    17: "Pooling", 18: "ReLU", 19: "Sigmoid", 20: "Softmax", 21: "SoftmaxWithLoss", 22: "Split",
    23: "TanH", 24: "WindowData", 25: "Eltwise", 26: "Power", 27: "SigmoidCrossEntropyLoss",
    28: "HingeLoss", 29: "MemoryData", 30: "ArgMax", 31: "Threshold", 32: "DummyData", 33: "Slice",
    34: "MVN", 35: "AbsVal", 36: "Silence", 37: "ContrastiveLoss", 38: "Exp", 39: "Deconvolution",
}
_INT_MAX = (1 << 31) - 1  # Caffe's Blob refuses counts above INT_MAX
_POOL_METHODS = {0: "MAX", 1: "AVE", 2: "STOCHASTIC"}
_ROUND_MODES = {0: "CEIL", 1: "FLOOR"}


@dataclass(frozen=True)
class CaffeLayer:
    """One layer of a ``.caffemodel``.

    ``convolution``: ``{"num_output", "bias_term", "kernel": (kh, kw), "stride": (sh, sw),
    "pad": (ph, pw), "dilation": (dh, dw), "group"}`` for Convolution/Deconvolution layers;
    ``pooling``: ``{"method", "kernel", "stride", "pad", "global_pooling", "round_mode"}``;
    ``crop``: ``{"axis", "offset": (...)}``.  ``None`` when the file has no such parameter.
    """

    name: str
    type: str
    bottoms: tuple[str, ...] = ()
    tops: tuple[str, ...] = ()
    blobs: tuple[np.ndarray, ...] = ()
    convolution: dict[str, Any] | None = None
    pooling: dict[str, Any] | None = None
    crop: dict[str, Any] | None = None


@dataclass(frozen=True)
class CaffeNet:
    """A decoded ``NetParameter``: its name, its layers in file order, and the format seen."""

    name: str
    layers: tuple[CaffeLayer, ...]
    format: str  # "V2" (layer), "V1" (layers), "V1+V2" or "empty"
    inputs: tuple[str, ...] = field(default=())

    def by_name(self) -> dict[str, CaffeLayer]:
        """Layers keyed by name; a later duplicate name (e.g. Caffe's several ``crop``) wins."""
        return {layer.name: layer for layer in self.layers}


def _string(buf: bytes, f: Field, where: str) -> str:
    if f.wire_type != LENGTH:
        raise DecodeError(f"{where}: field {f.number} at byte {f.offset} should be a string")
    start, end = f.value  # type: ignore[misc]
    try:
        return bytes(buf[start:end]).decode("utf-8")
    except UnicodeDecodeError as err:
        raise DecodeError(f"{where}: field {f.number} at byte {f.offset} is not UTF-8 text") from err


def _sub(f: Field, where: str) -> tuple[int, int]:
    if f.wire_type != LENGTH:
        raise DecodeError(f"{where}: field {f.number} at byte {f.offset} should be a sub-message, "
                          f"found wire type {f.wire_type}")
    return f.value  # type: ignore[return-value]


def _blob(buf: bytes, start: int, end: int, where: str) -> np.ndarray:
    shape: list[int] | None = None
    legacy = {}
    floats: list[np.ndarray] = []
    doubles: list[np.ndarray] = []
    pos = start
    while pos < end:
        for f in fields(buf, pos, end, where):
            if f.number in (5, 8):  # data (float), double_data
                dtype = "<f4" if f.number == 5 else "<f8"
                arr, pos = packed_or_run(buf, f, dtype, end, f"{where}.{'data' if f.number == 5 else 'double_data'}")
                (floats if f.number == 5 else doubles).append(arr)
                break  # resume the field walk after the packed field or the unpacked run
            if f.number == 7:  # BlobShape
                s, e = _sub(f, where)
                dims: list[int] = []
                for g in fields(buf, s, e, f"{where}.shape"):
                    if g.number == 1:
                        dims += scalars(buf, g, f"{where}.shape.dim")
                shape = dims
            elif f.number in (1, 2, 3, 4) and f.wire_type == 0:
                legacy[f.number] = f.value
            # diff (6), double_diff (9) and unknown fields: skipped.
        else:
            pos = end
    data = doubles if sum(a.size for a in doubles) else floats
    values = data[0] if len(data) == 1 else (np.concatenate(data) if data else np.zeros(0, np.float32))
    field_name = "shape.dim"
    if legacy:
        shape = [legacy.get(i, 1) for i in (1, 2, 3, 4)]
        field_name = "num/channels/height/width"
    if shape is None:
        shape = [values.size]
    # Dimensions are int64 (int32 for the legacy fields) sent as 64-bit varints: negative ones
    # arrive as huge numbers.  Exact integer arithmetic: a product cannot wrap around to match.
    shape = [d - (1 << 64) if d >= 1 << 63 else d for d in shape]
    if any(d < 0 for d in shape):
        raise DecodeError(f"{where}.{field_name}: negative dimension in blob shape {tuple(shape)} (corrupt blob)")
    needed = math.prod(shape)
    if any(d > _INT_MAX for d in shape) or needed > _INT_MAX:
        raise DecodeError(f"{where}.{field_name}: blob shape {tuple(shape)} exceeds Caffe's limit of "
                          f"{_INT_MAX} elements (corrupt blob)")
    if needed != values.size:
        raise DecodeError(f"{where}.{field_name}: blob shape {tuple(shape)} needs {needed} values; "
                          f"the file holds {values.size} (truncated or corrupt blob)")
    return values.reshape(shape)


def _pair(single: list[int], h: int | None, w: int | None, default: int) -> tuple[int, int]:
    if h is not None or w is not None:
        return (h if h is not None else default, w if w is not None else default)
    if not single:
        return (default, default)
    return (single[0], single[-1]) if len(single) <= 2 else (single[0], single[1])


def _conv_param(buf: bytes, start: int, end: int, where: str) -> dict[str, Any]:
    rep: dict[int, list[int]] = {3: [], 4: [], 6: [], 18: []}
    one: dict[int, int] = {}
    for f in fields(buf, start, end, where):
        if f.number in rep:
            rep[f.number] += scalars(buf, f, where)
        elif f.wire_type == 0:
            one[f.number] = f.value  # type: ignore[assignment]
    return {
        "num_output": one.get(1),
        "bias_term": bool(one.get(2, 1)),
        "kernel": _pair(rep[4], one.get(11), one.get(12), 1),
        "stride": _pair(rep[6], one.get(13), one.get(14), 1),
        "pad": _pair(rep[3], one.get(9), one.get(10), 0),
        "dilation": _pair(rep[18], None, None, 1),
        "group": one.get(5, 1),
    }


def _pool_param(buf: bytes, start: int, end: int, where: str) -> dict[str, Any]:
    one = {f.number: f.value for f in fields(buf, start, end, where) if f.wire_type == 0}
    return {
        "method": _POOL_METHODS.get(one.get(1, 0), str(one.get(1))),
        "kernel": _pair([one[2]] if 2 in one else [], one.get(5), one.get(6), 0),
        "stride": _pair([one[3]] if 3 in one else [], one.get(7), one.get(8), 1),
        "pad": _pair([one[4]] if 4 in one else [], one.get(9), one.get(10), 0),
        "global_pooling": bool(one.get(12, 0)),
        "round_mode": _ROUND_MODES.get(one.get(13, 0), str(one.get(13))),
    }


def _crop_param(buf: bytes, start: int, end: int, where: str) -> dict[str, Any]:
    axis, offsets = 2, []
    for f in fields(buf, start, end, where):
        if f.number == 1 and f.wire_type == 0:
            axis = f.value - (1 << 64) if f.value >= 1 << 63 else f.value  # int32 sign
        elif f.number == 2:
            offsets += scalars(buf, f, where)
    return {"axis": axis, "offset": tuple(offsets)}


# Field numbers per layer message: name, type, bottom, top, blobs, conv, pool, crop.
_V2 = {"name": 1, "type": 2, "bottom": 3, "top": 4, "blobs": 7, "conv": 106, "pool": 121, "crop": 144}
_V1 = {"name": 4, "type": 5, "bottom": 2, "top": 3, "blobs": 6, "conv": 10, "pool": 19, "crop": None}
_V0 = {"name": 1, "type": 2, "bottom": None, "top": None, "blobs": 50, "conv": None, "pool": None, "crop": None}


def _layer(buf: bytes, start: int, end: int, where: str, nums: dict[str, int | None]) -> CaffeLayer:
    out: dict[str, Any] = {"name": "", "type": "", "bottoms": [], "tops": [], "blobs": []}
    v0: CaffeLayer | None = None
    for f in fields(buf, start, end, where):
        n = f.number
        if n == nums["name"]:
            out["name"] = _string(buf, f, f"{where}.name")
        elif n == nums["type"]:
            if f.wire_type == 0:  # V1 enum
                out["type"] = V1_TYPES.get(f.value, f"V1Type{f.value}")  # type: ignore[arg-type]
            else:
                out["type"] = _string(buf, f, f"{where}.type")
        elif n == nums["bottom"]:
            out["bottoms"].append(_string(buf, f, f"{where}.bottom"))
        elif n == nums["top"]:
            out["tops"].append(_string(buf, f, f"{where}.top"))
        elif n == nums["blobs"]:
            label = f"{where}.blobs[{len(out['blobs'])}]"
            out["blobs"].append(_blob(buf, *_sub(f, label), label))
        elif n == nums["conv"]:
            out["convolution"] = _conv_param(buf, *_sub(f, where), f"{where}.convolution_param")
        elif n == nums["pool"]:
            out["pooling"] = _pool_param(buf, *_sub(f, where), f"{where}.pooling_param")
        elif n == nums["crop"]:
            out["crop"] = _crop_param(buf, *_sub(f, where), f"{where}.crop_param")
        elif nums is _V1 and n == 1:  # embedded V0LayerParameter
            v0 = _layer(buf, *_sub(f, where), f"{where}.layer", _V0)
    if v0 is not None:  # very old files keep name, type and blobs in the V0 layer
        out["name"] = out["name"] or v0.name
        out["type"] = out["type"] or v0.type
        out["blobs"] = out["blobs"] or list(v0.blobs)
    return CaffeLayer(
        name=out["name"], type=out["type"], bottoms=tuple(out["bottoms"]), tops=tuple(out["tops"]),
        blobs=tuple(out["blobs"]), convolution=out.get("convolution"), pooling=out.get("pooling"),
        crop=out.get("crop"),
    )


def read_caffemodel(source: str | os.PathLike | bytes) -> CaffeNet:
    """Decode a ``.caffemodel`` (a path or its bytes) into a :class:`CaffeNet`.

    Raises :class:`DecodeError` (a ``ValueError``) naming the byte offset and field path when
    the file is truncated or not a ``NetParameter``, and when it holds no layers at all.
    Blob arrays are read-only views of the file's bytes (copy them to modify).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        buf, label = bytes(source), "<bytes>"
    else:
        label = os.fspath(source)
        with open(label, "rb") as fh:
            buf = fh.read()
    try:
        return _net(buf, label)
    except RecursionError as err:  # absurdly nested groups in a corrupt file
        raise DecodeError(f"{label}: nesting too deep to be a .caffemodel (corrupt file?)") from err


def _net(buf: bytes, label: str) -> CaffeNet:
    where = f"{label}: NetParameter"
    name, inputs, v1, v2 = "", [], [], []
    for f in fields(buf, 0, len(buf), where):
        if f.number == 1:
            name = _string(buf, f, f"{where}.name")
        elif f.number == 3:
            inputs.append(_string(buf, f, f"{where}.input"))
        elif f.number == 2:
            tag = f"{where}.layers[{len(v1)}]"
            v1.append(_layer(buf, *_sub(f, tag), tag, _V1))
        elif f.number == 100:
            tag = f"{where}.layer[{len(v2)}]"
            v2.append(_layer(buf, *_sub(f, tag), tag, _V2))
    if not v1 and not v2:
        raise DecodeError(f"{label}: no Caffe layers found ({len(buf)} bytes); expected a .caffemodel "
                          "(a serialized NetParameter with 'layer' or 'layers' entries)")
    fmt = "V1+V2" if v1 and v2 else ("V1" if v1 else "V2")
    return CaffeNet(name=name, layers=tuple(v1 + v2), format=fmt, inputs=tuple(inputs))
