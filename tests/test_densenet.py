"""DenseNet against torchvision on the same random weights and BatchNorm statistics: logits,
intermediate layers, Grad-CAM, and every checkpoint key scheme users bring."""

import re

import numpy as np
import pytest
import jax
import jax.numpy as jnp

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import jaxretina  # noqa: E402
from jaxretina import explain, targets  # noqa: E402
from jaxretina.models import DenseNet, DenseNet121  # noqa: E402
from tests.reference.densenet_torch import randomize  # noqa: E402

SMALL = dict(growth_rate=8, block_config=(2, 3), num_init_features=16, bn_size=2)


def _state(model):
    return {k: v.numpy() for k, v in model.state_dict().items()}


def _save(tmp_path, name, obj, legacy=False):
    path = tmp_path / name
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def _nhwc(x):
    return jnp.asarray(x.numpy().transpose(0, 2, 3, 1))


def _logits(model, variables, x):
    with jax.default_matmul_precision("highest"):
        return np.asarray(jax.jit(model.apply)(variables, _nhwc(x)), np.float64)


def _rel(got, want):
    return np.abs(got - want).max() / np.abs(want).max()


@pytest.mark.fullsize
def test_densenet121_matches_torchvision(tmp_path):
    ref = randomize(torchvision.models.densenet121(num_classes=5), seed=0)
    path = _save(tmp_path, "grader.pth", ref.state_dict())
    model, variables = jaxretina.load("densenet121", path)
    assert model.num_classes == 5
    n_params = sum(v.size for v in jax.tree.leaves(variables["params"]))
    assert n_params == sum(p.numel() for p in ref.parameters()) == 6_958_981
    g = torch.Generator().manual_seed(2)
    for hw in ((224, 224), (193, 211)):
        x = torch.randn(2, 3, *hw, generator=g)
        with torch.no_grad():
            want = ref(x).double().numpy()
        assert _rel(_logits(model, variables, x), want) < 1e-4, hw

    # The same weights through a legacy-key (norm.1-style) checkpoint in the pre-1.6 format,
    # and through a DataParallel {"state_dict": {"module.…"}} file: identical variables.
    legacy_keys = {re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", k): v
                   for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert any(".norm.1." in k for k in legacy_keys)
    for obj, legacy in ((legacy_keys, True), ({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()},
                                               "epoch": 30}, False)):
        p = _save(tmp_path, "other.pth", obj, legacy=legacy)
        _, other = jaxretina.load("densenet121", p)
        jax.tree.map(np.testing.assert_array_equal, other, variables)
        p.unlink()


def test_small_densenet_layers_and_train_mode_match_torchvision(tmp_path):
    ref = randomize(torchvision.models.DenseNet(num_classes=3, **SMALL), seed=1)
    path = _save(tmp_path, "small.pth", ref.state_dict())
    model, variables = jaxretina.load("densenet121", path, **SMALL)
    x = torch.randn(2, 3, 45, 51, generator=torch.Generator().manual_seed(3))

    captured = {}
    names = ["conv0", "norm0", "pool0", "denseblock1", "transition1", "denseblock2", "norm5",
             "denseblock2.denselayer3.conv2", "transition1.conv"]
    modules = dict(ref.features.named_modules())
    hooks = [modules[n].register_forward_hook(lambda m, i, o, n=n: captured.__setitem__(n, o.detach().clone()))
             for n in names]
    with torch.no_grad():
        want = ref(x).double().numpy()
    for h in hooks:
        h.remove()
    with jax.default_matmul_precision("highest"):
        out, acts = jaxretina.taps.activations(model, variables, _nhwc(x), names)
    assert _rel(np.asarray(out, np.float64), want) < 1e-5
    for n in names:
        got = np.asarray(acts[n], np.float64).transpose(0, 3, 1, 2)
        assert got.shape == tuple(captured[n].shape), n
        assert _rel(got, captured[n].double().numpy()) < 1e-5, n

    # Training mode normalises with the batch statistics, in both frameworks.
    ref.train()
    with torch.no_grad():
        want_train = ref(x).double().numpy()
    with jax.default_matmul_precision("highest"):
        got_train, _ = jax.jit(lambda v, z: model.apply(v, z, train=True, mutable=["batch_stats"]))(variables, _nhwc(x))
    assert _rel(np.asarray(got_train, np.float64), want_train) < 1e-4


