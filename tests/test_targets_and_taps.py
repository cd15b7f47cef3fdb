import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxretina import targets, taps

OUT = jnp.asarray(np.random.default_rng(4).normal(size=(4, 5, 1)), jnp.float32)
LOGITS = jnp.asarray([0.5, -1.0, 2.0, 0.0, 1.5], jnp.float32)


def test_class_targets():
    assert float(targets.class_logit(2)(LOGITS)) == 2.0
    p = np.exp(np.asarray(LOGITS, np.float64))
    np.testing.assert_allclose(float(targets.class_probability(4)(LOGITS)), p[4] / p.sum(), rtol=1e-6)
    several = jax.vmap(lambda c: jax.nn.softmax(LOGITS)[c])(jnp.arange(5))
    np.testing.assert_allclose(several.sum(), 1.0, rtol=1e-6)


def test_segmentation_targets():
    s = 1 / (1 + np.exp(-np.asarray(OUT[..., 0], np.float64)))
    np.testing.assert_allclose(float(targets.segmentation_sum()(OUT)), s.sum(), rtol=1e-5)
    np.testing.assert_allclose(float(targets.segmentation_sum(probability=False)(OUT)), np.asarray(OUT).sum(), rtol=1e-5)
    mask = np.zeros((4, 5), bool)
    mask[1:3, 2:] = True
    np.testing.assert_allclose(float(targets.segmentation_sum(mask=mask)(OUT)), s[mask].sum(), rtol=1e-5)
    np.testing.assert_allclose(float(targets.segmentation_mean(mask=mask)(OUT)), s[mask].mean(), rtol=1e-5)
    weights = np.linspace(0, 1, 20).reshape(4, 5).astype(np.float32)
    np.testing.assert_allclose(float(targets.segmentation_mean(mask=weights)(OUT)),
                               (s * weights).sum() / weights.sum(), rtol=1e-5)
    np.testing.assert_allclose(float(targets.pixel(2, 3)(OUT)), s[2, 3], rtol=1e-6)
    multi = jnp.stack([OUT[..., 0], -OUT[..., 0], 0 * OUT[..., 0]], -1)  # 3 classes: softmax
    soft = np.exp(np.asarray(multi, np.float64))
    soft /= soft.sum(-1, keepdims=True)
    np.testing.assert_allclose(float(targets.segmentation_sum(channel=1)(multi)), soft[..., 1].sum(), rtol=1e-5)
    vol = jnp.zeros((2, 3, 4, 1))
    assert float(targets.segmentation_sum()(vol)) == pytest.approx(12.0)


def test_target_errors():
    with pytest.raises(ValueError, match=r"class_logit: expected one example's class logits of shape \(num_classes,\); found shape \(2, 5\)"):
        targets.class_logit(0)(jnp.zeros((2, 5)))
    with pytest.raises(ValueError, match="class 7 out of range for 5 classes"):
        targets.class_probability(7)(LOGITS)
    with pytest.raises(ValueError, match="channel 2 out of range for an output with 1 channel"):
        targets.segmentation_sum(channel=2)(OUT)
    with pytest.raises(ValueError, match=r"mask must have the spatial shape \(4, 5\); found \(5, 4\)"):
        targets.segmentation_sum(mask=np.ones((5, 4), bool))(OUT)
    with pytest.raises(ValueError, match=r"pixel: \(4, 0\) outside the 4x5 output"):
        targets.pixel(4, 0)(OUT)
    with pytest.raises(ValueError, match="segmentation output"):
        targets.segmentation_mean()(LOGITS)
    assert "segmentation_sum" in repr(targets.segmentation_sum())


def test_tapped_forward_equals_plain_forward(driu_small):
    model, variables, x = driu_small
    fns = taps.tap_functions(model)
    out, acts = fns.tapped(variables, x[None], fns.zeros(variables, x[None]))
    np.testing.assert_array_equal(out, fns.forward(variables, x[None]))
    np.testing.assert_array_equal(acts["new_score_weighting"], out)
    assert tuple(acts) == model.layer_names()
    # conv1_1's tapped value is post-ReLU (Caffe's in-place ReLU blob).
    assert float(acts["conv1_1"].min()) >= 0.0
    out2, chosen = taps.activations(model, variables, x[None], ["upsample8", "conv1_2_16"])
    assert list(chosen) == ["upsample8", "conv1_2_16"] and chosen["upsample8"].shape == (1, 37, 45, 16)


def test_perturbation_gradient_matches_finite_difference(driu_small):
    model, variables, x = driu_small
    fns = taps.tap_functions(model)
    deltas = fns.zeros(variables, x[None])
    f = lambda d: jax.nn.sigmoid(fns.tapped(variables, x[None], d)[0]).sum()  # noqa: E731
    g = jax.grad(f)(deltas)["conv3_3_16"]
    direction = jnp.asarray(np.random.default_rng(5).normal(size=g.shape), jnp.float32)
    eps = 1e-2
    plus = dict(deltas, conv3_3_16=eps * direction)
    minus = dict(deltas, conv3_3_16=-eps * direction)
    fd = (f(plus) - f(minus)) / (2 * eps)
    np.testing.assert_allclose(float((g * direction).sum()), float(fd), rtol=2e-2)


def test_layer_names_errors():
    with pytest.raises(ValueError, match=r"unknown layer name\(s\) \['conv9'\]"):
        taps.select_layers(("conv1", "conv2"), ["conv9"])
    with pytest.raises(ValueError, match="no layers requested"):
        taps.select_layers(("conv1",), [])
    import flax.linen as nn

    class NoTaps(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(x)

    with pytest.raises(ValueError, match="NoTaps has no tap points"):
        taps.layer_names(NoTaps(), (1, 3))


def test_inline_targets_are_reused_so_explainers_do_not_recompile(driu_small):
    from jaxretina import explain
    from jaxretina.explain import gradients

    assert targets.class_logit(3) is targets.class_logit(3)
    assert targets.segmentation_sum(channel=0) is targets.segmentation_sum(channel=0)
    assert targets.class_logit(3) is not targets.class_logit(4)
    mask = np.ones((8, 8), bool)
    assert targets.segmentation_sum(mask=mask) is not targets.segmentation_sum(mask=mask)   # arrays: not cached
    model, variables, x = driu_small
    before = gradients._ig_whole._cache_size()
    for _ in range(2):
        explain.integrated_gradients(explain.model_fn(model, variables, targets.segmentation_mean()), x,
                                     baseline=0.0, steps=2, chunk="all", stem=False)
    assert gradients._ig_whole._cache_size() == before + 1
