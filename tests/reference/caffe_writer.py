"""Write DRIU ``.caffemodel`` files for tests with the protobuf runtime (see caffe_proto.py)."""

from __future__ import annotations

import numpy as np

from tests.reference.caffe_proto import messages

V1_ENUM = {"Convolution": 4, "Deconvolution": 39, "Pooling": 17, "ReLU": 18, "Crop": None,
           "Concat": 3, "Sigmoid": 19}


def _fill_blob(blob, arr: np.ndarray, *, legacy_shape: bool, double: bool) -> None:
    arr = np.asarray(arr)
    if legacy_shape:  # old files: 4-D num/channels/height/width, left-padded with 1s
        dims = (1,) * (4 - arr.ndim) + arr.shape
        blob.num, blob.channels, blob.height, blob.width = dims
    else:
        blob.shape.dim.extend(arr.shape)
    if double:
        blob.double_data.extend(arr.astype(np.float64).ravel().tolist())
    else:
        blob.data.extend(arr.astype(np.float32).ravel().tolist())


def driu_net_bytes(weights, *, v1=False, packed=True, legacy_shape=False, double=False,
                   crop_offsets=None, extra_layers=(), round_mode=None) -> bytes:
    """Serialize a DRIU training-style net: every layer (with and without blobs, duplicate
    ``crop`` names), Caffe names, the given weights; optional explicit crop offsets."""
    M = messages(packed)
    net = M["NetParameter"](name="DRIU")
    def layer(name, typ, bottoms, tops, blobs=(), conv=None, pool=None, crop=None):
        if v1:
            if V1_ENUM.get(typ) is None:
                return  # V1 has no Crop: skip parameter-less layers it cannot express
            l = net.layers.add(name=name, type=V1_ENUM[typ])
        else:
            l = net.layer.add(name=name, type=typ)
            l.fork_extra = "ignored by readers"
        l.bottom.extend(bottoms)
        l.top.extend(tops)
        for b in blobs:
            _fill_blob(l.blobs.add(), b, legacy_shape=legacy_shape, double=double)
        if conv:
            cp = l.convolution_param
            cp.num_output, cp.kernel_size[:], cp.stride[:], cp.pad[:] = conv
        if pool:
            l.pooling_param.pool, l.pooling_param.kernel_size, l.pooling_param.stride = 0, 2, 2
            if round_mode is not None:
                l.pooling_param.round_mode = round_mode
        if crop is not None and not v1:
            l.crop_param.axis = 2
            l.crop_param.offset.extend([crop])
    layer("data", "Input", [], ["data"])
    prev = "data"
    names = [n for n in weights if n.startswith("conv") and not n.endswith("_16")]
    stage_prev = None
    for n in names:
        stage = int(n[4])
        if stage_prev is not None and stage != stage_prev:
            layer(f"pool{stage_prev}", "Pooling", [prev], [f"pool{stage_prev}"], pool=True)
            prev = f"pool{stage_prev}"
        w, b = weights[n]
        layer(n, "Convolution", [prev], [n], [w, b], conv=(w.shape[0], [3], [1], [1]))
        layer(f"relu{n[4:]}", "ReLU", [n], [n])
        prev, stage_prev = n, stage
    concat = []
    for n in [k for k in weights if k.endswith("_16")]:
        w, b = weights[n]
        trunk = n[:-3]
        layer(n, "Convolution", [trunk], [n], [w, b], conv=(16, [3], [1], [1]))
        f = 2 ** (int(n[4]) - 1)
        if f == 1:
            concat.append(n)
            continue
        up = f"upsample{f}_"
        wd, bd = weights[up]
        k = wd.shape[-1]
        pad = 1 if f == 2 else 0
        layer(up, "Deconvolution", [n], [f"side-multi{f}-up"], [wd, bd], conv=(16, [k], [f], [pad]))
        off = None if crop_offsets is None else crop_offsets[{2: 0, 4: 1, 8: 2, 16: 3}[f]]
        layer("crop", "Crop", [f"side-multi{f}-up", "data"], [f"upside-multi{f}"], crop=off)
        concat.append(f"upside-multi{f}")
    for name, typ, blobs in extra_layers:
        layer(name, typ, ["data"], [name], blobs)
    layer("concat", "Concat", concat, ["concat-upscore"])
    w, b = weights["new-score-weighting"]
    layer("new-score-weighting", "Convolution", ["concat-upscore"], ["upscore-fuse"], [w, b],
          conv=(1, [1], [1], [0]))
    layer("sigmoid-fuse", "Sigmoid", ["upscore-fuse"], ["sigmoid-fuse"])
    return net.SerializeToString()
