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
