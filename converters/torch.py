"""PyTorch state dicts (``.pth``/``.pt``) as numpy arrays, without executing pickled code.

Two readers, same result (``{key: np.ndarray}`` plus non-tensor values):

* ``backend="torch"``: ``torch.load(path, weights_only=True, map_location="cpu")`` — PyTorch's
  own restricted unpickler; used by ``"auto"`` when torch is already imported, and as the
  fallback for files the built-in reader cannot parse (see :func:`read_torch`).
* ``backend="jaxretina"``: a restricted reader of torch's zip format (``archive/data.pkl`` +
  ``archive/data/<key>``) and of the legacy pre-1.6 stream format, with no torch at all.  Its
  unpickler resolves only the tensor-rebuild helpers, typed storages, ``OrderedDict`` and numpy
  scalars; any other global in the pickle (``os.system``, ``builtins.eval``, a model class …)
  raises :class:`UnsafeCheckpointError` *when the unpickler meets it*, before anything in the
  file runs.

:func:`unwrap` then removes the usual wrappers: ``{"state_dict": …}``, ``{"model": …}``,
``{"model_state_dict": …}`` and a ``module.`` / ``model.`` prefix on every key.

Example::

    >>> state = unwrap(read_torch("densenet121_dr.pth"))
    >>> state["features.conv0.weight"].shape
    (64, 3, 7, 7)
"""

from __future__ import annotations

import collections
import importlib.util
import io
import math
import mmap
import os
import pickle
import struct
import sys
import zipfile
import zlib
from typing import Any, Mapping, NamedTuple

import numpy as np

__all__ = ["UnsafeCheckpointError", "read_torch", "unwrap", "ALLOWED_GLOBALS"]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint's pickle names a global outside the tensor-rebuild allowlist."""


def _bfloat16():
    import ml_dtypes  # a JAX dependency

    return np.dtype(ml_dtypes.bfloat16)


_STORAGE_DTYPES = {
    "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2", "BFloat16Storage": "bf16",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        code = _STORAGE_DTYPES[name]
        self.dtype = _bfloat16() if code == "bf16" else np.dtype(code)


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    # storage: a 1-D numpy array of the storage's dtype; offset/stride in elements.
    if isinstance(storage, _Pending):
        return _LazyTensor(storage, (offset, size, stride))
    size, stride = tuple(size), tuple(stride)
    if not size:
        return np.array(storage[offset])
    needed = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1 if all(size) else offset
    if needed > storage.size:
        raise ValueError(f"tensor of size {size} stride {stride} at offset {offset} overruns its "
                         f"storage of {storage.size} elements (corrupt checkpoint)")
    contiguous = tuple(math.prod(size[i + 1:]) for i in range(len(size)))
    count = math.prod(size)
    if stride == contiguous or count <= 1:  # the usual case: a read-only view, no copy
        return storage[offset : offset + count].reshape(size)
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], size, tuple(s * item for s in stride))
    return np.array(view)  # a compact copy of a transposed or strided tensor


def _rebuild_parameter(data, requires_grad, backward_hooks, *_ignored):
    return data


def _numpy_scalar(dtype, data=None):
    return np.frombuffer(data, dtype=dtype, count=1)[0] if data is not None else dtype.type()


def _numpy_dtype(name, align=False, copy=False):
    return np.dtype(name)


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): _numpy_dtype,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, stream: io.BytesIO, load_storage, source: str):
        super().__init__(stream, encoding="latin1")
        self._load_storage = load_storage
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"{self._source}: refused to load: the pickle names the global {module}.{name}, "
                "which is not a tensor-rebuild helper (allowed: "
                f"{sorted(f'{m}.{n}' for m, n in ALLOWED_GLOBALS)}). Nothing from the file was "
                "executed. Re-save only the state dict (torch.save(model.state_dict(), ...)) or "
                "convert it to .safetensors."
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise UnsafeCheckpointError(f"{self._source}: unsupported persistent id {pid!r:.80}")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType):
            raise UnsafeCheckpointError(f"{self._source}: storage {key} has an unknown type {storage_type!r:.80}")
        return self._load_storage(key, storage_type.dtype, pid)


