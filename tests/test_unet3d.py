"""UNet3D (DS6 U_Net_DeepSup) against a PyTorch reference on the same random weights and
BatchNorm statistics, through the converter (.pth with state_dict wrapper, safetensors with the
model. prefix), plus shapes, names and errors."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp

torch = pytest.importorskip("torch")

import jaxretina  # noqa: E402
from jaxretina import taps  # noqa: E402
from jaxretina.models import UNet3D  # noqa: E402
from tests.reference.densenet_torch import randomize  # noqa: E402
from tests.reference.ds6_torch import UNetDeepSup  # noqa: E402


def _ref(width=4, slope=None, seed=0):
    torch.manual_seed(seed)
    return randomize(UNetDeepSup(width, slope=slope), seed=seed + 1, mean_std=0.2, bias_std=0.1)


def _ndhwc(t):
    return np.asarray(t.detach().numpy()).transpose(0, 2, 3, 4, 1)


@pytest.mark.parametrize("slope", [None, 0.01])
def test_matches_the_pytorch_reference_through_pth_and_safetensors(tmp_path, slope):
    from safetensors.numpy import save_file

    ref = _ref(slope=slope).eval()
    torch.save({"state_dict": ref.state_dict(), "epoch": 3}, tmp_path / "ds6.pth")
    save_file({f"model.{k}": v.numpy() for k, v in ref.state_dict().items() if v.dtype != torch.int64},
              str(tmp_path / "model.safetensors"))
    act = (lambda v: jax.nn.leaky_relu(v, slope)) if slope else jax.nn.relu
    x = torch.randn(2, 1, 16, 32, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = [_ndhwc(t) for t in ref(x)]
    for name in ("ds6.pth", "model.safetensors"):
        model, variables = jaxretina.load("unet3d", tmp_path / name, act=act)
        assert (model.base_width, model.in_channels, model.out_channels) == (4, 1, 1)
        with jax.default_matmul_precision("highest"):
            got = jax.jit(model.apply)(variables, jnp.asarray(x.numpy().transpose(0, 2, 3, 4, 1)))
        for g, w in zip(got, want):
            assert g.shape == w.shape
            assert np.abs(np.asarray(g) - w).max() <= 1e-4 * np.abs(w).max()


def test_taps_full_width_parameters_and_errors():
    assert sum(a.size for a in jax.tree.leaves(jax.eval_shape(
        UNet3D().init, jax.random.key(0), jnp.zeros((1, 16, 16, 16, 1)))["params"])) == 103_546_883
    model = UNet3D(base_width=2)
    assert taps.layer_names(model, (1, 16, 16, 16, 1)) == model.layer_names()
    shapes = taps.layer_shapes(model, None, (1, 32, 16, 16, 1))
    assert shapes["Conv5"].shape == (1, 2, 1, 1, 32) and shapes["Conv_d4"].shape == (1, 8, 4, 4, 1)
    v = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 16, 16, 16, 1)))
    with pytest.raises(ValueError, match="multiples of 16"):
        model.apply(v, jnp.zeros((1, 16, 24, 16, 1)))
    with pytest.raises(ValueError, match="rank-5 batch"):
        model.apply(v, jnp.zeros((1, 16, 16, 1)))
    with pytest.raises(ValueError, match="channels-first"):
        model.apply(v, jnp.zeros((1, 1, 16, 16, 16)))


def test_explainers_on_volumes_grad_cam_and_ig_against_torch_autograd():
    """With deep_supervision=False the model is a plain volume -> volume map: Grad-CAM of a layer
    (trilinear resize) and IG with the segmentation target, against torch autograd."""
    from jaxretina import explain, targets

    ref = _ref(width=2, seed=4).eval().double()
    state = {k: v.detach().numpy().copy() for k, v in ref.state_dict().items()}
    from converters.unet3d import from_state_dict

    model, variables, _ = from_state_dict(state, "memory", deep_supervision=False)
    x = np.random.default_rng(5).normal(size=(16, 16, 32, 1))
    target = targets.segmentation_sum()
    with jax.enable_x64(True):
        v64 = jax.tree.map(lambda a: np.asarray(a, np.float64), variables)
        cams = explain.grad_cam(model, v64, jnp.asarray(x), target, layers=["Up_conv3"], relu=False, resize=False,
                                normalize=False)
        grads = explain.saliency(explain.model_fn(model, v64, target), jnp.asarray(x), abs=False)
    captured = {}
    ref.Up_conv3.register_forward_hook(lambda m, i, o: captured.update(a=o) or o.retain_grad())
    xt = torch.from_numpy(x.transpose(3, 0, 1, 2)[None].copy()).requires_grad_(True)
    torch.sigmoid(ref(xt)[0]).sum().backward()
    a, g = captured["a"].detach().numpy()[0], captured["a"].grad.numpy()[0]     # (C, D, H, W)
    want = (a * g.mean(axis=(1, 2, 3), keepdims=True)).sum(0)
    np.testing.assert_allclose(np.asarray(cams["Up_conv3"]), want, rtol=1e-8, atol=1e-10 * np.abs(want).max())
    np.testing.assert_allclose(np.asarray(grads)[..., 0], xt.grad.numpy()[0, 0], rtol=1e-8,
                               atol=1e-10 * np.abs(xt.grad.numpy()).max())
    with jax.enable_x64(True):
        up = explain.grad_cam(model, v64, jnp.asarray(x), target, layers=["Up_conv3"], relu=False, resize=True,
                              normalize=False)["Up_conv3"]
    assert up.shape == (16, 16, 32)
