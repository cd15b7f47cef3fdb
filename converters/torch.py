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

    >>> state = unwrap(read_torch("grader.pth"))                 # a DenseNet121's state dict
    >>> state["features.conv0.weight"].shape
    (64, 3, 7, 7)
"""

from __future__ import annotations

import collections
import importlib.util
import io
import os
import pickle
import struct
import sys
import zipfile
import zlib
from typing import Any, Mapping, NamedTuple

import numpy as np

__all__ = ["UnsafeCheckpointError", "UnknownGlobalError", "read_torch", "unwrap", "map_tree", "check_layout",
           "ALLOWED_GLOBALS"]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint's pickle does what a state dict never does: names a global outside the
    tensor-rebuild allowlist, or changes the state of an allowed one (BUILD)."""


class UnknownGlobalError(UnsafeCheckpointError):
    """A global outside the built-in reader's allowlist (``module``: its module name)."""

    def __init__(self, message: str, module: str = ""):
        super().__init__(message)
        self.module = module


def _bfloat16():
    import ml_dtypes  # a JAX dependency

    return np.dtype(ml_dtypes.bfloat16)


_STORAGE_DTYPES = {
    "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2", "BFloat16Storage": "bf16",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}
# Deflate cannot expand data more than ~1032x; a compressed member that promises more is a bomb.
_MAX_DEFLATE_RATIO = 1032
_MAX_DIM = 1 << 48  # no real tensor has a dimension this long; keeps the arithmetic in range


class _Sealed:
    """An object the pickle may call or pass around but never change: the unpickler's BUILD
    instruction (``__setstate__``) on it is refused.  Every allowed global is one, so a crafted
    file cannot alter how later files in the same process are read."""

    __slots__ = ("label",)

    def __init__(self, label: str):
        self.label = label

    def __setstate__(self, state: Any) -> None:
        raise UnsafeCheckpointError(
            f"refused to load: the pickle tries to set the state of {self.label} (a BUILD instruction on "
            "an allowed global or a storage); nothing from the file was executed")

    def __reduce__(self):
        raise TypeError(f"{self.label} cannot be pickled")

    def __repr__(self) -> str:
        return f"<{self.label}>"


class _Helper(_Sealed):
    __slots__ = ("fn",)

    def __init__(self, label: str, fn):
        super().__init__(label)
        self.fn = fn

    def __call__(self, *args):
        return self.fn(*args)


class _StorageType(_Sealed):
    __slots__ = ("name", "dtype")

    def __init__(self, name: str):
        super().__init__(f"torch.{name}")
        self.name = name
        code = _STORAGE_DTYPES[name]
        self.dtype = _bfloat16() if code == "bf16" else np.dtype(code)


class _Storage(_Sealed):
    """A storage's elements (a read-only 1-D array owned by the reader, not a file mapping)."""

    __slots__ = ("array",)

    def __init__(self, key: str, array: np.ndarray):
        super().__init__(f"storage {key}")
        self.array = array


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"tensor {what} should be an integer; found {type(value).__name__} {value!r:.40}")
    return int(value)


def check_layout(offset: Any, size: Any, stride: Any, storage_size: int) -> tuple[int, tuple, tuple]:
    """Validate a tensor's ``(offset, size, stride)`` (in elements) against a storage of
    ``storage_size`` elements, before any view is made; returns them as ints.

    Errors (``ValueError``): a negative offset or size, a stride < 1 on a dimension longer than
    one, any element outside the storage, and overlapping elements (a tensor that addresses
    one storage element twice): the tensors of a state dict never overlap, and refusing
    overlap bounds every tensor by its storage, so a tiny file cannot describe a giant array.
    """
    if not isinstance(size, (tuple, list)) or not isinstance(stride, (tuple, list)):
        raise ValueError(f"tensor size and stride should be tuples; found {type(size).__name__}, "
                         f"{type(stride).__name__}")
    offset = _int(offset, "offset")
    size = tuple(_int(n, "size") for n in size)
    stride = tuple(_int(s, "stride") for s in stride)
    if len(size) != len(stride):
        raise ValueError(f"tensor size {size} and stride {stride} have different lengths")
    if offset < 0 or any(n < 0 or n > _MAX_DIM for n in size):
        raise ValueError(f"tensor with offset {offset} and size {size}: offsets and sizes must be "
                         f"non-negative (and below 2**48)")
    if 0 in size:
        return offset, size, stride
    span = 0  # the furthest element reached so far by the inner dimensions, sorted by stride
    for n, s in sorted(((n, s) for n, s in zip(size, stride) if n > 1), key=lambda p: p[1]):
        if s < 1 or s <= span:
            raise ValueError(f"tensor of size {size} with stride {stride}: "
                             + ("strides must be positive" if s < 1 else "its elements overlap")
                             + " (corrupt or crafted checkpoint)")
        span += s * (n - 1)
    if offset + span >= storage_size:
        raise ValueError(f"tensor of size {size} stride {stride} at offset {offset} overruns its "
                         f"storage of {storage_size} elements (corrupt checkpoint)")
    return offset, size, stride


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    # storage: a _Storage of the storage's dtype; offset/stride in elements.
    if isinstance(storage, _Pending):
        return _LazyTensor(storage, (offset, size, stride))
    if not isinstance(storage, _Storage):
        raise UnsafeCheckpointError(f"a tensor is rebuilt from {type(storage).__name__}, not a storage")
    data = storage.array
    offset, size, stride = check_layout(offset, size, stride, data.size)
    if 0 in size:
        return np.zeros(size, data.dtype)
    if not size:
        return data[offset : offset + 1].reshape(())
    item = data.itemsize
    # A read-only view of the reader's own copy of the bytes (checked above: inside the storage,
    # no overlap), contiguous or not: nothing is allocated per tensor.
    return np.lib.stride_tricks.as_strided(data[offset:], size, tuple(s * item for s in stride), writeable=False)


