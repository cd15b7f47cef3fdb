"""Keras weight files read with h5py (no TensorFlow, no Keras), and their mapping onto
jaxretina's ResNet and VGG.

Formats (recognised by content):

* Keras 2 HDF5 weights (``vgg16_weights_tf_dim_ordering_tf_kernels.h5``,
  ``model.save_weights("x.h5")``; also a whole-model ``.h5`` whose weights sit in
  ``model_weights``): root attribute ``layer_names``; each layer a group whose attribute
  ``weight_names`` lists its arrays in the layer's order (``block1_conv1/kernel:0`` …);
* Keras 3 ``.weights.h5``: ``layers/<object name>/vars`` with attribute ``name`` (the layer's
  name) and datasets ``0``, ``1``, … in the layer's variable order (nested models under
  ``layers/<x>/layers/…``);
* a Keras 3 ``.keras`` archive (a zip holding ``config.json`` and ``model.weights.h5``): its
  weights file, read from memory.

Hostile files: only hard links are followed (an external or soft link, or a virtual or
externally stored dataset, could make HDF5 read other files), every array must be a float of
rank ≤ 5 and all arrays together at most :data:`MAX_BYTES` (and, unless compressed, no larger
than the file), each error naming the dataset.  libhdf5 itself parses the file: a file crafted
against libhdf5 is outside what Python can guard.

Layer order within a layer (Keras's, for every format): Conv2D/Dense ``[kernel, bias]`` (kernel
HWIO / (in, out), already jaxretina's layout), BatchNormalization ``[gamma, beta, moving_mean,
moving_variance]``.

Example::

    >>> weights = read_keras("vgg16_weights_tf_dim_ordering_tf_kernels.h5")
    >>> weights.format, [a.shape for a in weights.layers["block1_conv1"]]
    ('Keras 2 HDF5', [(3, 3, 3, 64), (64,)])
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from typing import Any, NamedTuple

import numpy as np

from converters.mapping import Entry, Report, assemble, expected_tree

__all__ = ["KerasWeights", "read_keras", "is_hdf5", "is_keras_archive", "resnet_from_keras", "vgg_from_keras",
           "MAX_BYTES", "HDF5_SIGNATURE"]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
MAX_BYTES = 8 << 30          # all arrays of one file together: larger than any Keras application (VGG19: 575 MB)
MAX_ARCHIVE_MEMBER = 4 << 30
_BN = ("gamma", "beta", "moving_mean", "moving_variance")


class KerasWeights(NamedTuple):
    """``layers``: ``{layer name: [arrays in the layer's order]}``; ``names``: the stored
    weight names when the file has them (Keras 2), else ``None`` per layer."""

    format: str
    layers: dict[str, list[np.ndarray]]
    names: dict[str, list[str] | None]


def is_hdf5(path: str | os.PathLike) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8) == HDF5_SIGNATURE


def is_keras_archive(path: str | os.PathLike) -> bool:
    """A ``.keras`` zip: ``config.json`` and ``model.weights.h5`` inside."""
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
    return {"config.json", "model.weights.h5"} <= names


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class _Reader:
    def __init__(self, source: str, file_bytes: int):
        self.source = source
        self.file_bytes = file_bytes
        self.total = 0

    def child(self, group, name: str):
        import h5py

        link = group.get(name, getlink=True)
        if link is None:
            raise ValueError(f"{self.source}: {group.name}/{name} is listed but absent")
        if not isinstance(link, h5py.HardLink):
            raise ValueError(f"{self.source}: {group.name}/{name} is a {type(link).__name__}; only arrays stored in "
                             f"the file itself are read")
        return group[name]

    def array(self, ds) -> np.ndarray:
        import h5py

        where = f"{self.source}: {ds.name}"
        if not isinstance(ds, h5py.Dataset):
            raise ValueError(f"{where}: expected an array (HDF5 dataset); found a group")
        if ds.is_virtual or ds.external:
            raise ValueError(f"{where}: a virtual or externally stored dataset; only arrays stored in the file are read")
        if ds.dtype.kind != "f" or ds.dtype.itemsize not in (2, 4, 8):
            raise ValueError(f"{where}: expected float16/32/64 weights; found dtype {ds.dtype}")
        if ds.ndim > 5:
            raise ValueError(f"{where}: expected an array of rank <= 5; found shape {ds.shape}")
        nbytes = int(np.prod(ds.shape, dtype=np.int64)) * ds.dtype.itemsize
        self.total += nbytes
        limit = MAX_BYTES if ds.compression else min(MAX_BYTES, self.file_bytes)
        if self.total > limit:
            raise ValueError(f"{where}: the arrays read so far hold {self.total} bytes, more than "
                             f"{'the file holds' if limit == self.file_bytes else f'the {MAX_BYTES}-byte limit'} "
                             f"({limit}); a truncated or crafted file")
        return np.asarray(ds[()]).astype(ds.dtype.newbyteorder("="), copy=False)


def _keras2(root, reader: _Reader) -> KerasWeights:
    layers, names = {}, {}
    for layer in (_text(n) for n in root.attrs["layer_names"]):
        group = reader.child(root, layer)
        weight_names = [_text(n) for n in group.attrs.get("weight_names", [])]
        layers[layer] = [reader.array(reader.child(group, w)) for w in weight_names]
        names[layer] = weight_names
    return KerasWeights("Keras 2 HDF5", layers, names)


def _keras3(root, reader: _Reader, layers=None, names=None) -> KerasWeights:
    layers = {} if layers is None else layers
    names = {} if names is None else names
    group = reader.child(root, "layers")
    for key in sorted(group):
        obj = reader.child(group, key)
        if "layers" in obj:
            _keras3(obj, reader, layers, names)      # a nested model's layers
        if "vars" not in obj:
            continue
        var = reader.child(obj, "vars")
        name = _text(var.attrs.get("name", key))
        order = sorted(var, key=lambda k: int(k) if k.isdigit() else -1)
        if any(not k.isdigit() for k in order):
            raise ValueError(f"{reader.source}: {var.name} holds {order}; expected datasets 0, 1, ...")
        if name in layers and order:
            raise ValueError(f"{reader.source}: two layers are named {name!r}")
        if order or name not in layers:
            layers[name] = [reader.array(reader.child(var, k)) for k in order]
            names[name] = None
    return KerasWeights("Keras 3 .weights.h5", layers, names)


def _read_h5(handle, source: str, file_bytes: int) -> KerasWeights:
    import h5py

    reader = _Reader(source, file_bytes)
    try:
        with h5py.File(handle, "r") as f:
            if "layer_names" in f.attrs:
                return _keras2(f, reader)
            if "model_weights" in f and "layer_names" in f["model_weights"].attrs:
                return _keras2(reader.child(f, "model_weights"), reader)
            if "layers" in f:
                return _keras3(f, reader)
            raise ValueError(f"{source}: an HDF5 file without Keras weights (expected a 'layer_names' attribute or "
                             f"a 'layers' group; found {sorted(f)[:8]})")
    except (OSError, KeyError, TypeError) as err:   # h5py's errors for damaged files
        raise ValueError(f"{source}: not a readable Keras HDF5 file ({type(err).__name__}: {err})") from err


def read_keras(path: str | os.PathLike) -> KerasWeights:
    """The weights of a Keras HDF5 file or ``.keras`` archive (see the module docstring)."""
    try:
        import h5py  # noqa: F401
    except ImportError as err:
        raise ImportError("reading Keras weights needs h5py: pip install 'jaxretina[keras]'") from err
    path = os.fspath(path)
    if is_keras_archive(path):
        with zipfile.ZipFile(path) as z:
            info = z.getinfo("model.weights.h5")
            if info.file_size > MAX_ARCHIVE_MEMBER:
                raise ValueError(f"{path}: model.weights.h5 claims {info.file_size} bytes, more than the "
                                 f"{MAX_ARCHIVE_MEMBER}-byte limit")
            data = z.read(info)
        return _read_h5(io.BytesIO(data), f"{path}!model.weights.h5", len(data))
    return _read_h5(path, path, os.path.getsize(path))


# -- mapping onto jaxretina's modules ----------------------------------------------------------

def _entries(weights: KerasWeights, plan: dict[str, tuple[str, str]], source: str, report: Report) -> dict:
    """Entries for :func:`~converters.mapping.assemble` from ``plan``: ``{keras layer: (flax
    module path, "conv" | "dense" | "bn")}``; layers without weights are skipped, others
    not in the plan are recorded as unexpected."""
    entries = {}
    leaves = {"conv": (("params", "kernel"), ("params", "bias")), "dense": (("params", "kernel"), ("params", "bias")),
              "bn": (("params", "scale"), ("params", "bias"), ("batch_stats", "mean"), ("batch_stats", "var"))}
    for layer, arrays in weights.layers.items():
        if not arrays:
            continue
        if layer not in plan:
            report.unexpected.append(layer)
            continue
        path, kind = plan[layer]
        stored = weights.names.get(layer)
        if kind == "bn" and stored and len(stored) == 4:
            wanted = [n.rsplit("/", 1)[-1].split(":")[0] for n in stored]
            if wanted != list(_BN):
                raise ValueError(f"{source}: {layer} stores {stored}; expected {list(_BN)} in this order")
        if len(arrays) != len(leaves[kind]) and not (kind in ("conv", "dense") and len(arrays) == 1):
            raise ValueError(f"{source}: layer {layer} holds {len(arrays)} arrays; a {kind} layer holds "
                             f"{len(leaves[kind])}")
        for (collection, leaf), arr in zip(leaves[kind], arrays):
            entries[f"{collection}/{path}/{leaf}"] = Entry(arr, f"{layer}[{leaves[kind].index((collection, leaf))}]",
                                                           tuple(arr.shape))
    return entries


def _finish(model, weights: KerasWeights, plan, source: str, what: str, options: dict):
    report = Report(source_format=f"{weights.format}, Keras applications {what} names", config=dict(options))
    report.notes["output"] = "logits: Keras's 'predictions' layer applies a softmax after them"
    report.notes["input"] = ("0..255 RGB pixels: Keras's 'caffe' preprocessing (BGR, minus the ImageNet mean) "
                             "happens inside the model" if options.get("input_bgr") else "as given")
    like = expected_tree(model)
    variables = assemble(like, _entries(weights, plan, source, report), report, strict=True, source=source)
    return model, variables, report


def _keras_options(weights: KerasWeights, options: dict, keras_input: dict) -> None:
    """Set (unless given) Keras's input convention, ``include_top`` (whether the file has the
    ``predictions`` layer) and ``num_classes`` (its width)."""
    for key, value in keras_input.items():
        options.setdefault(key, value)
    top = weights.layers.get("predictions")
    options.setdefault("include_top", bool(top))
    if "num_classes" not in options and top and np.ndim(top[0]) == 2:
        options["num_classes"] = int(np.shape(top[0])[1])


_RESNET_LAYER = re.compile(r"^conv([2-5])_block(\d+)_([0-3])_(conv|bn)$")


def resnet_from_keras(weights: KerasWeights, source: str, **options: Any):
    """``(model, variables, report)``: a Keras applications ResNet50/101/152 (Keras's options
    and input convention unless given)."""
    from converters.resnet import KERAS_INPUT, build
    from jaxretina.models.resnet import STAGES

    plan = {"conv1_conv": ("conv1", "conv"), "conv1_bn": ("bn1", "bn"), "predictions": ("fc", "dense")}
    counts = [0, 0, 0, 0]
    for layer in weights.layers:
        m = _RESNET_LAYER.match(layer)
        if not m:
            continue
        stage, block, k, kind = int(m.group(1)) - 1, int(m.group(2)) - 1, int(m.group(3)), m.group(4)
        counts[stage - 1] = max(counts[stage - 1], block + 1)
        module = f"downsample.{0 if kind == 'conv' else 1}" if k == 0 else f"{kind}{k}"
        plan[layer] = (f"layer{stage}.{block}/{module}", kind)
    depth = next((d for d, layout in STAGES.items() if layout == (True, tuple(counts))), None)
    _keras_options(weights, options, KERAS_INPUT)          # a "notop" file ends at conv5_block3_out
    return _finish(build(depth, source, options), weights, plan, source, "ResNet", options)


def vgg_from_keras(weights: KerasWeights, source: str, **options: Any):
    """``(model, variables, report)``: a Keras applications VGG16/VGG19 (Keras's input
    convention unless given)."""
    from converters.vgg import KERAS_INPUT, build
    from jaxretina.models.vgg import CONFIGS, layout_of

    convs = sum(bool(re.match(r"^block\d+_conv\d+$", n)) for n, arrays in weights.layers.items() if arrays)
    depth = next((d for d, cfg in CONFIGS.items() if sum(v != "M" for v in cfg) == convs), None)
    _keras_options(weights, options, KERAS_INPUT)          # a "notop" file ends at block5_pool
    model = build(depth, False, source, options)
    plan = {keras: (f"features.{i}", "conv") for kind, i, _, keras in layout_of(model.depth, False) if kind == "conv"}
    plan.update({"fc1": ("classifier.0", "dense"), "fc2": ("classifier.3", "dense"),
                 "predictions": ("classifier.6", "dense")})
    return _finish(model, weights, plan, source, "VGG", options)
