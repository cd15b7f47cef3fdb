"""DRIU weights from the published Caffe models and from the deepdraw (bob.ip.binseg) port.

Caffe (``DRIU_DRIVE.caffemodel`` …, :func:`from_caffe`): layers are matched by name as Caffe
does (``conv1_1`` … ``conv5_3``, ``convX_Y_16``, ``upsample2_`` … ``upsample16_``,
``new-score-weighting``).  Convolution blobs (O, I, kh, kw) become HWIO kernels; Deconvolution
blobs (I, O, kh, kw) are transposed to (kh, kw, I, O) *without* a flip (the model flips).  The
variant is the one whose layers the file holds (``conv5_3`` → optic disc).  Model options come
from the file where it says them: a pooling layer with ``round_mode: FLOOR`` sets
``ceil_mode=False``; Crop layers with explicit offsets set ``crop_offsets``; the deconvolution
paddings set ``upsample_padding``.  Layers the model has no place for are ignored (Caffe's
rule) and recorded in the report.

deepdraw (``{"model": state_dict}``, :func:`from_deepdraw`): keys
``backbone.features.{i}`` (torchvision VGG16 indices), ``head.conv1_2_16``,
``head.upsample{f}.conv`` / ``.upconv``, ``head.concatfuse.conv``, and optional
``normalizer.mean`` / ``normalizer.std`` buffers, which become the ``normalization`` option
(a file without them has no normalisation; the report's notes say which).
The port's other differences are :data:`jaxretina.models.driu.DEEPDRAW_OPTIONS`.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import jax.numpy as jnp

from converters.caffe import CaffeNet
from converters.mapping import Entry, Report, assemble, conv_kernel, deconv_kernel, expected_tree
from jaxretina.models.driu import UPSAMPLE_GEOMETRY, UPSAMPLE_FACTORS, VGG_STAGES, DEEPDRAW_OPTIONS, DRIU, VARIANTS

__all__ = ["from_weights", "from_caffe", "from_deepdraw", "is_deepdraw", "reference"]



def _trunk_convs(variant: str) -> list[str]:
    return [f"conv{s}_{i}" for s, depth, _ in VGG_STAGES[: VARIANTS[variant]["stages"]] for i in range(1, depth + 1)]


def _side_names(variant: str) -> list[tuple[int, str]]:
    return [(stage, f"conv{stage}_{VGG_STAGES[stage - 1][1]}_16") for stage in VARIANTS[variant]["sides"]]


def _caffe_config(net: CaffeNet, variant: str) -> dict[str, Any]:
    """Model options stated by the file's own layer parameters."""
    layers = net.by_name()
    config: dict[str, Any] = {}
    pools = [l.pooling for l in net.layers if l.type == "Pooling" and l.pooling]
    if pools and any(p["round_mode"] == "FLOOR" for p in pools):
        config["ceil_mode"] = False
    used = [2 ** (stage - 1) for stage, _ in _side_names(variant) if stage > 1]
    padding = dict(zip(UPSAMPLE_FACTORS, DRIU.upsample_padding))
    offsets = dict(zip(UPSAMPLE_FACTORS, DRIU.crop_offsets))
    top_to_factor = {}
    for f in used:
        layer = layers.get(f"upsample{f}_")
        if layer is not None and layer.convolution:
            padding[f] = layer.convolution["pad"][0]
            kernel, stride = UPSAMPLE_GEOMETRY[f]
            found = (layer.convolution["kernel"], layer.convolution["stride"])
            if found != ((kernel, kernel), (stride, stride)):
                raise ValueError(f"layer upsample{f}_: kernel {found[0]} stride {found[1]} in the file; DRIU's "
                                 f"upsample{f} is a {kernel}x{kernel} transposed convolution with stride {stride}")
        if layer is not None:
            top_to_factor.update(dict.fromkeys(layer.tops, f))
    for l in net.layers:  # Crop layers (all named "crop") are told apart by their bottom blob
        if l.type == "Crop" and l.crop and l.crop["offset"] and l.bottoms and l.bottoms[0] in top_to_factor:
            offsets[top_to_factor[l.bottoms[0]]] = l.crop["offset"][0]
    if tuple(padding.values()) != DRIU.upsample_padding:
        config["upsample_padding"] = tuple(padding.values())
    if tuple(offsets.values()) != DRIU.crop_offsets:
        config["crop_offsets"] = tuple(offsets.values())
    return config