def _rebuild_parameter(data, requires_grad=None, backward_hooks=None, *_ignored):
    return data


class _DTypeSpec:
    """``numpy.dtype(name)`` as pickled (REDUCE, then BUILD with the byte order): a fresh object
    per occurrence, so BUILD changes only it; turned into a dtype by :func:`_numpy_scalar`."""

    __slots__ = ("name", "order")

    def __init__(self, name, align=False, copy=False):
        self.name, self.order = str(name), "="

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "=")):
            raise ValueError(f"unexpected numpy dtype state {state!r:.80}")
        self.order = state[1]


def _numpy_scalar(spec, data=None):
    if not isinstance(spec, _DTypeSpec):
        raise UnsafeCheckpointError(f"numpy scalar of {type(spec).__name__}, not a dtype")
    try:
        dtype = np.dtype(spec.name).newbyteorder(spec.order)
    except TypeError as err:
        raise ValueError(f"unknown numpy dtype {spec.name!r:.40} in the pickle") from err
    if dtype.kind not in "biufc":
        raise UnsafeCheckpointError(f"numpy scalar of dtype {dtype}: only numbers are read")
    if data is None:
        return dtype.type()
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise ValueError(f"numpy {dtype} scalar with {len(data) if isinstance(data, bytes) else data!r:.40} bytes")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _ordered_dict(*args):
    return collections.OrderedDict(*args)


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _Helper("collections.OrderedDict", _ordered_dict),
    ("torch._utils", "_rebuild_tensor"): _Helper("torch._utils._rebuild_tensor", _rebuild_tensor),
    ("torch._utils", "_rebuild_tensor_v2"): _Helper("torch._utils._rebuild_tensor_v2", _rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): _Helper("torch._utils._rebuild_parameter", _rebuild_parameter),
    ("numpy.core.multiarray", "scalar"): _Helper("numpy.core.multiarray.scalar", _numpy_scalar),
    ("numpy._core.multiarray", "scalar"): _Helper("numpy._core.multiarray.scalar", _numpy_scalar),
    ("numpy", "dtype"): _Helper("numpy.dtype", _DTypeSpec),
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
        except (KeyError, TypeError):
            raise UnknownGlobalError(
                f"{self._source}: refused to load: the pickle names the global {module}.{name}, "
                "which is not a tensor-rebuild helper (allowed: "
                f"{sorted(f'{m}.{n}' for m, n in ALLOWED_GLOBALS)}). Nothing from the file was "
                "executed. Re-save only the state dict (torch.save(model.state_dict(), ...)) or "
                "convert it to .safetensors.", module=str(module)
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise UnsafeCheckpointError(f"{self._source}: unsupported persistent id {pid!r:.80}")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType):
            raise UnsafeCheckpointError(f"{self._source}: storage {key} has an unknown type {storage_type!r:.80}")
        return self._load_storage(key, storage_type.dtype, pid)


