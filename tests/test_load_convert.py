"""jaxretina.load and `jaxretina convert`: formats recognised by content, records, reloading,
and clear errors for the wrong file, the wrong model and damaged files."""

import hashlib
import json

import numpy as np
import pytest
import jax
import jax.numpy as jnp

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import jaxretina  # noqa: E402
from jaxretina.cli import main  # noqa: E402
from tests.reference.caffe_writer import driu_net_bytes  # noqa: E402
from tests.reference.driu_torch import random_driu_weights  # noqa: E402

SMALL = dict(growth_rate=8, block_config=(2, 3), num_init_features=16, bn_size=2)


@pytest.fixture(scope="module")
def caffemodel(tmp_path_factory):
    path = tmp_path_factory.mktemp("caffe") / "DRIU_DRIVE.caffemodel"
    path.write_bytes(driu_net_bytes(random_driu_weights("vessel", seed=11)))
    return path


def test_convert_driu_record_and_reload(tmp_path, caffemodel, capsys):
    out = tmp_path / "driu_drive"
    assert main(["convert", str(caffemodel), "--model", "driu", "--out", str(out)]) == 0
    assert "36 arrays mapped" in capsys.readouterr().out
    record = json.loads((out / "jaxretina.json").read_text())
    assert record["source"]["sha256"] == hashlib.sha256(caffemodel.read_bytes()).hexdigest()
    assert record["source"]["bytes"] == caffemodel.stat().st_size
    assert record["model"] == "driu" and record["config"]["variant"] == "vessel"
    assert record["mapping"]["mapping"]["params/upsample4/kernel"] == "upsample4_/blob0"
    assert record["parity"]["available"] is False

    direct_model, direct = jaxretina.load("driu", caffemodel)
    model, variables = jaxretina.load("driu", out)
    assert model == direct_model
    jax.tree.map(np.testing.assert_array_equal, variables, direct)
    assert main(["convert", str(caffemodel), "--model", "driu", "--out", str(out)]) == 2   # one-line error
    assert "exists; expected a new directory path" in capsys.readouterr().err


def test_convert_records_options_that_differ_from_defaults(tmp_path, caffemodel):
    from converters.convert import convert

    record = convert(caffemodel, "driu", tmp_path / "c", crop_offsets=(0, 1, 2, 3))
    assert record["config"]["crop_offsets"] == [0, 1, 2, 3]
    model, _ = jaxretina.load("driu", tmp_path / "c")
    assert model.crop_offsets == (0, 1, 2, 3)  # JSON lists come back as tuples
    with pytest.raises(ValueError, match="holds a 'driu' model; asked to load it as 'densenet121'"):
        jaxretina.load("densenet121", tmp_path / "c")


def test_convert_densenet_with_parity(tmp_path):
    ref = torchvision.models.DenseNet(num_classes=3, **SMALL).eval()
    src = tmp_path / "small.pth"
    torch.save({"state_dict": ref.state_dict()}, src)
    from converters.convert import convert

    record = convert(src, "densenet121", tmp_path / "out", **SMALL)
    assert record["parity"]["available"] is True and record["parity"]["max_rel"] < 1e-4
    assert record["config"]["block_config"] == [2, 3] and record["config"]["num_classes"] == 3
    assert len(record["mapping"]["ignored"]) == 1 + 2 * 5 + 1 + 1  # num_batches_tracked of every BatchNorm
    model, variables = jaxretina.load("densenet121", tmp_path / "out")
    assert model.block_config == (2, 3) and model.num_classes == 3
    record = convert(src, "densenet121", tmp_path / "out2", parity=False, **SMALL)
    assert record["parity"] == {"available": False, "reason": "not requested (--no-parity)"}


def test_wrong_files_and_names(tmp_path, caffemodel):
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        jaxretina.load("vgg", caffemodel)
    with pytest.raises(FileNotFoundError, match="no file or checkpoint directory"):
        jaxretina.load("driu", tmp_path / "missing.caffemodel")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(ValueError, match="empty file"):
        jaxretina.load("driu", tmp_path / "empty.pth")
    (tmp_path / "noise.bin").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError):
        jaxretina.load("driu", tmp_path / "noise.bin")
    with pytest.raises(ValueError, match="a .caffemodel; densenet121 weights come from PyTorch"):
        jaxretina.load("densenet121", caffemodel)
    ref = torchvision.models.DenseNet(num_classes=3, **SMALL)
    torch.save(ref.state_dict(), tmp_path / "dn.pth")
    with pytest.raises(ValueError, match="without DRIU keys"):
        jaxretina.load("driu", tmp_path / "dn.pth")
    torch.save({"head.concatfuse.conv.weight": torch.zeros(1, 64, 1, 1)}, tmp_path / "driu.pth")
    with pytest.raises(ValueError, match="without DenseNet keys"):
        jaxretina.load("densenet121", tmp_path / "driu.pth")
    data = caffemodel.read_bytes()
    (tmp_path / "cut.caffemodel").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        jaxretina.load("driu", tmp_path / "cut.caffemodel")


def test_demo_runs_on_a_caffemodel(tmp_path, caffemodel):
    from jaxretina.demo import run_demo

    summary = run_demo(out=str(tmp_path / "demo"), size=32, steps=2, chunk=None, weights=str(caffemodel))
    assert summary["weights"].startswith("weights from") and np.isfinite(summary["integrated_gradients"]["delta"])


def test_demo_runs_on_a_deepdraw_checkpoint(tmp_path):
    from jaxretina.demo import run_demo
    from tests.test_driu_conversion import deepdraw_state

    path = tmp_path / "driu_deepdraw.pth"
    torch.save({"model": deepdraw_state(random_driu_weights("vessel", seed=12))}, path)
    summary = run_demo(out=str(tmp_path / "demo"), size=40, steps=2, chunk=None, weights=str(path))
    assert np.isfinite(summary["integrated_gradients"]["delta"])


def test_deepdraw_weights_from_safetensors_match_the_pth(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    from tests.test_driu_conversion import deepdraw_state

    state = deepdraw_state(random_driu_weights("vessel", seed=13))
    torch.save({"model": state}, tmp_path / "d.pth")
    safetensors_torch.save_file({f"model.{k}": v.contiguous() for k, v in state.items()}, str(tmp_path / "d.safetensors"))
    m1, v1 = jaxretina.load("driu", tmp_path / "d.pth")
    m2, v2 = jaxretina.load("driu", tmp_path / "d.safetensors")
    assert m1 == m2
    jax.tree.map(np.testing.assert_array_equal, v1, v2)
