"""Occlusion and feature ablation: Captum 0.9.0's ``Occlusion`` and ``FeatureAblation`` on the
same weights and input (the small DenseNet pair of tests/anchor_pairs.py, float64 both sides),
and closed forms on a linear model."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from jaxretina import explain

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

from tests.anchor_pairs import CLASS, f64, nchw  # noqa: E402



def _hwc(t):
    return t.detach().numpy()[0].transpose(1, 2, 0)


# Anchor: Captum 0.9.0 Occlusion (window (3, 8, 8) / strides (3, 4, 4) on NCHW, the last windows cut
# at the border; and (3, 5, 7) / (3, 5, 3)) and FeatureAblation with a (1, 1, H, W) feature mask;
# float64 models; Captum accumulates the attributions in float32: tolerance 1e-6 of the largest
# value (measured 4e-8).
def test_occlusion_and_feature_ablation_match_captum(torch_dense):
    model, variables, ref, x, target = torch_dense
    ref = ref.double()
    xt = nchw(x)
    with jax.enable_x64(True):
        v, xj = f64(variables, x)
        f = explain.model_fn(model, v, target)
        for window, strides, base in (((8, 8), (4, 4), 0.0), ((5, 7), (5, 3), 0.3)):
            want = _hwc(captum_attr.Occlusion(ref).attribute(xt, sliding_window_shapes=(3, *window),
                                                             strides=(3, *strides), baselines=base, target=CLASS))
            got = np.asarray(explain.occlusion(f, xj, window=window, strides=strides, baseline=base, chunk=16))
            assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max(), (window, strides)
        rows, cols = np.indices(x.shape[:2])
        labels = np.random.default_rng(0).permutation(30)[(rows // 9) * 6 + cols // 9]   # 5 × 6 blocks, shuffled
        want = _hwc(captum_attr.FeatureAblation(ref).attribute(
            xt, feature_mask=torch.from_numpy(labels[None, None]), baselines=0.0, target=CLASS))
        got = np.asarray(explain.feature_ablation(f, xj, labels, chunk=7))
    assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max()


def test_closed_forms_on_a_linear_model():
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        w = jnp.asarray(rng.normal(size=(6, 5, 2)))
        x = jnp.asarray(rng.normal(size=(6, 5, 2)))
        f = lambda z: (w * z).sum()  # noqa: E731
        # 1×1 windows over every axis: exactly w (x − b)
        got = explain.occlusion(f, x, window=(1, 1, 1), strides=(1, 1, 1), baseline=0.5)
        np.testing.assert_allclose(got, w * (x - 0.5), rtol=1e-12, atol=1e-12)
        # every feature gets the sum of w (x − b) over its values
        labels = np.arange(30).reshape(6, 5) % 4
        got = np.asarray(explain.feature_ablation(f, x, labels))
        contrib = np.asarray((w * x).sum(-1))
        for j in range(4):
            np.testing.assert_allclose(got[labels == j], contrib[labels == j].sum(), rtol=1e-12)


def test_errors():
    x = jnp.ones((6, 5, 2))
    f = lambda z: z.sum()  # noqa: E731
    with pytest.raises(ValueError, match="window must be positive integers"):
        explain.occlusion(f, x, window=(2, 0))
    with pytest.raises(ValueError, match="must fit x"):
        explain.occlusion(f, x, window=(7, 2))
    with pytest.raises(ValueError, match="may not exceed the window"):
        explain.occlusion(f, x, window=(2, 2), strides=(3, 1))
    with pytest.raises(ValueError, match="must be integer labels"):
        explain.feature_ablation(f, x, np.zeros((6, 5)))
    with pytest.raises(ValueError, match="do not broadcast"):
        explain.feature_ablation(f, x, np.zeros((5, 6), int))
