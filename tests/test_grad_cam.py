import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxretina import explain, targets
from jaxretina.taps import TapPoints

RNG = np.random.default_rng(2)
W1 = RNG.normal(size=(1, 1, 2, 3)).astype(np.float32)  # 1x1 conv, 2 -> 3 channels
V = RNG.normal(size=(3,)).astype(np.float32)


class Tiny(nn.Module):
    """x -> relu(1x1 conv W1) = A (tapped "feat") -> y-map = sum_k V_k A_k^2 (tapped "head")."""

    @nn.compact
    def __call__(self, x):
        tap = TapPoints(name="taps")
        conv = nn.Conv(3, (1, 1), use_bias=False, kernel_init=lambda *_: jnp.asarray(W1), name="conv")
        a = tap("feat", nn.relu(conv(x)))
        return tap("head", (a * a * jnp.asarray(V)).sum(-1, keepdims=True))


def _tiny():
    x = jnp.asarray(RNG.normal(size=(6, 5, 2)), jnp.float32)
    model = Tiny()
    return model, model.init(jax.random.key(0), x[None]), x


def test_tiny_net_against_hand_computed_map():
    model, variables, x = _tiny()
    target = targets.segmentation_sum(probability=False)  # y = sum_p sum_k V_k A_pk^2
    a = np.maximum(np.einsum("hwc,ck->hwk", np.asarray(x), W1[0, 0]), 0)
    g = 2 * V * a  # dy/dA
    alpha = g.mean(axis=(0, 1))
    expected = (a * alpha).sum(-1)
    cams = explain.grad_cam(model, variables, x, target, layers=["feat"], relu=False)
    np.testing.assert_allclose(cams["feat"], expected, rtol=1e-5, atol=1e-6)
    relu = explain.grad_cam(model, variables, x, target, layers="feat")
    np.testing.assert_allclose(relu["feat"], np.maximum(expected, 0), rtol=1e-5, atol=1e-6)
    # Grad-CAM++ closed form on the same net: the published formula (default) and
    # pytorch-grad-cam's, whose denominator adds 1e-6.
    for eps in (0.0, explain.PYTORCH_GRAD_CAM_EPS):
        g2, g3 = g**2, g**3
        with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 where G = 0: masked
            aij = np.where(g != 0, g2 / (2 * g2 + a.sum(axis=(0, 1)) * g3 + eps), 0)
        w = (aij * np.maximum(g, 0)).sum(axis=(0, 1))
        pp = explain.grad_cam_plus_plus(model, variables, x, target, layers=["feat"], relu=False, eps=eps)
        np.testing.assert_allclose(pp["feat"], (a * w).sum(-1), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("scale", [1e-5, 1e-8])
def test_grad_cam_plus_plus_keeps_its_formula_for_small_gradients(scale):
    # Gradients of ~1e-5 (DenseNet121's shallow layers) make G² ~ 1e-10: an ε of 1e-7 in the
    # denominator would swamp it.  The default is the formula itself (float64 NumPy, 1e-6).
    model, variables, x = _tiny()
    target = targets.segmentation_sum(probability=False)
    small = lambda out: scale * target(out)  # noqa: E731
    a = np.maximum(np.einsum("hwc,ck->hwk", np.asarray(x, np.float64), W1[0, 0].astype(np.float64)), 0)
    g = scale * 2 * V.astype(np.float64) * a
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 where G = 0: masked
        aij = np.where(g != 0, g**2 / (2 * g**2 + a.sum(axis=(0, 1)) * g**3), 0)
    want = (a * (aij * np.maximum(g, 0)).sum(axis=(0, 1))).sum(-1)
    got = explain.grad_cam_plus_plus(model, variables, x, small, layers=["feat"], relu=False)["feat"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    swamped = explain.grad_cam_plus_plus(model, variables, x, small, layers=["feat"], relu=False, eps=1e-7)["feat"]
    assert np.abs(np.asarray(swamped) - want).max() > 0.5 * np.abs(want).max()  # what the old ε did


def test_normalize_ranges():
    model, variables, x = _tiny()
    target = targets.segmentation_sum(probability=False)
    pos = explain.grad_cam(model, variables, x, target, normalize=True)
    for m in pos.values():
        assert float(m.min()) == pytest.approx(0.0, abs=1e-6) and float(m.max()) == pytest.approx(1.0, abs=1e-5)
    signed = explain.grad_cam(model, variables, x, target, relu=False, normalize=True)
    for m in signed.values():
        assert float(jnp.abs(m).max()) == pytest.approx(1.0, abs=1e-5)


def test_all_layers_one_pass_equals_one_layer_at_a_time(driu_small):
    model, variables, x = driu_small
    target = targets.segmentation_sum()
    together = explain.grad_cam(model, variables, x, target, relu=False, resize=False)
    names = list(model.layer_names())
    assert list(together) == names
    # every third layer and the last (each kind: trunk conv, pool, side conv, upsample, fuse):
    # one compiled program per layer alone, so not all 21 (they cost ~35 s of compilation)
    for name in names[::3] + names[-1:]:
        m = together[name]
        alone = explain.grad_cam(model, variables, x, target, layers=[name], relu=False, resize=False)
        np.testing.assert_allclose(alone[name], m, rtol=1e-4, atol=1e-5 * float(jnp.abs(m).max()))


def test_gradient_at_upsample2_by_hand(driu_small):
    # upsample2 enters the fuse 1x1 conv at channels 16..31 of the concat: for
    # y = sum sigmoid(logit), dy/d upsample2[p, k] = sigmoid'(logit_p) * w_fuse[16 + k].
    model, variables, x = driu_small
    acts, grads = explain.layer_gradients(model, variables, x, targets.segmentation_sum(), layers=["upsample2"])
    logit = jax.jit(model.apply)(variables, x[None])[0, ..., 0]
    s = jax.nn.sigmoid(logit)
    w = variables["params"]["new_score_weighting"]["kernel"][0, 0, 16:32, 0]
    np.testing.assert_allclose(grads["upsample2"], (s * (1 - s))[..., None] * w, rtol=1e-4, atol=1e-7)
    assert acts["upsample2"].shape == (37, 45, 16)


def test_batched_equals_per_example(driu_small):
    model, variables, x = driu_small
    target = targets.segmentation_mean()
    xs = jnp.stack([x, -x, 0.5 * x])
    batched = jax.vmap(lambda xi: explain.grad_cam(model, variables, xi, target, layers=["conv2_2", "upsample4"]))(xs)
    for i in range(3):
        one = explain.grad_cam(model, variables, xs[i], target, layers=["conv2_2", "upsample4"])
        for name in one:
            np.testing.assert_allclose(batched[name][i], one[name], rtol=1e-4, atol=1e-6)


def test_resize_to_input_and_native_shapes(driu_small):
    model, variables, x = driu_small
    target = targets.segmentation_sum()
    resized = explain.grad_cam(model, variables, x, target, layers=["conv3_1", "pool1"])
    assert {k: v.shape for k, v in resized.items()} == {"conv3_1": (37, 45), "pool1": (37, 45)}
    native = explain.grad_cam(model, variables, x, target, layers=["conv3_1", "pool1"], resize=False)
    assert native["conv3_1"].shape == (10, 12) and native["pool1"].shape == (19, 23)  # ceil pooling


def test_traces_once_per_shape(driu_small):
    model, variables, x = driu_small
    calls = []
    base = targets.segmentation_sum()
    target = targets.Target(lambda out: (calls.append(out.shape), base(out))[1], "counting")
    for _ in range(3):
        explain.grad_cam(model, variables, x, target, layers=["conv1_2"])
    assert len(calls) == 1
    explain.grad_cam(model, variables, x[:20], target, layers=["conv1_2"])
    assert len(calls) == 2


def test_errors(driu_small):
    model, variables, x = driu_small
    target = targets.segmentation_sum()
    with pytest.raises(ValueError, match=r"unknown layer name\(s\) \['upsample3'\]; expected 'all' or names among"):
        explain.grad_cam(model, variables, x, target, layers=["upsample3"])
    with pytest.raises(ValueError, match=r"expected one example \(H, W, C\) for DRIU \(a batch is jax.vmap over examples\); found shape \(1, 37, 45, 3\)"):
        explain.grad_cam(model, variables, x[None], target)
    with pytest.raises(ValueError, match=r"expected 3 channels in the last axis.*found shape \(1, 3, 37, 45\).*channels-first"):
        explain.grad_cam(model, variables, jnp.moveaxis(x, -1, 0), target)
    with pytest.raises(ValueError, match="expected finite values; found 1 NaN"):
        explain.grad_cam(model, variables, x.at[3, 3, 0].set(jnp.nan), target)
    with pytest.raises(TypeError, match="expected a floating-point array"):
        explain.grad_cam(model, variables, x.astype(jnp.int32), target)
