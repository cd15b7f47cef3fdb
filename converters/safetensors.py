"""Read ``.safetensors`` files (no code, no pickle) into numpy arrays, without dependencies.

Layout (https://huggingface.co/docs/safetensors): an unsigned little-endian 64-bit header
length N, N bytes of JSON ``{name: {"dtype", "shape", "data_offsets": [begin, end]}, …,
"__metadata__": {…}}``, then the data buffer; offsets are relative to the buffer.  Every entry
is checked (known dtype, offsets inside the buffer, byte count = prod(shape) · itemsize) and
the arrays are read-only views of the file's bytes read into memory (not a memory map: they
stay valid and unchanged if the file is rewritten or truncated afterwards).

Example::

    >>> state = read_safetensors("model.safetensors")           # a DS6 U-Net's weights
    >>> sorted(state)[:2]
    ['Conv.bias', 'Conv.weight']
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

__all__ = ["read_safetensors", "is_safetensors"]


def _dtypes() -> dict[str, np.dtype]:
    import ml_dtypes  # a JAX dependency

    return {
        "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
        "BF16": np.dtype(ml_dtypes.bfloat16), "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
        "I16": np.dtype("<i2"), "I8": np.dtype("i1"), "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
        "U16": np.dtype("<u2"), "U32": np.dtype("<u4"), "U64": np.dtype("<u8"),
        "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn), "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    }


def is_safetensors(path: str | os.PathLike) -> bool:
    """Whether the file starts like a safetensors file (a plausible header length, then ``{``)."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 2 <= n <= os.path.getsize(path) - 8


def _count(value) -> int:
    # JSON numbers that are sizes: non-negative integers (not floats, bools or strings).
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r:.20} is not a non-negative integer")
    return value


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{name: array}`` from a ``.safetensors`` file; raises ``ValueError`` on any inconsistency."""
    path = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: {size} bytes is too short for a safetensors file")
        n = int.from_bytes(head, "little")
        if n > size - 8:
            raise ValueError(f"{path}: safetensors header claims {n} bytes but the file has {size - 8} after "
                             "the length field (truncated, or not a safetensors file)")
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            raise ValueError(f"{path}: safetensors header is not valid JSON ({err})") from err
        buffer = np.frombuffer(fh.read(size - 8 - n), np.uint8)  # ours: immune to later file changes
    if not isinstance(header, dict):
        raise ValueError(f"{path}: safetensors header should be a JSON object")
    dtypes = _dtypes()
    out = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = dtypes[spec["dtype"]]
            shape = tuple(_count(d) for d in spec["shape"])
            begin, end = (_count(v) for v in spec["data_offsets"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: entry {name!r} is malformed ({spec!r:.120}); expected dtype, shape, "
                             f"data_offsets with dtype among {sorted(dtypes)}") from err
        nbytes = math.prod(shape) * dtype.itemsize
        if not 0 <= begin <= end <= buffer.size or end - begin != nbytes:
            raise ValueError(f"{path}: entry {name!r} spans bytes [{begin}, {end}) of a {buffer.size}-byte buffer; "
                             f"shape {shape} {spec['dtype']} needs {nbytes} bytes (truncated or corrupt file)")
        out[name] = buffer[begin:end].view(dtype).reshape(shape)
    return out
