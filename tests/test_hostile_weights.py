"""Crafted PyTorch and safetensors files: every one ends in a clear error, never a crash, a read
outside the file, a giant allocation, a hang, or a change to how later files are read."""

import zipfile

import numpy as np
import pytest

from converters.mapping import Entry, Report, assemble
from converters.safetensors import read_safetensors
from converters.torch import ALLOWED_GLOBALS, UnsafeCheckpointError, map_tree, read_torch, unwrap
from tests import crafted as c

FLOATS = np.arange(8, dtype="<f4")


def _one_tensor(tmp_path, offset, size, stride, *, legacy=False, numel=8):
    body = c.mapping({"w": c.tensor(c.storage("0", numel, legacy=legacy), offset, size, stride)})
    path = tmp_path / ("legacy.pth" if legacy else "crafted.pth")
    if legacy:
        c.legacy_checkpoint(path, body, {"0": (numel, FLOATS[:numel].tobytes())})
    else:
        c.zip_checkpoint(path, body, {"0": FLOATS[:numel].tobytes()})
    return path


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_crafted_files_round_trip_when_honest(tmp_path, legacy):
    # The crafting helpers themselves are right: an honest transposed view reads back as numpy
    # reads the same layout.
    path = _one_tensor(tmp_path, 1, (3, 2), (1, 3), legacy=legacy)
    got = read_torch(path, backend="jaxretina")["w"]
    np.testing.assert_array_equal(got, np.lib.stride_tricks.as_strided(FLOATS[1:], (3, 2), (4, 12)))
    assert not got.flags.writeable


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("offset,size,stride,message", [
    (7, (4,), (-1,), "strides must be positive"),          # would read before the storage
    (0, (4, 4), (0, 1), "strides must be positive"),
    (0, (3, 3), (1, 1), "overlap"),
    (-2, (2,), (1,), "non-negative"),
    (0, (-1, 2), (2, 1), "non-negative"),
    (5, (4,), (1,), "overruns its storage"),
    (0, (2, 3), (3,), "different lengths"),
])
def test_bad_layouts_are_refused_before_any_view(tmp_path, legacy, offset, size, stride, message):
    path = _one_tensor(tmp_path, offset, size, stride, legacy=legacy)
    with pytest.raises(ValueError, match=message):
        read_torch(path, backend="jaxretina")
    with pytest.raises(ValueError, match=message):
        read_torch(path, backend="auto")  # the built-in reader too, never a fallback to torch on it


