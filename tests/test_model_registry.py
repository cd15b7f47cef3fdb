"""The model contract and the registry: a model defined here (module + converter), registered
once, goes through load, convert, the sweep, the report and the CLI with no other edit; a model
lacking what a method needs gets one error naming the member."""

from __future__ import annotations

import json
import os
from typing import Any, Callable, ClassVar

import numpy as np
import pytest
import jax
import jax.numpy as jnp
import flax.linen as nn

import jaxretina
from jaxretina import cli, explain, sweep, targets, taps
from jaxretina.models import ModelSpec, TapPoints, registry, spec

from test_sweep import write_images


class Toy(nn.Module):
    """A small classifier meeting the contract: taps, ``act``, a probe, ``spatial_dims``."""

    spatial_dims: ClassVar[int] = 2
    width: int = 4
    num_classes: int = 3
    act: Callable = nn.relu

    @nn.compact
    def __call__(self, x, train: bool = False):
        tap = TapPoints(name="taps")
        h = tap("conv", self.act(nn.Conv(self.width, (3, 3), name="conv")(x)))
        h = tap("conv2", self.act(nn.Conv(self.width, (3, 3), strides=2, name="conv2")(h)))
        return tap("fc", nn.Dense(self.num_classes, name="fc")(h.mean(axis=(1, 2))))

    def shape_probe(self):
        return self, jnp.zeros((1, 8, 8, 3), jnp.float32)


class ToyConverter:
    """Reads a PyTorch-style state dict (OIHW kernels, (out, in) dense weights)."""

    @staticmethod
    def from_weights(kind: str, content: Any, source: str, **options: Any):
        from converters.mapping import Report, require_state_dict, torch_variables

        require_state_dict(kind, content, source, model="toy", recognised=lambda s: "conv.weight" in s,
                           keys="toy", example="conv.weight")
        options.setdefault("width", int(np.shape(content["conv.weight"])[0]))
        options.setdefault("num_classes", int(np.shape(content["fc.weight"])[0]))
        model = Toy(**options)
        report = Report(source_format="toy state dict", config=dict(options))
        return model, torch_variables(model, content, report, source), report


def toy_state(width=4, classes=3, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"conv.weight": rng.normal(0, 0.3, (width, 3, 3, 3)).astype(np.float32),
            "conv.bias": rng.normal(0, 0.1, (width,)).astype(np.float32),
            "conv2.weight": rng.normal(0, 0.3, (width, width, 3, 3)).astype(np.float32),
            "conv2.bias": rng.normal(0, 0.1, (width,)).astype(np.float32),
            "fc.weight": rng.normal(0, 0.3, (classes, width)).astype(np.float32),
            "fc.bias": rng.normal(0, 0.1, (classes,)).astype(np.float32)}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from safetensors.numpy import save_file

    registry.register(ModelSpec("toy", Toy, ToyConverter(), preprocessing="unit", description="a test model"))
    folder = tmp_path_factory.mktemp("toy")
    state = toy_state()
    save_file(state, str(folder / "toy.safetensors"))
    yield folder, state
    registry.unregister("toy")


