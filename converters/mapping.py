"""Assemble Flax variables from named source arrays, checking every key in one pass.

Each converter turns a foreign file into ``{flax_path: Entry(array, source_key)}`` (already in
Flax layout: HWIO kernels, ``scale``/``bias``/``mean``/``var``) plus the source keys it did not
map.  :func:`assemble` compares that against the model's expected variable tree and raises one
``ValueError`` listing **every** missing, unexpected and mis-shaped key, so a user fixes a
foreign checkpoint in one round trip.

Flax paths are ``/``-joined: ``"params/conv1_1/kernel"``, ``"batch_stats/features/norm0/mean"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np
import jax
import flax.traverse_util as tu

from jaxretina.checkpoint import expected_variables as expected_tree
from jaxretina.validate import check_weight_dtype

__all__ = ["Entry", "Report", "assemble", "expected_tree", "conv_kernel", "deconv_kernel", "torch_entries"]


class Entry(NamedTuple):
    """A converted array and the source key (or Caffe ``layer/blob``) it came from."""

    array: np.ndarray
    source: str
    source_shape: tuple[int, ...] | None = None  # before the layout change, for error messages


@dataclass
class Report:
    """What a conversion did: the key mapping and anything left out (recorded in JSON)."""

    source_format: str
    mapped: dict[str, str] = field(default_factory=dict)      # flax path -> source key
    ignored: list[str] = field(default_factory=list)          # source keys deliberately skipped
    unexpected: list[str] = field(default_factory=list)       # source keys nobody claimed
    config: dict[str, Any] = field(default_factory=dict)      # model options read from the file
    notes: dict[str, str] = field(default_factory=dict)       # how the file's conventions were read

    def summary(self) -> dict[str, Any]:
        return {
            "source_format": self.source_format,
            "notes": dict(self.notes),
            "mapped": len(self.mapped),
            "ignored": sorted(self.ignored),
            "unexpected": sorted(self.unexpected),
            "config_from_file": self.config,
            "mapping": dict(sorted(self.mapped.items())),
        }


def conv_kernel(w: np.ndarray) -> np.ndarray:
    """Caffe / PyTorch convolution weight (O, I, *spatial) -> Flax (*spatial, I, O).

    Arrays of rank < 3 are returned as they are (the shape check then reports them)."""
    if w.ndim < 3:
        return w
    nd = w.ndim - 2
    return np.transpose(w, tuple(range(2, 2 + nd)) + (1, 0))


def deconv_kernel(w: np.ndarray) -> np.ndarray:
    """Caffe Deconvolution / PyTorch ConvTranspose weight (I, O, *spatial) -> (*spatial, I, O).

    A plain transpose: :class:`jaxretina.models.layers.CaffeDeconv` flips the kernel itself.
    Arrays of rank < 3 are returned as they are.
    """
    if w.ndim < 3:
        return w
    nd = w.ndim - 2
    return np.transpose(w, tuple(range(2, 2 + nd)) + (0, 1))


def assemble(like: Mapping[str, Any], entries: Mapping[str, Entry], report: Report, *,
             strict: bool, source: str, hints: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Variables with the structure of ``like`` filled from ``entries``.

    Args:
      like: expected variables (arrays or ``ShapeDtypeStruct``), e.g. from :func:`expected_tree`.
      entries: ``{"params/conv1_1/kernel": Entry(array, "conv1_1/blob0"), ...}``.
      report: the conversion report; its ``unexpected`` keys are listed in any error, and make
        the conversion fail when ``strict``.
      strict: fail on unexpected source keys (PyTorch ``load_state_dict`` semantics); Caffe
        loads by name and ignores unknown layers, so its converter passes ``False`` and the keys
        are only recorded.
      source: the file, for error messages.
      hints: ``{flax path: source key it should come from}``, shown for missing entries.

    Returns:
      a nested dict of ``jax.Array`` on the default device, dtypes of ``like``.
    """
    want = tu.flatten_dict(dict(like), sep="/")
    missing = sorted(set(want) - set(entries))
    extra = sorted(set(entries) - set(want))
    misshaped = sorted(
        f"{path} (from {entries[path].source}): expected {tuple(want[path].shape)}, "
        f"found {tuple(entries[path].array.shape)}"
        + (f" (source shape {entries[path].source_shape})" if entries[path].source_shape else "")
        for path in set(want) & set(entries)
        if tuple(want[path].shape) != tuple(entries[path].array.shape)
    )
    unexpected = sorted(report.unexpected) + [f"{entries[p].source} (-> {p})" for p in extra]
    if missing or misshaped or (strict and unexpected) or extra:
        hints = hints or {}
        missing_desc = [f"{hints[p]} (-> {p} {tuple(want[p].shape)})" if p in hints else
                        f"{p} {tuple(want[p].shape)}" for p in missing]
        raise ValueError(
            f"{source}: weights do not match the model. "
            f"missing {len(missing)}: {missing_desc or 'none'}; "
            f"unexpected {len(unexpected)}: {unexpected or 'none'}; "
            f"mis-shaped {len(misshaped)}: {misshaped or 'none'}"
        )
    host = {}
    for path, spec in want.items():
        given = entries[path].array
        check_weight_dtype(given.dtype, spec.dtype, f"{source}: {entries[path].source} (-> {path})")
        arr = np.asarray(given, dtype=spec.dtype)
        if arr.flags.writeable and np.may_share_memory(arr, given):
            # On the CPU, device_put may alias host memory: a caller's writable arrays (e.g.
            # tensor.numpy() of a model that keeps training) would change the variables later.
            # Our own readers hand out read-only views of the file's bytes: those stay zero-copy.
            arr = arr.copy()
        if not _all_finite(arr):
            raise ValueError(f"{source}: {entries[path].source} (-> {path}) holds NaN or infinite values")
        host[path] = arr
        report.mapped[path] = entries[path].source
    paths = list(host)
    on_device = jax.device_put([host[p] for p in paths])  # one transfer call for all arrays
    return tu.unflatten_dict(dict(zip(paths, on_device)), sep="/")