def test_zero_strides_cannot_make_a_giant_array(tmp_path):
    # 32 bytes of storage describing a (10**6, 10**6) float tensor: refused in a process that
    # could not allocate it anyway (1 GiB cap), in well under the time limit.
    path = _one_tensor(tmp_path, 0, (10**6, 10**6), (0, 0))
    done = c.run_limited(f"""
        from converters.torch import read_torch
        try:
            read_torch({str(path)!r}, backend="jaxretina")
        except ValueError as err:
            print("refused:", err)
    """, memory_mb=1024, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout and "strides must be positive" in done.stdout


@pytest.mark.parametrize("state", ["dict", "slots"])
def test_build_on_an_allowed_global_is_refused(tmp_path, state):
    # BUILD on torch.FloatStorage would otherwise make every later file read its floats as int64.
    new_state = c.mapping({"dtype": c.call(c.glob("numpy", "dtype"), c.text("i8"), b"\x89", b"\x88")})
    arg = new_state if state == "dict" else c.tup(b"N", new_state)
    body = c.mapping({"x": c.glob("torch", "FloatStorage") + arg + b"b"})
    path = tmp_path / "build.pth"
    c.zip_checkpoint(path, body, {})
    with pytest.raises(UnsafeCheckpointError, match="BUILD"):
        read_torch(path, backend="jaxretina")
    assert ALLOWED_GLOBALS[("torch", "FloatStorage")].dtype == np.float32
    honest = _one_tensor(tmp_path, 0, (8,), (1,))
    np.testing.assert_array_equal(read_torch(honest, backend="jaxretina")["w"], FLOATS)


def test_build_on_a_storage_is_refused(tmp_path):
    body = c.mapping({"x": c.storage("0", 8) + c.mapping({"array": c.integer(0)}) + b"b"})
    path = tmp_path / "build_storage.pth"
    c.zip_checkpoint(path, body, {"0": FLOATS.tobytes()})
    with pytest.raises(UnsafeCheckpointError, match="BUILD"):
        read_torch(path, backend="jaxretina")


def _dag(levels: int) -> bytes:
    # L0 = []; L_k = [L_{k-1}, L_{k-1}] through the memo: 2**levels paths, ~8·levels bytes.
    body = b"]r" + (0).to_bytes(4, "little") + b"0"  # EMPTY_LIST, LONG_BINPUT 0, POP
    for k in range(1, levels + 1):
        prev = (k - 1).to_bytes(4, "little")
        body += b"(j" + prev + b"j" + prev + b"lr" + k.to_bytes(4, "little") + (b"0" if k < levels else b"")
    return body


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_shared_references_take_linear_time(tmp_path, legacy):
    body = c.mapping({"history": _dag(60), "w": c.tensor(c.storage("0", 8, legacy=legacy), 0, (8,), (1,))})
    path = tmp_path / "dag.pth"
    if legacy:
        c.legacy_checkpoint(path, body, {"0": (8, FLOATS.tobytes())})
    else:
        c.zip_checkpoint(path, body, {"0": FLOATS.tobytes()})
    done = c.run_limited(f"""
        from converters.formats import read_weights
        kind, state = read_weights({str(path)!r}, backend="jaxretina")
        print(sorted(state))
    """, memory_mb=1024, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['w']"


def test_cycles_are_errors_not_hangs():
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError, match="cycle"):
        map_tree({"a": loop}, lambda v: None)
    wrapper: dict = {}
    wrapper["model"] = wrapper
    with pytest.raises(ValueError, match="expected a state dict|no state dict"):
        unwrap(wrapper)


def test_compressed_members_are_bounded_by_their_stored_bytes(tmp_path):
    body = c.mapping({"w": c.tensor(c.storage("0", 8), 0, (8,), (1,))})
    honest = tmp_path / "deflated.pth"
    c.zip_checkpoint(honest, body, {"0": FLOATS.tobytes()}, compress=zipfile.ZIP_DEFLATED)
    np.testing.assert_array_equal(read_torch(honest, backend="jaxretina")["w"], FLOATS)
    bomb = tmp_path / "bomb.pth"
    c.zip_checkpoint(bomb, body, {"0": bytes(4 << 20)}, compress=zipfile.ZIP_DEFLATED)
    c.patch_zip_size(bomb, "archive/data/0", 3 << 30)  # claims 3 GiB from ~4 KiB
    with pytest.raises(ValueError, match="more than its compression can produce"):
        read_torch(bomb, backend="jaxretina")
    c.zip_checkpoint(tmp_path / "bz2.pth", body, {"0": FLOATS.tobytes()}, compress=zipfile.ZIP_BZIP2)
    with pytest.raises(ValueError, match="compression method"):
        read_torch(tmp_path / "bz2.pth", backend="jaxretina")


@pytest.mark.parametrize("fmt", ["zip", "legacy", "safetensors"])
def test_results_survive_the_file_changing_afterwards(tmp_path, fmt):
    if fmt == "safetensors":
        path = tmp_path / "w.safetensors"
        header = b'{"w": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}}'
        path.write_bytes(len(header).to_bytes(8, "little") + header + FLOATS.tobytes())
        state = read_safetensors(path)
    else:
        path = _one_tensor(tmp_path, 0, (2, 4), (4, 1), legacy=fmt == "legacy")
        state = read_torch(path, backend="jaxretina")
    path.write_bytes(b"\xff" * 16)  # rewritten in place (same inode), then truncated
    with open(path, "r+b") as fh:
        fh.truncate(0)
    np.testing.assert_array_equal(np.ravel(state["w"]), FLOATS)  # no SIGBUS, no new values


@pytest.mark.parametrize("dtype", ["bool", "int64", "uint8", "complex64", "float8_e4m3fn"])
def test_non_float_weights_are_errors_naming_the_key(dtype):
    import ml_dtypes

    arr = np.ones((2, 3), getattr(ml_dtypes, dtype, None) or np.dtype(dtype))
    like = {"params": {"dense": {"kernel": np.zeros((2, 3), np.float32)}}}
    with pytest.raises(ValueError, match=f"head.weight \\(-> params/dense/kernel\\) holds {dtype} values"):
        assemble(like, {"params/dense/kernel": Entry(arr, "head.weight")}, Report("test"), strict=True,
                 source="w.pth")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_other_float_weights_keep_loading(dtype):
    import ml_dtypes

    arr = np.linspace(-1, 1, 6).reshape(2, 3).astype(getattr(ml_dtypes, dtype, None) or np.dtype(dtype))
    like = {"params": {"dense": {"kernel": np.zeros((2, 3), np.float32)}}}
    out = assemble(like, {"params/dense/kernel": Entry(arr, "head.weight")}, Report("test"), strict=True,
                   source="w.pth")
    np.testing.assert_array_equal(np.asarray(out["params"]["dense"]["kernel"]), arr.astype(np.float32))
    bad = arr.astype(np.float64)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        assemble(like, {"params/dense/kernel": Entry(bad.astype(arr.dtype), "head.weight")}, Report("t"),
                 strict=True, source="w.pth")


def test_safetensors_negative_or_fractional_sizes(tmp_path):
    for shape in ("[-1, 8]", "[2.5]", "[true]"):
        header = ('{"w": {"dtype": "F32", "shape": %s, "data_offsets": [0, 32]}}' % shape).encode()
        path = tmp_path / "neg.safetensors"
        path.write_bytes(len(header).to_bytes(8, "little") + header + FLOATS.tobytes())
        with pytest.raises(ValueError, match="malformed"):
            read_safetensors(path)
