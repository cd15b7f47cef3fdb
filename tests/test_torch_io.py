"""PyTorch and safetensors readers against files written by torch and safetensors themselves;
checkpoints that would run code are refused before anything in them runs."""

import collections
import shutil
import struct
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from converters.formats import read_weights, sniff  # noqa: E402
from converters.safetensors import read_safetensors  # noqa: E402
from converters.torch import UnsafeCheckpointError, read_torch, unwrap  # noqa: E402

BACKENDS = ["jaxretina", "torch"]


def _tensors():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 6, generator=g)
    return collections.OrderedDict(
        f32=a, f64=torch.randn(3, dtype=torch.float64, generator=g), f16=torch.randn(5, generator=g).half(),
        bf16=torch.randn(2, 3, generator=g).to(torch.bfloat16), i64=torch.arange(7), u8=torch.arange(4).to(torch.uint8),
        transposed=a.t(), row=a[2], strided=a[:, ::2], scalar=torch.tensor(2.5), empty=torch.zeros(0, 3),
        conv=torch.randn(8, 3, 3, 3, generator=g))


def _check(state, want):
    assert set(state) >= set(want)
    for k, v in want.items():
        got = state[k]
        assert got.shape == tuple(v.shape), k
        assert got.dtype.itemsize == v.element_size(), k
        np.testing.assert_array_equal(np.asarray(got, np.float64), v.double().numpy(), err_msg=k)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_state_dict_round_trip(tmp_path, legacy, backend):
    want = _tensors()
    param = torch.nn.Parameter(torch.ones(2, 2))
    obj = {"state_dict": {**{f"module.{k}": v for k, v in want.items()}, "module.param": param},
           "epoch": 7, "history": [0.5, (1, "a")]}
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    raw = read_torch(path, backend=backend)
    assert raw["epoch"] == 7 and list(raw["history"][1]) == [1, "a"]
    state = unwrap(raw)
    _check(state, {**want, "param": param.detach()})
    assert sniff(str(path)) == "pytorch"


@pytest.mark.parametrize("wrapper", ["plain", "model", "model_prefix", "nested"])
def test_unwrap_variants(wrapper):
    sd = {"features.conv0.weight": np.zeros((2, 3))}
    obj = {"plain": sd, "model": {"model": sd, "epoch": 1},
           "model_prefix": {f"model.{k}": v for k, v in sd.items()},
           "nested": {"model": {"state_dict": {f"module.model.{k}": v for k, v in sd.items()}}}}[wrapper]
    assert list(unwrap(obj)) == ["features.conv0.weight"]


def test_unwrap_errors():
    with pytest.raises(ValueError, match="no state dict found; top-level keys \\['epoch', 'optimizer'\\]"):
        unwrap({"epoch": 1, "optimizer": {"lr": 0.1}})
    with pytest.raises(ValueError, match="expected a state dict"):
        unwrap([1, 2])


class _Payload:
    """Pickles as shutil.copyfile(__file__, marker): loading it with plain pickle creates a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (shutil.copyfile, (__file__, self.marker))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_code_in_pickle_is_refused_before_it_runs(tmp_path, legacy, backend):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"extra": _Payload(marker), "state_dict": {"w": torch.zeros(2)}}, path,
               _use_new_zipfile_serialization=not legacy)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError, match="copyfile"):
        read_torch(path, backend=backend)
    assert not marker.exists()
    # The payload is live: an unrestricted unpickler would have created the file.
    if not legacy:
        import io
        import pickle

        class Loose(pickle.Unpickler):
            def persistent_load(self, pid):
                return None

        with zipfile.ZipFile(path) as zf:
            name = next(n for n in zf.namelist() if n.endswith("data.pkl"))
            with pytest.raises(AttributeError):  # after the payload ran: no storages here
                Loose(io.BytesIO(zf.read(name))).load()
        assert marker.exists()


def test_missing_storage_and_foreign_zip(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"w": torch.ones(3)}, path)
    damaged = tmp_path / "damaged.pth"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(damaged, "w") as dst:
        for item in src.infolist():
            if "/data/" not in item.filename:
                dst.writestr(item, src.read(item))
    with pytest.raises(ValueError, match="storage 0 referenced by the pickle is missing"):
        read_torch(damaged, backend="jaxretina")
    # One flipped byte inside a tensor's storage: the CRC-32 of the zip entry catches it.
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("/data/0"))
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len  # the local header's own lengths
    data[start + 5] ^= 0xFF
    (tmp_path / "flipped.pth").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="CRC-32"):
        read_torch(tmp_path / "flipped.pth", backend="jaxretina")
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        read_torch(other, backend="jaxretina")
    legacy = tmp_path / "legacy.pth"
    torch.save({"w": torch.ones(300)}, legacy, _use_new_zipfile_serialization=False)
    data = legacy.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match="truncated"):
        read_torch(tmp_path / "cut.pth", backend="jaxretina")


def test_safetensors_round_trip_and_errors(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    want = {k: v.clone().contiguous() for k, v in _tensors().items() if k not in ("empty",)}
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_file({f"model.{k}": v for k, v in want.items()}, str(path), metadata={"format": "pt"})
    assert sniff(str(path)) == "safetensors"
    kind, state = read_weights(path)
    assert kind == "safetensors"
    _check(state, want)  # "model." prefix removed
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-10])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_safetensors(tmp_path / "cut.safetensors")
    (tmp_path / "bad.safetensors").write_bytes((10).to_bytes(8, "little") + b"{not json}")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_safetensors(tmp_path / "bad.safetensors")


def test_auto_backend_and_damaged_files_give_value_errors(tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"w": torch.arange(6.0)}, path)
    np.testing.assert_array_equal(read_torch(path)["w"], np.arange(6.0, dtype=np.float32))
    data = path.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    for backend in ("auto", "torch", "jaxretina"):
        with pytest.raises(ValueError):
            read_torch(tmp_path / "cut.pth", backend=backend)
    with pytest.raises(ValueError, match="backend must be"):
        read_torch(path, backend="pickle")


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_damaged_checkpoints_raise_only_clear_errors(tmp_path, legacy):
    path = tmp_path / "small.pth"
    torch.save({"state_dict": {"a.weight": torch.randn(3, 2), "a.bias": torch.randn(3)}, "epoch": 1}, path,
               _use_new_zipfile_serialization=not legacy)
    data = path.read_bytes()
    rng = np.random.default_rng(0)
    damaged = tmp_path / "damaged.pth"
    cases = [data[:cut] for cut in rng.integers(1, len(data), 40)]
    for _ in range(60):
        flipped = bytearray(data)
        for pos in rng.integers(0, len(data), 2):
            flipped[pos] ^= int(rng.integers(1, 256))
        cases.append(bytes(flipped))
    for blob in cases:
        damaged.write_bytes(blob)
        try:
            read_torch(damaged, backend="jaxretina")
        except (ValueError, UnsafeCheckpointError):
            pass