def test_a_registered_model_loads_converts_and_reloads(toy):
    folder, state = toy
    model, variables = jaxretina.load("Toy", folder / "toy.safetensors")
    assert isinstance(model, Toy) and model.width == 4 and model.num_classes == 3
    # the converter's layout, checked independently: OIHW -> HWIO, (out, in) -> (in, out)
    np.testing.assert_array_equal(variables["params"]["conv"]["kernel"], state["conv.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(variables["params"]["fc"]["kernel"], state["fc.weight"].T)

    from converters.convert import convert

    record = convert(folder / "toy.safetensors", "toy", folder / "converted")
    assert record["model"] == "toy" and record["config"] == {"width": 4, "num_classes": 3}
    assert record["parity"] == {"available": False, "reason": "no installable reference implementation for this model"}
    again, reloaded = jaxretina.load("toy", folder / "converted")
    assert again == model
    x = jnp.asarray(np.random.default_rng(1).random((2, 12, 12, 3)), jnp.float32)
    np.testing.assert_allclose(again.apply(reloaded, x), model.apply(variables, x), rtol=1e-6)

    saved = jaxretina.save("toy", model, variables, folder / "saved", extra={"why": "test"})
    record_path = os.path.join(saved, "jaxretina.json")
    with open(record_path) as fh:
        record = json.load(fh)
    assert record["config"] == {"width": 4, "num_classes": 3}
    record["config"]["depth"] = 3                                   # a record edited by a stranger
    with open(record_path, "w") as fh:
        json.dump(record, fh)
    with pytest.raises(ValueError, match=r"jaxretina.json: unknown toy options \['depth'\]; expected some of "
                                         r"\['num_classes', 'width'\]"):
        jaxretina.load("toy", saved)


def test_a_registered_model_sweeps_and_its_maps_equal_the_methods_called_directly(toy, tmp_path):
    folder, _ = toy
    images = write_images(str(tmp_path / "images"), n=3, size=16)
    out = str(tmp_path / "toy.zarr")
    summary = sweep.run(model="toy", data=images, out=out, weights=str(folder / "toy.safetensors"),
                        methods=["gradcam", "ig:steps=4,chunk=2", "guided_backprop"], batch=2, progress=False)
    assert summary["counts"]["done"] == 3 and summary["counts"]["failed"] == 2   # truncated + grayscale files
    store = sweep.open_store(out)
    assert store.meta["model"]["name"] == "toy" and store.meta["model"]["input"] == "image"
    assert store.meta["computation"]["targets"] == {"top_class": targets.top_class().description}

    model, variables = jaxretina.load("toy", folder / "toy.safetensors")
    from PIL import Image

    i = store.index("img00.png")
    x = jnp.asarray(np.asarray(Image.open(os.path.join(images, "img00.png"))), jnp.float32) / 255.0  # "unit"
    got = store.example(i, ["gradcam/conv", "gradcam/conv2", "guided_backprop"])
    want = explain.grad_cam(model, variables, x, targets.top_class(), layers=["conv", "conv2"])
    np.testing.assert_allclose(got["gradcam/conv"], want["conv"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["gradcam/conv2"], want["conv2"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["guided_backprop"], explain.guided_backprop(model, variables, x, targets.top_class()),
                               rtol=1e-4, atol=1e-6)


def test_the_cli_offers_a_registered_model(toy, tmp_path, capsys):
    folder, _ = toy
    images = write_images(str(tmp_path / "images"), n=2, size=16)
    code = cli.main(["convert", str(folder / "toy.safetensors"), "--model", "toy", "--out", str(tmp_path / "conv"),
                     "--model-option", "num_classes=3"])
    assert code == 0 and "-> " in capsys.readouterr().out
    code = cli.main(["sweep", "--model", "toy", "--data", images, "--out", str(tmp_path / "s.zarr"), "--method",
                     "saliency", "--weights", str(tmp_path / "conv"), "--no-progress", "--quiet",
                     "--compilation-cache", "off"])
    assert code == 0 and "2 done, 2 failed" in capsys.readouterr().out
    assert cli.main(["report", str(tmp_path / "s.zarr")]) == 0
    code = cli.main(["convert", str(folder / "toy.safetensors"), "--model", "toy", "--out", str(tmp_path / "c2"),
                     "--model-option", "depth=2"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown toy options ['depth']" in err and len(err.strip().splitlines()) == 1


class Bare(nn.Module):
    """Taps but no ``act`` field and no probe: what the layer methods need and no more."""

    @nn.compact
    def __call__(self, x):
        tap = TapPoints(name="taps")
        h = tap("conv", nn.relu(nn.Conv(2, (3, 3), name="conv")(x)))
        return h.sum(axis=(1, 2))


class NoTaps(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(2)(x.mean(axis=(1, 2)))


def test_a_model_lacking_a_member_gets_one_error_naming_it():
    model, x = Bare(), jnp.ones((6, 6, 3))
    variables = model.init(jax.random.key(0), x[None])
    target = targets.class_logit(0)
    cams = explain.grad_cam(model, variables, x, target)          # taps are all Grad-CAM needs
    assert set(cams) == {"conv"} and cams["conv"].shape == (6, 6)
    # rule-based methods find the ReLUs in the traced program: no `act` field needed
    assert explain.guided_backprop(model, variables, x, target).shape == x.shape
    with pytest.raises(spec.MissingCapability, match=r"fuse_weight_edit needs the model's `fuse_inputs`"):
        spec.fuse_inputs(model, "fuse_weight_edit")
    with pytest.raises(spec.MissingCapability, match=r"random_variables without example_shape needs the model's "
                                                     r"`shape_probe`"):
        jaxretina.models.random_variables(model)
    assert spec.capabilities(model) == {m: False for m in spec.MEMBERS}
    with pytest.raises(ValueError, match="NoTaps has no tap points: expected a TapPoints submodule named 'taps'"):
        explain.grad_cam(NoTaps(), NoTaps().init(jax.random.key(0), x[None]), x, target)


def test_registry_errors():
    with pytest.raises(ValueError, match=r"unknown model 'resnet9000'; expected one of \['driu', 'densenet121'"):
        registry.get("resnet9000")
    with pytest.raises(ValueError, match="registered already"):
        registry.register(registry.get("driu"))
    with pytest.raises(ValueError, match="input must be one of"):
        ModelSpec("x", Toy, ToyConverter(), input="movie")
    with pytest.raises(ValueError, match="lower case"):
        ModelSpec("X-Net", Toy, ToyConverter())
    with pytest.raises(TypeError, match="Flax module class"):
        ModelSpec("x", object(), ToyConverter())


class Counted(nn.Module):
    """Counts its traces: a layer lookup that traces the model shows up in ``TRACES``."""

    @nn.compact
    def __call__(self, x):
        TRACES.append(x.shape)
        return TapPoints(name="taps")("conv", nn.Conv(2, (3, 3), name="conv")(x)).sum(axis=(1, 2))


TRACES: list = []


def test_layer_lookups_share_one_cache_that_clear_caches_empties():
    model, x = Counted(), jnp.ones((6, 6, 3))
    variables = model.init(jax.random.key(0), x[None])
    TRACES.clear()
    assert taps.layer_names(model, (1, 6, 6, 3)) == ("conv",)
    traced = len(TRACES)
    assert traced >= 1
    assert taps.spatial_layer_names(model, (1, 6, 6, 3)) == ("conv",)
    assert taps.layer_shapes(model, None, (1, 6, 6, 3))["conv"].shape == (1, 6, 6, 2)
    explain.grad_cam(model, variables, x, targets.class_logit(0), layers="conv")   # the same lookup: no new trace of it
    explain.layer_gradients(model, variables, x, targets.class_logit(0), layers="conv")
    lookups = len(TRACES)
    taps.layer_names(model, (1, 6, 6, 3))
    assert len(TRACES) == lookups                                          # cached
    jaxretina.clear_caches()
    taps.layer_names(model, (1, 6, 6, 3))
    assert len(TRACES) == lookups + traced                                 # traced again, once
