"""The .caffemodel decoder against files written by Google's protobuf runtime (an independent
encoder), plus hand-built wire bytes for what protobuf will not write (groups, mixed encodings),
and damaged files: every failure is a ValueError that says where, never a hang."""

import numpy as np
import pytest

from converters.caffe import DecodeError, read_caffemodel
from converters.wire import fields, varint
from tests.reference.caffe_proto import messages


def _tiny_net(*, packed=True, v1=False, legacy=False, double=False, seed=0):
    """A small net with conv/deconv/pool/crop parameters and odd-shaped blobs."""
    rng = np.random.default_rng(seed)
    blobs = {"conv_a": [rng.normal(size=(5, 3, 3, 2)).astype(np.float32), rng.normal(size=5).astype(np.float32)],
             "deconv_b": [rng.normal(size=(5, 4, 4, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)],
             "ip": [rng.normal(size=(7, 11)).astype(np.float32)]}
    M = messages(packed)
    net = M["NetParameter"](name="tiny")
    net.input.append("data")

    def add(name, typ, v1_type):
        if v1:
            return net.layers.add(name=name, type=v1_type)
        return net.layer.add(name=name, type=typ)

    for name, typ, code in (("conv_a", "Convolution", 4), ("deconv_b", "Deconvolution", 39), ("ip", "InnerProduct", 14)):
        layer = add(name, typ, code)
        layer.bottom.append("data")
        layer.top.append(name)
        for arr in blobs[name]:
            b = layer.blobs.add()
            if legacy:
                b.num, b.channels, b.height, b.width = (1,) * (4 - arr.ndim) + arr.shape
            else:
                b.shape.dim.extend(arr.shape)
            (b.double_data if double else b.data).extend(arr.ravel().tolist())
        if typ != "InnerProduct":
            cp = layer.convolution_param
            cp.num_output = blobs[name][0].shape[0 if typ == "Convolution" else 1]
            cp.kernel_size.extend([3] if typ == "Convolution" else [4])
            cp.stride.extend([1] if typ == "Convolution" else [2])
            cp.pad.extend([1])
    pool = add("pool1", "Pooling", 17)
    pool.pooling_param.pool, pool.pooling_param.kernel_size, pool.pooling_param.stride = 1, 3, 2
    pool.pooling_param.round_mode = 1
    if not v1:
        crop = net.layer.add(name="crop", type="Crop")
        crop.bottom.extend(["deconv_b", "data"])
        crop.crop_param.axis = 2
        crop.crop_param.offset.extend([3])
        net.layer[0].fork_extra = "a field number this reader does not know"
    return net.SerializeToString(), blobs


@pytest.mark.parametrize("kind", ["v2_packed", "v2_unpacked", "v1_unpacked_legacy", "v2_double", "v1_packed"])
def test_blobs_and_parameters_round_trip(kind):
    opts = {
        "v2_packed": {}, "v2_unpacked": {"packed": False},
        "v1_unpacked_legacy": {"packed": False, "v1": True, "legacy": True},
        "v2_double": {"double": True}, "v1_packed": {"v1": True},
    }[kind]
    data, blobs = _tiny_net(**opts)
    net = read_caffemodel(data)
    assert net.name == "tiny" and net.inputs == ("data",)
    assert net.format == ("V1" if opts.get("v1") else "V2")
    layers = net.by_name()
    for name, arrays in blobs.items():
        got = layers[name].blobs
        assert len(got) == len(arrays)
        for g, want in zip(got, arrays):
            # legacy files are 4-D (1, 1, out, in) for InnerProduct, (1, 1, 1, C) for biases
            want_shape = (1,) * (4 - want.ndim) + want.shape if opts.get("legacy") else want.shape
            assert g.shape == want_shape
            np.testing.assert_array_equal(g.reshape(want.shape), want)
            assert g.dtype == (np.float64 if opts.get("double") else np.float32)
    assert layers["conv_a"].type == "Convolution" and layers["deconv_b"].type == "Deconvolution"
    assert layers["conv_a"].convolution == {"num_output": 5, "bias_term": True, "kernel": (3, 3), "stride": (1, 1),
                                            "pad": (1, 1), "dilation": (1, 1), "group": 1}
    assert layers["deconv_b"].convolution["kernel"] == (4, 4) and layers["deconv_b"].convolution["stride"] == (2, 2)
    assert layers["pool1"].pooling["method"] == "AVE" and layers["pool1"].pooling["round_mode"] == "FLOOR"
    assert layers["pool1"].pooling["kernel"] == (3, 3) and layers["pool1"].pooling["stride"] == (2, 2)
    if not opts.get("v1"):
        assert layers["crop"].crop == {"axis": 2, "offset": (3,)}
        assert layers["crop"].bottoms == ("deconv_b", "data")


def _key(number, wire):
    return bytes(_varint_bytes((number << 3) | wire))


def _varint_bytes(v):
    out = []
    while True:
        out.append((v & 0x7F) | (0x80 if v > 0x7F else 0))
        v >>= 7
        if not out[-1] & 0x80:
            return out


def _len_field(number, payload):
    return _key(number, 2) + bytes(_varint_bytes(len(payload))) + payload


def test_mixed_encodings_unknown_fields_and_groups():
    # One BlobProto whose data arrives packed, then unpacked, then packed again (protobuf merges
    # repeated fields), surrounded by unknown fields of every wire type including a group.
    a = np.arange(5, dtype="<f4") * 0.5 - 1.0
    b = np.array([45.0, 2.0, np.float32(1.7e-38)], "<f4")  # 45.0 = 0x42340000; small floats hold 0x2d-like bytes
    c = np.arange(3, dtype="<f4") + 100
    unpacked = b"".join(_key(5, 5) + v.tobytes() for v in b)
    group = _key(77, 3) + _key(1, 0) + bytes([5]) + _key(77, 4)
    blob = (_key(99, 0) + bytes(_varint_bytes(300)) + _len_field(5, a.tobytes()) + unpacked + _key(98, 1) + bytes(8)
            + group + _len_field(5, c.tobytes()) + _key(97, 5) + bytes(4)
            + _len_field(7, _len_field(1, bytes(_varint_bytes(11)))))
    layer = _len_field(1, b"L") + _len_field(2, b"Convolution") + _len_field(7, blob)
    net = read_caffemodel(_len_field(100, layer))
    got = net.layers[0].blobs[0]
    np.testing.assert_array_equal(got, np.concatenate([a, b, c]))


def test_varint_limits():
    assert varint(bytes([0xAC, 0x02]), 0, 2, "x") == (300, 2)
    with pytest.raises(DecodeError, match="longer than 10 bytes"):
        varint(bytes([0xFF] * 12), 0, 12, "x")
    with pytest.raises(DecodeError, match="truncated varint"):
        list(fields(bytes([0x08, 0x80]), 0, 2, "x"))


def test_truncated_file_raises_value_error_with_position():
    data, _ = _tiny_net()
    cuts = sorted(set(np.linspace(1, len(data) - 1, 150).astype(int)))
    failures = 0
    for cut in cuts:
        try:
            read_caffemodel(data[:cut])
        except ValueError as err:
            failures += 1
            assert "byte" in str(err) or "no Caffe layers" in str(err), str(err)
    # Cutting inside a blob or a layer header must fail; only cuts between whole layers decode.
    assert failures >= len(cuts) - 6


def test_corrupt_bytes_never_raise_anything_but_value_error():
    data, _ = _tiny_net()
    rng = np.random.default_rng(1)
    for _ in range(200):
        damaged = bytearray(data)
        for pos in rng.integers(0, len(data), 3):
            damaged[pos] = rng.integers(0, 256)
        try:
            read_caffemodel(bytes(damaged))
        except ValueError:
            pass


def test_foreign_files_are_refused(tmp_path):
    from skimage import data as skdata
    import io
    from PIL import Image

    png = io.BytesIO()
    Image.fromarray(skdata.camera()[:32, :32]).save(png, format="PNG")
    with pytest.raises(ValueError):
        read_caffemodel(png.getvalue())
    with pytest.raises(ValueError, match="no Caffe layers"):
        read_caffemodel(b"\x48\x01")  # a valid message (unknown field 9) with no layers
    with pytest.raises(ValueError, match="blob shape"):
        blob = _len_field(7, _len_field(1, bytes(_varint_bytes(4)))) + _len_field(5, bytes(8))  # 4 dims, 2 floats
        read_caffemodel(_len_field(100, _len_field(1, b"x") + _len_field(7, blob)))


def test_interleaved_unpacked_floats_decode_in_linear_time(tmp_path):
    # 1.5 MB of one-float runs of `data` (field 5) interleaved with `diff` (field 6): every run
    # is one value.  A scan to the message's end per run is quadratic (0.8 MB took 10 s, so this
    # takes ~35 s); linear decoding takes ~1 s.  Bounded by the subprocess's timeout.
    n = 150_000
    values = np.arange(n, dtype="<f4")
    rec = np.zeros((n, 10), np.uint8)
    rec[:, 0], rec[:, 5] = _key(5, 5)[0], _key(6, 5)[0]
    rec[:, 1:5] = values.view(np.uint8).reshape(n, 4)
    blob = _len_field(7, _len_field(1, bytes(_varint_bytes(n)))) + rec.tobytes()
    path = tmp_path / "interleaved.caffemodel"
    path.write_bytes(_len_field(100, _len_field(1, b"L") + _len_field(7, blob)))
    from tests.crafted import run_limited

    done = run_limited(f"""
        import numpy as np
        from converters.caffe import read_caffemodel
        blob = read_caffemodel({str(path)!r}).layers[0].blobs[0]
        assert np.array_equal(blob, np.arange({n}, dtype=np.float32)), blob[:5]
        print("ok", blob.shape)
    """, memory_mb=2048, timeout=30)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"ok ({n},)"


@pytest.mark.parametrize("dims", [[1 << 32, 1 << 32], [(1 << 64) - 1, 2], [1 << 62, 4, 0]])
def test_overflowing_or_negative_shapes_are_decode_errors(dims):
    # int64 products of these wrap (2**64 -> 0, -1 * 2 -> -2): exact arithmetic refuses them.
    shape = b"".join(_key(1, 0) + bytes(_varint_bytes(d)) for d in dims)
    blob = _len_field(7, shape)
    with pytest.raises(DecodeError, match="shape.dim: (negative dimension|blob shape)"):
        read_caffemodel(_len_field(100, _len_field(1, b"x") + _len_field(7, blob)))