def _member_bytes(zf: zipfile.ZipFile, info: zipfile.ZipInfo, file_size: int, path: str) -> bytes:
    """A zip member's bytes, CRC-checked, after checking its sizes against the file's own:
    torch stores members uncompressed; a deflated one may not promise more than deflate can
    expand (~1032x), so a small file cannot make the reader allocate gigabytes."""
    if info.compress_type == zipfile.ZIP_STORED:
        plausible = info.file_size == info.compress_size
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        plausible = info.file_size <= _MAX_DEFLATE_RATIO * info.compress_size + 1024
    else:
        raise ValueError(f"{path}: zip member {info.filename} uses compression method {info.compress_type}; "
                         "PyTorch checkpoints store members uncompressed (or deflated)")
    if not plausible:
        raise ValueError(f"{path}: zip member {info.filename} claims {info.file_size} bytes from "
                         f"{info.compress_size} stored bytes, more than its compression can produce "
                         "(corrupt or crafted file)")
    if info.header_offset + info.compress_size > file_size:
        raise ValueError(f"{path}: zip member {info.filename} is truncated")
    return zf.read(info)


def _read_zip(path: str) -> Any:
    file_size = os.path.getsize(path)
    with zipfile.ZipFile(path) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        pkl = [n for n in infos if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise ValueError(f"{path}: a zip file but not a PyTorch checkpoint (found {len(pkl)} data.pkl entries)")
        root = pkl[0][: -len("data.pkl")]
        order = infos.get(f"{root}byteorder")
        big = order is not None and _member_bytes(zf, order, file_size, path).strip() == b"big"
        # Each storage is read once into memory the reader owns (not a mapping of the file):
        # the arrays returned stay valid and unchanged if the file is rewritten or truncated.
        cache: dict[str, _Storage] = {}

        def load_storage(key, dtype, _pid):
            if key not in cache:
                entry = f"{root}data/{key}"
                info = infos.get(entry)
                if info is None:
                    raise ValueError(f"{path}: storage {key} referenced by the pickle is missing ({entry})")
                raw = _member_bytes(zf, info, file_size, path)
                dt = dtype.newbyteorder(">") if big and dtype.itemsize > 1 else dtype
                if len(raw) % dt.itemsize:
                    raise ValueError(f"{path}: storage {key} holds {len(raw)} bytes, not a multiple of {dt.itemsize}")
                cache[key] = _Storage(key, np.frombuffer(raw, dt).astype(dtype, copy=False))
            return cache[key]

        pickled = _member_bytes(zf, infos[pkl[0]], file_size, path)
        return _RestrictedUnpickler(io.BytesIO(pickled), load_storage, path).load()


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _Pending(NamedTuple):  # a legacy-format storage whose bytes come after the pickle
    key: str
    dtype: np.dtype
    view: tuple | None


class _LazyTensor(NamedTuple):
    storage: _Pending
    args: tuple


def map_tree(obj: Any, leaf, *, source: str = "checkpoint") -> Any:
    """``obj`` with each value ``v`` for which ``leaf(v)`` is not ``None`` replaced by it, through
    dicts (their type kept), lists and tuples.

    A pickle is a DAG: n shared references can nest into 2**n paths.  Each object is visited
    once (shared subtrees stay shared), so the time is linear in the pickle's size; a cycle is
    a ``ValueError``.
    """
    memo: dict[int, Any] = {}
    busy = object()

    def visit(value):
        replaced = leaf(value)
        if replaced is not None:
            return replaced
        if not isinstance(value, (dict, list, tuple)):
            return value
        key = id(value)
        if key in memo:
            if memo[key] is busy:
                raise ValueError(f"{source}: the pickled object contains itself (a cycle); a state dict cannot")
            return memo[key]
        memo[key] = busy
        if isinstance(value, dict):  # dict subclasses from a pickle: OrderedDict
            out = type(value)((k, visit(v)) for k, v in value.items())
        else:  # tuple subclasses (torch.Size) become plain tuples
            out = (list if isinstance(value, list) else tuple)(visit(v) for v in value)
        memo[key] = out
        return out

    return visit(obj)


def _legacy_pending(path: str):
    def load_storage(key, dtype, pid):
        view = pid[5] if len(pid) > 5 else None
        if view is not None:
            if not (isinstance(view, tuple) and len(view) == 3):
                raise ValueError(f"{path}: storage {key} has a malformed view {view!r:.60}")
            view = (str(view[0]), _int(view[1], "storage view offset"), _int(view[2], "storage view size"))
        return _Pending(key, dtype, view)

    return load_storage


def _read_legacy(path: str, data: bytes) -> Any:
    # Pre-1.6 torch.save: successive pickles (magic, protocol, sys_info, object, storage keys),
    # then per key an int64 element count and the raw little-endian elements.  Tensors can only
    # be built once the storages have been read, so the object is unpickled with placeholders.
    stream = io.BytesIO(data)
    unp = _RestrictedUnpickler(stream, _legacy_pending(path), path)
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
    if not isinstance(keys, (list, tuple)):
        raise ValueError(f"{path}: the storage key list is a {type(keys).__name__} (corrupt file)")
    dtypes: dict[str, np.dtype] = {}

    def note(value):
        if isinstance(value, _LazyTensor):
            dtypes[value.storage.key] = value.storage.dtype
            return value
        return None

    map_tree(obj, note, source=path)
    storages: dict[str, np.ndarray] = {}
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
        raw = stream.read(count * dtype.itemsize)  # at most what the file holds
        if len(raw) < count * dtype.itemsize:
            raise ValueError(f"{path}: storage {key} truncated ({len(raw)} of {count * dtype.itemsize} bytes)")
        storages[str(key)] = np.frombuffer(raw, dtype)

    def resolve(value):
        if not isinstance(value, _LazyTensor):
            return None
        pending = value.storage
        if pending.key not in storages:
            raise ValueError(f"{path}: storage {pending.key} referenced by the pickle is missing")
        storage = storages[pending.key]
        if pending.view:
            _, start, size = pending.view
            if start < 0 or size < 0 or start + size > storage.size:
                raise ValueError(f"{path}: storage view [{start}, {start + size}) outside storage {pending.key} "
                                 f"of {storage.size} elements")
            storage = storage[start : start + size]
        return _rebuild_tensor(_Storage(pending.key, storage), *value.args)

    return map_tree(obj, resolve, source=path)


def read_torch(path: str | os.PathLike, *, backend: str = "auto") -> Any:
    """The object saved in a ``.pth``/``.pt`` file, tensors as read-only numpy arrays.

    Args:
      path: the checkpoint file.
      backend: ``"jaxretina"`` (the built-in restricted reader), ``"torch"``
        (``torch.load(weights_only=True)``) or ``"auto"``: the built-in reader, and torch's
        loader (when installed) only for a file whose pickle names a ``torch`` global outside
        the built-in allowlist (torch's own allowlist may know it).  Both refuse any pickled
        global outside their allowlists, before it runs.

    The built-in reader checks every tensor's offset, sizes and strides against its storage
    before making a view (:func:`check_layout`), refuses BUILD instructions on the globals it
    allows, bounds compressed members by what their stored bytes can produce, and visits
    shared references once.  Its arrays are views of memory the reader owns, not of a mapping
    of the file: rewriting or truncating the file afterwards changes nothing.

    Why "auto" does not import torch just to read a file: measured on a DenseNet121 state
    dict (28 MB, ``benchmarks/conversion.py``), the built-in reader loads it in 0.04 s with no
    new imports, while the first ``torch.load`` in a process pays ~2.5 s and ~500 MB for
    importing torch.
    """
    path = os.fspath(path)
    if backend not in ("auto", "torch", "jaxretina"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'jaxretina'; found {backend!r}")
    if backend == "torch":
        return _read_with_torch(path)
    try:
        return _read_builtin(path)
    except UnknownGlobalError as err:
        if backend == "auto" and err.module.split(".")[0] == "torch" and importlib.util.find_spec("torch"):
            return _read_with_torch(path)
        raise


def _read_builtin(path: str) -> Any:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"read_torch: no file at {path}")
    try:
        if zipfile.is_zipfile(path):
            return _read_zip(path)
        with open(path, "rb") as fh:
            data = fh.read()
        return _read_legacy(path, data)
    except UnsafeCheckpointError as err:
        if str(err).startswith(path):
            raise
        raise UnsafeCheckpointError(f"{path}: {err}") from None
    except ValueError:
        raise
    except (pickle.UnpicklingError, EOFError, TypeError, AttributeError, IndexError, KeyError, struct.error,
            zipfile.BadZipFile, zlib.error, NotImplementedError, OverflowError, RecursionError, MemoryError,
            RuntimeError, OSError) as err:  # a damaged pickle or archive (zipfile and pickle errors)
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
        if not isinstance(value, torch.Tensor):
            return None
        t = value.detach().cpu()
        if t.dtype == torch.bfloat16:
            return t.view(torch.int16).numpy().view(_bfloat16())
        return t.numpy()

    return map_tree(obj, to_numpy, source=path)


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
    seen = set()
    while isinstance(obj, Mapping) and not _is_state_dict(obj) and id(obj) not in seen:
        seen.add(id(obj))
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