def _all_finite(arr: np.ndarray) -> bool:
    # One float64 pass without a temporary: a float32/16 sum cannot overflow float64, so a
    # non-finite sum means a NaN or inf in the data (confirmed elementwise for float64 input).
    if arr.dtype.kind != "f":
        return True
    total = arr.sum(dtype=np.float64)
    return bool(np.isfinite(total)) or (arr.dtype.itemsize == 8 and bool(np.isfinite(arr).all()))


# Flax leaf -> PyTorch parameter / buffer name.
_TORCH_LEAF = {("params", "kernel"): "weight", ("params", "scale"): "weight", ("params", "bias"): "bias",
               ("batch_stats", "mean"): "running_mean", ("batch_stats", "var"): "running_var"}


def torch_entries(like: Mapping[str, Any], state: Mapping[str, np.ndarray], report: Report, *,
                  ignore_suffixes: tuple[str, ...] = ("num_batches_tracked",)) -> tuple[dict, dict]:
    """Entries for a model whose Flax module paths are the PyTorch module paths.

    ``params/a/b/kernel`` ← ``a.b.weight`` (convolutions (O, I, *k) → (*k, I, O); linear
    (O, I) → (I, O)); ``scale`` ← ``weight``; ``bias`` ← ``bias``; ``batch_stats/…/mean`` /
    ``var`` ← ``running_mean`` / ``running_var``.  Source keys ending in ``ignore_suffixes``
    are recorded as ignored; any other unclaimed key is recorded as unexpected.

    Returns ``(entries, hints)`` for :func:`assemble`.
    """
    entries, hints = {}, {}
    for path, spec in tu.flatten_dict(dict(like), sep="/").items():
        collection, *modules, leaf = path.split("/")
        name = _TORCH_LEAF.get((collection, leaf))
        if name is None:
            continue  # assemble reports it as missing
        key = ".".join(modules + [name])
        hints[path] = key
        if key not in state:
            continue
        arr = np.asarray(state[key])
        if leaf == "kernel" and arr.ndim == len(spec.shape):
            arr = conv_kernel(arr) if arr.ndim >= 3 else arr.T
        entries[path] = Entry(arr, key, tuple(np.shape(state[key])))
    claimed = {e.source for e in entries.values()}
    for key in state:
        if key in claimed:
            continue
        (report.ignored if key.endswith(ignore_suffixes) else report.unexpected).append(key)
    return entries, hints


def torch_variables(model: Any, state: Mapping[str, np.ndarray], report: Report, source: str) -> dict:
    """Variables of ``model`` from a PyTorch state dict whose keys are its module paths
    (:func:`torch_entries`), strictly: every missing, unexpected or mis-shaped key in one error."""
    like = expected_tree(model)
    entries, hints = torch_entries(like, state, report)
    return assemble(like, entries, report, strict=True, source=source, hints=hints)


def widths_from_keys(state: Mapping[str, Any], options: dict, *, top: str, first: str) -> dict:
    """``options`` with, unless given, ``num_classes`` (the rows of the linear weight ``top``)
    and ``in_channels`` (the input channels of the convolution weight ``first``) read from a
    PyTorch state dict."""
    if "num_classes" not in options and np.ndim(state.get(top)) == 2:
        options["num_classes"] = int(np.shape(state[top])[0])
    if "in_channels" not in options and np.ndim(state.get(first)) == 4:
        options["in_channels"] = int(np.shape(state[first])[1])   # e.g. MONAI's DenseNet121(in_channels=1)
    return options


def torch_or_keras(kind: str, content: Any, source: str, options: dict, *, from_state_dict: Callable,
                   keras_mapping: str, model: str, recognised: Callable[[Any], bool], keys: str, example: str):
    """Dispatch of a converter that reads torchvision state dicts and Keras files:
    ``converters.keras.<keras_mapping>`` for a Keras file, else ``from_state_dict`` after
    :func:`require_state_dict`."""
    if kind == "keras":
        from converters import keras

        return getattr(keras, keras_mapping)(content, source, **options)
    require_state_dict(kind, content, source, model=model, recognised=recognised, keys=keys, example=example)
    return from_state_dict(content, source, **options)


def require_state_dict(kind: str, content: Any, source: str, *, model: str, recognised: Callable[[Any], bool],
                       keys: str, example: str) -> None:
    """The error for a weight file that is not a PyTorch state dict of ``model``: a
    ``.caffemodel``, or a state dict that ``recognised`` rejects (``keys``: what it looks for,
    ``example``: how such keys start)."""
    if kind in ("caffemodel", "keras"):
        raise ValueError(f"{source}: a {'.caffemodel' if kind == 'caffemodel' else 'Keras weights file'}; {model} "
                         f"weights come from PyTorch (.pth/.pt/.safetensors)")
    if not recognised(content):
        raise ValueError(f"{source}: a {kind} state dict without {keys} keys (expected {example}; "
                         f"found e.g. {sorted(content)[:5]})")