def from_caffe(net: CaffeNet, source: str, **model_kwargs: Any) -> tuple[DRIU, dict, Report]:
    """``(model, variables, report)`` from a decoded ``.caffemodel``.

    ``model_kwargs`` override the options read from the file (``variant`` included).
    """
    layers = net.by_name()
    variant = model_kwargs.pop("variant", "optic_disc" if "conv5_3" in layers else "vessel")
    config = {"variant": variant, **_caffe_config(net, variant)}
    config.update(model_kwargs)
    model = DRIU(**config)
    report = Report(source_format=f"caffemodel ({net.format})", config={k: v for k, v in config.items()})
    entries: dict[str, Entry] = {}
    hints: dict[str, str] = {}
    claimed = set()

    def take(caffe_name: str, flax_name: str, transform) -> None:
        hints[f"params/{flax_name}/kernel"] = f"layer {caffe_name!r} blob0"
        hints[f"params/{flax_name}/bias"] = f"layer {caffe_name!r} blob1"
        layer = layers.get(caffe_name)
        if layer is None or not layer.blobs:
            return  # reported as missing by assemble
        claimed.add(caffe_name)
        entries[f"params/{flax_name}/kernel"] = Entry(transform(layer.blobs[0]), f"{caffe_name}/blob0",
                                                      layer.blobs[0].shape)
        if len(layer.blobs) > 1:
            entries[f"params/{flax_name}/bias"] = Entry(np.asarray(layer.blobs[1]).reshape(-1), f"{caffe_name}/blob1")
        if len(layer.blobs) > 2:
            report.unexpected.append(f"{caffe_name}/blob2..{len(layer.blobs) - 1}")

    for name in _trunk_convs(variant) + [n for _, n in _side_names(model.variant)]:
        take(name, name, conv_kernel)
    for stage, _ in _side_names(model.variant):
        if stage > 1:
            f = 2 ** (stage - 1)
            take(f"upsample{f}_", f"upsample{f}", deconv_kernel)
    take("new-score-weighting", "new_score_weighting", conv_kernel)
    report.unexpected += [l.name for l in net.layers if l.blobs and l.name not in claimed]
    like = expected_tree(model)
    variables = assemble(like, entries, report, strict=False, source=source, hints=hints)
    return model, variables, report


def is_deepdraw(state: Mapping[str, Any]) -> bool:
    """Whether a state dict uses the deepdraw DRIU key scheme."""
    return any(k.startswith("head.concatfuse.") for k in state)


def _vgg_index(stage: int, i: int) -> int:
    # torchvision VGG16 `features` indices of the convolutions: conv, ReLU pairs, a pool after
    # each stage: 0,2 | 5,7 | 10,12,14 | 17,19,21 | 24,26,28.
    start = {1: 0, 2: 5, 3: 10, 4: 17, 5: 24}[stage]
    return start + 2 * (i - 1)


