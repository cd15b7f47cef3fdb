"""Any Flax module, unmodified: a ResNet written in the style of Flax's own ImageNet example
(tests/reference/flax_resnet.py: its own blocks, ``nn.relu`` inline, no jaxretina layer), wrapped with ``jaxretina.explainable``,
gives the same maps as jaxretina's ``ResNet`` with the same weights — all-layer Grad-CAM, layer
gradients, layer IG, guided backprop and deconvnet."""

from __future__ import annotations

from functools import partial
import numpy as np
import pytest
import jax
import jax.numpy as jnp
import flax.linen as nn

import jaxretina
from jaxretina import explain, targets, taps
from jaxretina import propagation
from jaxretina.models import ResNet
from tests.reference.flax_resnet import FlaxResNet, ResNetBlock, flax_variables


def random_batch_stats(variables, seed=3):
    rng = np.random.default_rng(seed)
    stats = jax.tree_util.tree_map_with_path(
        lambda p, v: (rng.uniform(0.5, 1.5, v.shape) if "var" in jax.tree_util.keystr(p) else
                      rng.uniform(-0.3, 0.3, v.shape)).astype(np.float32), variables["batch_stats"])
    return {**variables, "batch_stats": stats}


@pytest.fixture(scope="module")
def pair():
    native = ResNet(depth=18, num_classes=4)
    jr = random_batch_stats(jaxretina.models.random_variables(native, seed=0))
    wrapped = jaxretina.explainable(FlaxResNet((2, 2, 2, 2), num_classes=4), layers=ResNetBlock, spatial_dims=2)
    # 33 px: every stride-2 input is odd (33, 17, 9, 5, 3), where SAME padding is torchvision's
    x = jnp.asarray(np.random.default_rng(1).standard_normal((33, 33, 3)), jnp.float32)
    # names in order: the Flax example's blocks <-> jaxretina's block taps
    names = dict(zip(taps.layer_names(wrapped, (1, *x.shape)), [f"layer{s}.{b}" for s in range(1, 5) for b in range(2)]))
    return native, jr, wrapped, flax_variables(jr), x, names


def test_same_function_and_the_wrapper_takes_the_modules_own_variables(pair):
    native, jr, wrapped, fv, x, names = pair
    assert list(names) == [f"ResNetBlock_{k}" for k in range(8)]
    want = jax.jit(native.apply)(jr, x[None])
    np.testing.assert_allclose(jax.jit(wrapped.module.apply)(fv, x[None]), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(jax.jit(wrapped.apply)(fv, x[None]), want, rtol=1e-4, atol=1e-5)
    found = propagation.layer_sites(wrapped, fv, x)         # what the rule-based methods see
    assert [s.kind for s in found].count("activation") == 17 and [s.kind for s in found].count("conv") == 20


def test_maps_equal_jaxretinas_resnet(pair):
    native, jr, wrapped, fv, x, names = pair
    target = targets.class_logit(2)
    close = partial(np.testing.assert_allclose, rtol=2e-3, atol=1e-5)
    got, want = explain.grad_cam(wrapped, fv, x, target), explain.grad_cam(native, jr, x, target)
    assert list(got) == list(names)                                   # "all" = every tapped spatial layer
    for ours, theirs in names.items():
        close(got[ours], want[theirs])
    acts, grads = explain.layer_gradients(wrapped, fv, x, target, layers="ResNetBlock_5")
    acts_native, grads_native = explain.layer_gradients(native, jr, x, target, layers="layer3.1")
    close(acts["ResNetBlock_5"], acts_native["layer3.1"])
    close(grads["ResNetBlock_5"], grads_native["layer3.1"])
    ig = explain.layer_integrated_gradients(wrapped, fv, x, "ResNetBlock_6", target, baseline=0.0, steps=4)
    ig_native = explain.layer_integrated_gradients(native, jr, x, "layer4.0", target, baseline=0.0, steps=4)
    close(ig.values, ig_native.values)
    for method in (explain.guided_backprop, explain.deconvnet):
        a, b = method(wrapped, fv, x, target), method(native, jr, x, target)
        assert float(jnp.abs(a - explain.saliency(explain.model_fn(wrapped, fv, target), x, abs=False)).max()) > 0
        close(a, b)


def test_selectors_and_errors():
    net = FlaxResNet((1, 1), num_classes=2, num_filters=4)
    x = jnp.ones((1, 17, 17, 3))
    convs = taps.layer_names(jaxretina.explainable(net, nn.Conv), x.shape)
    assert convs[0] == "conv_init" and "ResNetBlock_1/conv_proj" in convs and len(convs) == 6
    assert taps.layer_names(jaxretina.explainable(net, "ResNetBlock_1/*"), x.shape) == (
        "ResNetBlock_1/Conv_0", "ResNetBlock_1/BatchNorm_0", "ResNetBlock_1/Conv_1", "ResNetBlock_1/BatchNorm_1",
        "ResNetBlock_1/conv_proj", "ResNetBlock_1/norm_proj")
    assert taps.layer_names(jaxretina.explainable(net, lambda path, m: path.endswith("norm_proj")), x.shape) == (
        "ResNetBlock_1/norm_proj",)
    with pytest.raises(TypeError, match="expected a flax.linen Module"):
        jaxretina.explainable(lambda z: z)
    with pytest.raises(TypeError, match="layers must be 'all', module classes"):
        jaxretina.explainable(net, 3)
    with pytest.raises(ValueError, match="spatial_dims must be 2, 3 or None"):
        jaxretina.explainable(net, spatial_dims=4)
