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


def _dot(w, z):
    return (w * z).sum()


def _linear(w):
    """A fresh ``Partial`` per call, as a sweep over checkpoints builds with ``explain.model_fn``."""
    return jax.tree_util.Partial(_dot, w)


_PERTURBATION_CALLS = {
    "occlusion": lambda f, x, labels: explain.occlusion(f, x, window=2, strides=2, chunk=4),
    "feature_ablation": lambda f, x, labels: explain.feature_ablation(f, x, labels, chunk=4),
    "rise": lambda f, x, labels: explain.rise(f, x, key=jax.random.key(1), masks=8, cells=2, chunk=4),
    "occlusion_sensitivity": lambda f, x, labels: explain.occlusion_sensitivity(f, x, mask_size=3, overlap=0.5, chunk=4),
    "shapley_values": lambda f, x, labels: explain.shapley_values(f, x, labels, chunk=4),
    "shapley_value_sampling": lambda f, x, labels: explain.shapley_value_sampling(f, x, labels, key=jax.random.key(2),
                                                                                  permutations=2, chunk=4),
    "kernel_shap": lambda f, x, labels: explain.kernel_shap(f, x, labels, key=jax.random.key(3), samples=12, chunk=4),
    "lime": lambda f, x, labels: explain.lime(f, x, labels, key=jax.random.key(4), samples=12, chunk=4),
}


# The model's weights are data of the compiled program, never constants baked into it: a new
# function object with new weights (a Partial, as explain.model_fn returns) compiles nothing and
# its result is that of the new weights (checked against a plain closure over them).
@pytest.mark.parametrize("method", sorted(_PERTURBATION_CALLS))
def test_weights_are_traced_so_new_weights_do_not_recompile(method):
    from jax._src import monitoring

    call = _PERTURBATION_CALLS[method]
    rng = np.random.default_rng(5)
    w, x = jnp.asarray(rng.normal(size=(6, 6, 2)), jnp.float32), jnp.asarray(rng.normal(size=(6, 6, 2)), jnp.float32)
    labels = np.arange(36).reshape(6, 6) % 5
    first, w3 = np.asarray(call(_linear(w), x, labels)), 3 * w
    compiled = []

    def listen(event, seconds, **info):   # every new program is lowered (persistent-cache hits too)
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
            compiled.append(info.get("fun_name", "?"))

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        again = np.asarray(call(_linear(w3), x, labels))
    finally:
        monitoring.unregister_event_duration_listener(listen)
    assert not compiled, f"{method} recompiled for new weights: {compiled}"
    want = np.asarray(call(lambda z: _dot(w3, z), x, labels))
    np.testing.assert_allclose(again, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    assert np.abs(again - first).max() > 0.1 * np.abs(first).max()