def from_deepdraw(state: Mapping[str, np.ndarray], source: str, **model_kwargs: Any) -> tuple[DRIU, dict, Report]:
    """``(model, variables, report)`` from a deepdraw DRIU state dict (wrappers already removed)."""
    heads = {int(k.split(".")[1][len("upsample"):]) for k in state if k.startswith("head.upsample")}
    variant = model_kwargs.pop("variant", "optic_disc" if 16 in heads else "vessel")
    config: dict[str, Any] = {"variant": variant, **DEEPDRAW_OPTIONS}
    ignored = []
    # Follow the file: deepdraw's driu(pretrained_backbone=True) holds a normaliser module
    # (ImageNet mean/std buffers); driu(pretrained_backbone=False) has none and takes its input
    # as it is.  Assuming ImageNet normalisation for the latter changed outputs by 1.6-2.7x.
    if "normalizer.mean" in state and "normalizer.std" in state:
        mean = np.asarray(state["normalizer.mean"], np.float64).reshape(-1)
        std = np.asarray(state["normalizer.std"], np.float64).reshape(-1)
        config["normalization"] = (tuple(float(v) for v in mean), tuple(float(v) for v in std))
        ignored += ["normalizer.mean", "normalizer.std"]
        how = "from the file's normalizer.mean / normalizer.std: (x - mean) / std inside the model"
    else:
        config["normalization"] = None
        how = "none: the file has no normalizer.* keys (deepdraw's driu(pretrained_backbone=False))"
    if "normalization" in model_kwargs:
        how = "given by the caller (normalization=...)"
    config.update(model_kwargs)
    model = DRIU(**config)
    report = Report(source_format="deepdraw DRIU state dict", ignored=ignored, config=dict(config),
                    notes={"normalization": how})
    entries: dict[str, Entry] = {}
    hints: dict[str, str] = {}

    def add(prefix: str, flax_name: str, transform) -> None:
        for suffix, leaf in (("weight", "kernel"), ("bias", "bias")):
            key = f"{prefix}.{suffix}"
            hints[f"params/{flax_name}/{leaf}"] = key
            if key in state:
                arr = np.asarray(state[key])
                entries[f"params/{flax_name}/{leaf}"] = Entry(transform(arr) if leaf == "kernel" else arr, key, arr.shape)

    for stage, depth, _ in VGG_STAGES[: VARIANTS[variant]["stages"]]:
        for i in range(1, depth + 1):
            add(f"backbone.features.{_vgg_index(stage, i)}", f"conv{stage}_{i}", conv_kernel)
    for stage, side in _side_names(variant):
        if stage == 1:
            add("head.conv1_2_16", side, conv_kernel)
        else:
            f = 2 ** (stage - 1)
            add(f"head.upsample{f}.conv", side, conv_kernel)
            add(f"head.upsample{f}.upconv", f"upsample{f}", deconv_kernel)
    add("head.concatfuse.conv", "new_score_weighting", conv_kernel)
    used = {e.source for e in entries.values()} | set(ignored)
    # The port's VGG keeps conv5 even for the vessel head, which never uses it: skip those.
    vgg_unused = {f"backbone.features.{_vgg_index(5, i)}.{s}" for i in (1, 2, 3) for s in ("weight", "bias")}
    for key in state:
        if key in used:
            continue
        if variant == "vessel" and key in vgg_unused:
            report.ignored.append(key)
        else:
            report.unexpected.append(key)
    like = expected_tree(model)
    variables = assemble(like, entries, report, strict=True, source=source, hints=hints)
    return model, variables, report


def reference(model: DRIU, state: Any) -> str:
    """Why ``jaxretina convert`` has no parity reference for DRIU (see tests/reference/driu_torch.py)."""
    return ("no installable reference implementation of DRIU; tests/reference/driu_torch.py checks the "
            "converter on random weights")


def from_weights(kind: str, content: Any, source: str, **model_kwargs: Any) -> tuple[DRIU, dict, Report]:
    """Dispatch for :func:`jaxretina.load`: a decoded ``.caffemodel`` or a deepdraw state dict."""
    if kind == "caffemodel":
        return from_caffe(content, source, **model_kwargs)
    if kind == "keras":
        raise ValueError(f"{source}: a Keras weights file; DRIU weights come from Caffe (.caffemodel) or deepdraw "
                         f"(.pth/.pt/.safetensors)")
    if is_deepdraw(content):
        return from_deepdraw(content, source, **model_kwargs)
    raise ValueError(f"{source}: a {kind} state dict without DRIU keys (expected the deepdraw scheme: "
                     f"head.concatfuse.conv.weight, ...; found e.g. {sorted(content)[:5]})")