def test_layer_names_are_the_tap_order_and_grad_cam_matches_torch_autograd():
    model = DenseNet(num_classes=3, **SMALL)
    ref = randomize(torchvision.models.DenseNet(num_classes=3, **SMALL), seed=4)
    from converters.densenet import from_state_dict

    model, variables, _ = from_state_dict(_state(ref), "in-memory", **SMALL)
    assert tuple(jaxretina.taps.layer_shapes(model, None, (1, 45, 51, 3), jnp.float32)) == model.layer_names()
    x = torch.randn(1, 3, 45, 51, generator=torch.Generator().manual_seed(5))

    # Reference Grad-CAM at denseblock2 for class 1 with torch autograd.
    store = {}

    def keep(module, inputs, output):
        output.retain_grad()
        store["a"] = output

    hook = ref.features.denseblock2.register_forward_hook(keep)
    ref(x)[0, 1].backward()
    hook.remove()
    a, g = store["a"][0].detach().double(), store["a"].grad[0].double()
    want = torch.relu((g.mean(dim=(1, 2))[:, None, None] * a).sum(0)).numpy()

    with jax.default_matmul_precision("highest"):
        cams = explain.grad_cam(model, variables, _nhwc(x)[0], targets.class_logit(1), resize=False)
    assert "classifier" not in cams and cams["denseblock2"].shape == want.shape
    assert len(cams) == len(model.layer_names()) - 1  # "all" = every spatial layer
    np.testing.assert_allclose(np.asarray(cams["denseblock2"]), want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_monai_densenet_matches_monai(tmp_path):
    monai_nets = pytest.importorskip("monai.networks.nets")
    ref = monai_nets.DenseNet(spatial_dims=2, in_channels=3, out_channels=3, init_features=SMALL["num_init_features"],
                              growth_rate=SMALL["growth_rate"], block_config=SMALL["block_config"],
                              bn_size=SMALL["bn_size"])
    ref = randomize(ref, seed=6)
    assert any(".layers." in k for k in ref.state_dict()) and "class_layers.out.weight" in ref.state_dict()
    path = _save(tmp_path, "monai.pth", ref.state_dict())
    model, variables, report = jaxretina.loading.load_with_report("densenet121", path, **SMALL)
    assert "MONAI" in report.source_format and model.num_classes == 3
    x = torch.randn(2, 3, 45, 51, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        want = ref(x).double().numpy()
    assert _rel(_logits(model, variables, x), want) < 1e-5


def test_errors(tmp_path):
    model = DenseNet121(num_classes=2)
    with pytest.raises(ValueError, match="at least 29x29"):
        model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    with pytest.raises(ValueError, match="3"):
        model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 1)))
    ref = torchvision.models.DenseNet(num_classes=3, **SMALL)
    path = _save(tmp_path, "small.pth", ref.state_dict())
    with pytest.raises(ValueError, match=r"mis-shaped 2: .*classifier"):
        jaxretina.load("densenet121", path, num_classes=4, **SMALL)
    with pytest.raises(ValueError, match=r"missing .*denseblock2.denselayer3.*unexpected 0"):
        state = {k: v for k, v in ref.state_dict().items() if "denselayer3" not in k}
        jaxretina.load("densenet121", _save(tmp_path, "cut.pth", state), **SMALL)


def test_variables_do_not_alias_the_callers_arrays():
    # A torch model that keeps training updates its buffers in place; variables converted from
    # its tensor.numpy() views must not change with them (JAX may alias host memory on the CPU).
    from converters.densenet import from_state_dict

    ref = randomize(torchvision.models.DenseNet(num_classes=3, **SMALL), seed=2)
    state = {k: v.numpy() for k, v in ref.state_dict().items()}
    _, variables, _ = from_state_dict(state, "memory", **SMALL)
    before = np.asarray(variables["batch_stats"]["features"]["norm0"]["mean"]).copy()
    bias_before = np.asarray(variables["params"]["classifier"]["bias"]).copy()
    with torch.no_grad():
        ref.features.norm0.running_mean.add_(1.0)
        ref.classifier.bias.add_(1.0)
    np.testing.assert_array_equal(np.asarray(variables["batch_stats"]["features"]["norm0"]["mean"]), before)
    np.testing.assert_array_equal(np.asarray(variables["params"]["classifier"]["bias"]), bias_before)


def test_monai_grayscale_densenet_and_its_layer_names_match_monai_grad_cam(tmp_path):
    """What MONAI's own Grad-CAM tests do: DenseNet121(spatial_dims=2, in_channels=1, …) with
    target_layers="class_layers.relu" (after norm5's ReLU).  Same weights (random BatchNorm
    statistics), float64 both sides; MONAI's map before its flipping normaliser."""
    monai_nets = pytest.importorskip("monai.networks.nets")
    from monai.visualize import GradCAM

    ref = monai_nets.DenseNet(spatial_dims=2, in_channels=1, out_channels=3, init_features=SMALL["num_init_features"],
                              growth_rate=SMALL["growth_rate"], block_config=SMALL["block_config"],
                              bn_size=SMALL["bn_size"])
    ref = randomize(ref, seed=7).double().eval()
    path = _save(tmp_path, "monai_gray.pth", ref.state_dict())
    model, variables = jaxretina.load("densenet121", path, **{k: v for k, v in SMALL.items()})
    assert model.in_channels == 1 and model.num_classes == 3
    x = torch.randn(1, 1, 47, 53, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    with torch.no_grad():
        want_logits = ref(x).numpy()
    layers = ["class_layers.relu", "features.transition1.pool", "features.denseblock2.denselayer3.layers.conv2"]
    with jax.enable_x64(True), jax.default_matmul_precision("highest"):
        v64 = jax.tree.map(lambda a: np.asarray(a, np.float64), variables)
        xj = jnp.asarray(x.numpy().transpose(0, 2, 3, 1))
        np.testing.assert_allclose(np.asarray(jax.jit(model.apply)(v64, xj)), want_logits,
                                   atol=1e-10 * np.abs(want_logits).max())   # float64: 1e-10
        ours = explain.grad_cam(model, v64, xj[0], targets.class_logit(2), layers=layers)
        ours = {k: np.asarray(v) for k, v in ours.items()}
    assert list(ours) == layers                            # keyed by the names asked for
    for layer in layers:
        cam = GradCAM(nn_module=ref, target_layers=layer, postprocessing=lambda m: m)
        want = cam(x, class_idx=2)[0, 0].detach().numpy()
        # MONAI: ReLU(Σ_k mean(G_k) A_k), bilinear upsampling (align_corners=False); float64
        np.testing.assert_allclose(ours[layer], want, atol=1e-9 * np.abs(want).max(), err_msg=layer)
