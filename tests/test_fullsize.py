"""One full-size run per model here: DRIU at DRIVE's 584×565 (ceil pooling, crops, one-pass CAM) and the
DS6 U-Net at width 64 on a 64³ patch (DenseNet121 and Inception V3 have theirs in their own files)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxretina import explain, targets
from jaxretina.models import DRIU
from jaxretina.preprocess import driu_caffe_input, resize_image


@pytest.mark.fullsize
def test_driu_drive_size_all_layer_grad_cam():
    from skimage import data

    x = driu_caffe_input(resize_image(data.retina(), 584, 565))
    model = DRIU()
    variables = jax.jit(model.init)(jax.random.key(0), x[None])
    target = targets.segmentation_sum()
    cams = explain.grad_cam(model, variables, x, target, relu=False)
    assert list(cams) == list(model.layer_names())
    assert all(m.shape == (584, 565) and bool(jnp.isfinite(m).all()) for m in cams.values())
    # The same pass's gradient at upsample8 (the coarsest side, crop offset 4) by hand:
    # d Σ sigmoid(logit) / d upsample8[p, k] = sigmoid'(logit_p) · w_fuse[48 + k].
    _, grads = explain.layer_gradients(model, variables, x, target, layers=["upsample8"])
    s = jax.nn.sigmoid(jax.jit(model.apply)(variables, x[None])[0, ..., 0])
    w = variables["params"]["new_score_weighting"]["kernel"][0, 0, 48:64, 0]
    np.testing.assert_allclose(grads["upsample8"], (s * (1 - s))[..., None] * w, rtol=1e-4, atol=1e-8)
    alone = explain.grad_cam(model, variables, x, target, layers=["conv4_3"], relu=False)
    np.testing.assert_allclose(alone["conv4_3"], cams["conv4_3"], rtol=1e-4,
                               atol=1e-5 * float(jnp.abs(cams["conv4_3"]).max()))


@pytest.mark.fullsize
def test_unet3d_ds6_width_on_a_64_cube_matches_pytorch():
    """DS6 at its published width (64; 103,546,883 parameters) on one 64³ patch — the size it
    segments and is explained at — with random weights and BatchNorm statistics, all three
    outputs against the PyTorch reference through the converter."""
    torch = pytest.importorskip("torch")
    from converters.unet3d import from_state_dict
    from tests.reference.densenet_torch import randomize
    from tests.reference.ds6_torch import UNetDeepSup

    torch.manual_seed(0)
    ref = randomize(UNetDeepSup(64), seed=1, mean_std=0.2, bias_std=0.1).eval()
    model, variables, _ = from_state_dict({k: v.numpy() for k, v in ref.state_dict().items()}, "fullsize")
    x = np.random.default_rng(0).random((1, 64, 64, 64, 1), dtype=np.float32)
    with torch.no_grad():
        want = [np.moveaxis(t.numpy(), 1, -1) for t in ref(torch.from_numpy(np.moveaxis(x, -1, 1).copy()))]
    del ref
    with jax.default_matmul_precision("highest"):
        got = jax.jit(model.apply)(variables, jnp.asarray(x))
    for g, w in zip(got, want):
        assert g.shape == w.shape
        assert np.abs(np.asarray(g) - w).max() <= 1e-4 * np.abs(w).max()