def _read_zip(path: str) -> Any:
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        infos = {i.filename: i for i in zf.infolist()}
        pkl = [n for n in infos if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise ValueError(f"{path}: a zip file but not a PyTorch checkpoint (found {len(pkl)} data.pkl entries)")
        root = pkl[0][: -len("data.pkl")]
        big = f"{root}byteorder" in infos and zf.read(f"{root}byteorder").strip() == b"big"
        # torch stores entries uncompressed: map the file once and view each storage in place
        # (CRC-checked) instead of copying it out through zipfile.
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        cache: dict[str, np.ndarray] = {}

        def load_storage(key, dtype, _pid):
            if key not in cache:
                entry = f"{root}data/{key}"
                info = infos.get(entry)
                if info is None:
                    raise ValueError(f"{path}: storage {key} referenced by the pickle is missing ({entry})")
                raw = _stored_bytes(zf, mapped, info, path)
                dt = dtype.newbyteorder(">") if big and dtype.itemsize > 1 else dtype
                if len(raw) % dt.itemsize:
                    raise ValueError(f"{path}: storage {key} holds {len(raw)} bytes, not a multiple of {dt.itemsize}")
                cache[key] = np.frombuffer(raw, dt).astype(dtype, copy=False)
            return cache[key]

        return _RestrictedUnpickler(io.BytesIO(zf.read(pkl[0])), load_storage, path).load()


def _stored_bytes(zf: zipfile.ZipFile, mapped: mmap.mmap, info: zipfile.ZipInfo, path: str):
    """An entry's bytes: a CRC-checked view of the mapped file when stored, else a copy."""
    if info.compress_type != zipfile.ZIP_STORED:
        return zf.read(info)
    head = mapped[info.header_offset : info.header_offset + 30]
    if len(head) < 30 or head[:4] != b"PK\x03\x04":
        raise ValueError(f"{path}: corrupt zip entry {info.filename} (no local header at byte {info.header_offset})")
    name_len, extra_len = struct.unpack("<HH", head[26:30])
    start = info.header_offset + 30 + name_len + extra_len
    if start + info.file_size > len(mapped):
        raise ValueError(f"{path}: zip entry {info.filename} is truncated")
    view = memoryview(mapped)[start : start + info.file_size]
    if zlib.crc32(view) != info.CRC:
        raise ValueError(f"{path}: zip entry {info.filename} fails its CRC-32 check (corrupt file)")
    return view


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _Pending(NamedTuple):  # a legacy-format storage whose bytes come after the pickle
    key: str
    dtype: np.dtype
    view: tuple | None


class _LazyTensor(NamedTuple):
    storage: _Pending
    args: tuple


def _read_legacy(path: str, data: bytes) -> Any:
    # Pre-1.6 torch.save: successive pickles (magic, protocol, sys_info, object, storage keys),
    # then per key an int64 element count and the raw little-endian elements.  Tensors can only
    # be built once the storages have been read, so the object is unpickled with placeholders.
    stream = io.BytesIO(data)
    unp = _RestrictedUnpickler(stream, lambda key, dtype, pid: _Pending(key, dtype, pid[5] if len(pid) > 5 else None), path)
    try:
        magic = unp.load()
    except UnsafeCheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 - any garbage gets one clear message
        raise ValueError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a legacy "
                         f"torch.save stream: {err})") from err
    if magic != _LEGACY_MAGIC:
        raise ValueError(f"{path}: not a PyTorch checkpoint (no zip archive, no legacy magic number)")
    unp.load()  # protocol version
    unp.load()  # sys_info
    obj = unp.load()
    keys = unp.load()
    storages = {}
    dtypes = _pending_dtypes(obj)
    for key in keys:
        head = stream.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: truncated before storage {key}")
        (count,) = struct.unpack("<q", head)
        if count < 0:
            raise ValueError(f"{path}: storage {key} has a negative size {count} (corrupt file)")
        dtype = dtypes.get(str(key))
        if dtype is None:
            raise ValueError(f"{path}: storage {key} is listed but never used by a tensor")
        raw = stream.read(count * dtype.itemsize)
        if len(raw) < count * dtype.itemsize:
            raise ValueError(f"{path}: storage {key} truncated ({len(raw)} of {count * dtype.itemsize} bytes)")
        storages[str(key)] = np.frombuffer(raw, dtype)

    def resolve(value):
        if isinstance(value, _LazyTensor):
            pending = value.storage
            if pending.key not in storages:
                raise ValueError(f"{path}: storage {pending.key} referenced by the pickle is missing")
            storage = storages[pending.key]
            if pending.view:
                _, start, size = pending.view
                storage = storage[start : start + size]
            return _rebuild_tensor(storage, *value.args)
        if isinstance(value, dict):
            return type(value)((k, resolve(v)) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return type(value)(resolve(v) for v in value)
        return value

    return resolve(obj)


def _pending_dtypes(obj: Any, out: dict | None = None) -> dict[str, np.dtype]:
    out = {} if out is None else out
    if isinstance(obj, _LazyTensor):
        out[obj.storage.key] = obj.storage.dtype
    elif isinstance(obj, dict):
        for v in obj.values():
            _pending_dtypes(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _pending_dtypes(v, out)
    return out


def read_torch(path: str | os.PathLike, *, backend: str = "auto") -> Any:
    """The object saved in a ``.pth``/``.pt`` file, tensors as numpy arrays.

    Args:
      path: the checkpoint file.
      backend: ``"torch"`` (``torch.load(weights_only=True)``), ``"jaxretina"`` (the built-in
        restricted reader) or ``"auto"``: torch's loader when torch is already imported in
        this process, else the built-in reader, falling back to torch's loader (when
        installed) for a file the built-in reader cannot parse.  Both refuse any pickled global
        outside their allowlists, before it runs.

    Why "auto" does not import torch just to read a file: measured on a DenseNet121 state
    dict (28 MB, ``benchmarks/conversion.py``), the built-in reader loads it in 0.04 s with no
    new imports, while the first ``torch.load`` in a process pays ~2.5 s and ~500 MB for
    importing torch.
    """
    path = os.fspath(path)
    if backend not in ("auto", "torch", "jaxretina"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'jaxretina'; found {backend!r}")
    if backend == "torch" or (backend == "auto" and "torch" in sys.modules):
        return _read_with_torch(path)
    try:
        return _read_builtin(path)
    except UnsafeCheckpointError:
        raise
    except ValueError as err:
        if backend == "jaxretina" or importlib.util.find_spec("torch") is None:
            raise
        try:  # e.g. a storage type or layout the built-in reader lacks
            return _read_with_torch(path)
        except UnsafeCheckpointError:
            raise
        except ValueError as torch_err:
            raise ValueError(f"{err} (and {torch_err})") from torch_err


def _read_builtin(path: str) -> Any:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"read_torch: no file at {path}")
    try:
        if zipfile.is_zipfile(path):
            return _read_zip(path)
        with open(path, "rb") as fh:
            data = fh.read()
        return _read_legacy(path, data)
    except (UnsafeCheckpointError, ValueError):
        raise
    except (pickle.UnpicklingError, EOFError, TypeError, AttributeError, IndexError, KeyError, struct.error,
            zipfile.BadZipFile, zlib.error, NotImplementedError, OverflowError, RecursionError, MemoryError,
            RuntimeError, OSError) as err:  # a damaged pickle or archive (zipfile, mmap and pickle errors)
        raise ValueError(f"{path}: corrupt PyTorch checkpoint ({type(err).__name__}: {err})") from err


def _read_with_torch(path: str) -> Any:
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f"{path}: refused by torch.load(weights_only=True); nothing from the file was executed. {err}"
        ) from err
    except (RuntimeError, EOFError, OSError, KeyError) as err:
        raise ValueError(f"{path}: torch.load(weights_only=True) could not read it: {err}") from err

    def to_numpy(value):
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu()
            if t.dtype == torch.bfloat16:
                return t.view(torch.int16).numpy().view(_bfloat16())
            return t.numpy()
        if isinstance(value, Mapping):
            return {k: to_numpy(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(to_numpy(v) for v in value)
        return value

    return to_numpy(obj)


_WRAPPERS = ("state_dict", "model", "model_state_dict")
_PREFIXES = ("module.", "model.")


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(k, str) for k in obj) and any(
        isinstance(v, np.ndarray) for v in obj.values())


def unwrap(obj: Any, source: str = "checkpoint") -> dict[str, np.ndarray]:
    """The flat ``{key: array}`` state dict inside a checkpoint object.

    Descends into ``state_dict`` / ``model`` / ``model_state_dict`` entries (repeatedly, e.g.
    ``{"model": {"state_dict": …}}``), then strips a ``module.`` (DataParallel) or ``model.``
    (Lightning, safetensors exports) prefix shared by every key, repeatedly.
    """
    while isinstance(obj, Mapping) and not _is_state_dict(obj):
        inner = next((obj[w] for w in _WRAPPERS if w in obj and isinstance(obj[w], Mapping)), None)
        if inner is None:
            raise ValueError(
                f"{source}: no state dict found; top-level keys {sorted(map(str, obj))[:12]} "
                f"(expected tensors, or a wrapper among {list(_WRAPPERS)})"
            )
        obj = inner
    if not _is_state_dict(obj):
        raise ValueError(f"{source}: expected a state dict (a mapping of names to tensors); found {type(obj).__name__}")
    state = {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return state
