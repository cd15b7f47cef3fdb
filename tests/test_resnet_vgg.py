"""ResNet and VGG: parity with torchvision (random weights and BatchNorm statistics) and with
Keras 3's own applications (random weights saved by Keras in both of its HDF5 formats and as a
``.keras`` archive), every depth's keys, and the errors of files that do not fit."""

from __future__ import annotations

import numpy as np
import pytest
import jax
import jax.numpy as jnp

import jaxretina
from jaxretina import explain, targets

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")


def randomize_batch_norm(module, seed=0):
    """Non-trivial BatchNorm statistics and affine parameters (a fresh model's are 0/1)."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.6 - 0.3)
    return module.eval()


def torchvision_state(name, classes=7, seed=0):
    torch.manual_seed(seed)
    ref = randomize_batch_norm(getattr(torchvision.models, name)(weights=None, num_classes=classes), seed)
    return ref, {k: v.numpy() for k, v in ref.state_dict().items()}


def save_state(state, path):
    torch.save({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, path)
    return path


# Anchor: torchvision 0.29.1 models with the same state dict; tolerance 1e-4 of the largest
# logit (float32 on both sides, highest matmul precision here).
@pytest.mark.parametrize("name,sizes", [("resnet18", (67,)), ("resnet50", (224, 67)), ("vgg11_bn", (224, 45)),
                                        ("vgg16", (37,))])
def test_logits_match_torchvision(name, sizes, tmp_path):
    ref, state = torchvision_state(name)
    model, variables = jaxretina.load(name, save_state(state, tmp_path / f"{name}.pth"))
    apply = jax.jit(model.apply)
    for size in sizes:
        x = np.random.default_rng(size).standard_normal((2, 3, size, size)).astype(np.float32)
        with torch.no_grad():
            want = ref(torch.from_numpy(x)).numpy()
        with jax.default_matmul_precision("highest"):
            got = np.asarray(apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1))))
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max(), (name, size)


@pytest.mark.parametrize("name", ["resnet34", "resnet101", "resnet152", "vgg13", "vgg13_bn", "vgg16_bn", "vgg19",
                                  "vgg19_bn"])
def test_every_depth_maps_every_key(name):
    # No forward here (compiles are costly): the conversion itself is strict — every key of
    # torchvision's model mapped, every shape equal to the Flax model's.
    from converters.mapping import Report
    from jaxretina.models import registry

    ref = getattr(torchvision.models, name)(weights=None, num_classes=3)
    state = {k: v.numpy() for k, v in ref.state_dict().items()}
    model, variables, report = registry.get(name).from_weights("pytorch", state, "test")
    assert isinstance(report, Report) and not report.unexpected
    assert set(report.mapped.values()) | set(report.ignored) == set(state)
    assert model.num_classes == 3 and type(model) is registry.get(name).module


def test_files_that_do_not_fit(tmp_path):
    _, state = torchvision_state("resnet18", classes=2)
    path = save_state(state, tmp_path / "r18.pth")
    with pytest.raises(ValueError, match=r"r18.pth: holds a ResNet18; 'resnet50' is a ResNet50"):
        jaxretina.load("resnet50", path)
    with pytest.raises(ValueError, match="holds a ResNet-18; asked for depth 34"):
        jaxretina.load("resnet18", path, depth=34)
    _, vgg = torchvision_state("vgg11", classes=2)
    vpath = save_state(vgg, tmp_path / "v11.pth")
    with pytest.raises(ValueError, match=r"holds a VGG with batch_norm=False; asked for batch_norm=True"):
        jaxretina.load("vgg11_bn", vpath)
    with pytest.raises(ValueError, match="holds a VGG11; 'vgg16' is a VGG16"):
        jaxretina.load("vgg16", vpath)
    _, vgg_bn = torchvision_state("vgg11_bn", classes=2)
    with pytest.raises(ValueError, match=r"holds a VGG with batch_norm=True; asked for batch_norm=False"):
        jaxretina.load("vgg11", save_state(vgg_bn, tmp_path / "v11bn.pth"))
    with pytest.raises(ValueError, match="without ResNet keys"):
        jaxretina.load("resnet18", vpath)
    features = {k: v for k, v in vgg.items() if k.startswith("features.")}    # torchvision's `features` alone
    model, variables = jaxretina.load("vgg11", save_state(features, tmp_path / "features.pth"))
    assert not model.include_top and model.layer_names()[-1] == "features.20"
    assert jax.jit(model.apply)(variables, jnp.zeros((1, 64, 64, 3))).shape == (1, 2, 2, 512)
    del state["layer2.0.downsample.1.running_var"]
    with pytest.raises(ValueError, match=r"missing 1: \['layer2.0.downsample.1.running_var"):
        jaxretina.load("resnet18", save_state(state, tmp_path / "broken.pth"))


def test_grad_cam_at_every_block_of_a_resnet_equals_each_layer_alone():
    model = jaxretina.models.ResNet18(num_classes=3)
    variables = jaxretina.models.random_variables(model, seed=1)
    x = jnp.asarray(np.random.default_rng(0).random((40, 40, 3)), jnp.float32)
    target = targets.class_logit(1)
    cams = explain.grad_cam(model, variables, x, target)
    assert tuple(cams) == model.layer_names()[:-1]                        # every spatial layer, "fc" has no map
    alone = explain.grad_cam(model, variables, x, target, layers=["layer4", "conv3_block2_out"])  # aliases
    np.testing.assert_allclose(alone["layer4"], cams["layer4.1"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(alone["conv3_block2_out"], cams["layer2.1"], rtol=1e-5, atol=1e-7)


def test_the_sweep_and_the_cli_run_resnet_and_vgg(tmp_path, capsys):
    from jaxretina import cli, sweep
    from test_sweep import write_images

    images = write_images(str(tmp_path / "images"), n=2, size=32)
    for name in ("resnet18", "vgg11"):
        out = str(tmp_path / f"{name}.zarr")
        code = cli.main(["sweep", "--model", name, "--data", images, "--out", out, "--method", "gradcam",
                         "--method", "saliency", "--model-option", "num_classes=3", "--no-progress", "--quiet",
                         "--compilation-cache", "off"])
        assert code == 0 and "2 done, 2 failed" in capsys.readouterr().out
        store = sweep.open_store(out)
        assert store.meta["computation"]["preprocess"] == "imagenet"           # the registry's default
        assert store.meta["computation"]["targets"] == {"top_class": targets.top_class().description}
        spatial = {n for n in store.map_names if n.startswith("gradcam/")}
        model = jaxretina.models.registry.get(name).build(num_classes=3)
        assert spatial == {f"gradcam/{n}" for n in model.layer_names()[:-(1 if name == "resnet18" else 3)]}
