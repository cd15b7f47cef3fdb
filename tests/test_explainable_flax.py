"""Any Flax module, unmodified: a ResNet written here in the style of Flax's own ImageNet example
(its own blocks, ``nn.relu`` inline, no jaxretina layer), wrapped with ``jaxretina.explainable``,
gives the same maps as jaxretina's ``ResNet`` with the same weights — all-layer Grad-CAM, layer
gradients, layer IG, guided backprop and deconvnet."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Sequence

import numpy as np
import pytest
import jax
import jax.numpy as jnp
import flax.linen as nn

import jaxretina
from jaxretina import explain, targets, taps
from jaxretina.models import ResNet, substitute


class ResNetBlock(nn.Module):
    filters: int
    conv: Any
    norm: Any
    act: Callable
    strides: tuple[int, int] = (1, 1)

    @nn.compact
    def __call__(self, x):
        residual = x
        y = self.conv(self.filters, (3, 3), self.strides)(x)
        y = self.act(self.norm()(y))
        y = self.conv(self.filters, (3, 3))(y)
        y = self.norm()(y)
        if residual.shape != y.shape:
            residual = self.conv(self.filters, (1, 1), self.strides, name="conv_proj")(residual)
            residual = self.norm(name="norm_proj")(residual)
        return self.act(residual + y)


class FlaxResNet(nn.Module):
    """Flax's examples/imagenet ResNet (v1.5), as written there: SAME padding (equal to
    torchvision's at odd sizes), ``nn.relu`` passed in, BatchNorm with running averages."""

    stage_sizes: Sequence[int]
    num_classes: int
    num_filters: int = 64

    @nn.compact
    def __call__(self, x, train: bool = False):
        conv = partial(nn.Conv, use_bias=False)
        norm = partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5)
        x = conv(self.num_filters, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], name="conv_init")(x)
        x = nn.relu(norm(name="bn_init")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for i, block_size in enumerate(self.stage_sizes):
            for j in range(block_size):
                strides = (2, 2) if i > 0 and j == 0 else (1, 1)
                x = ResNetBlock(self.num_filters * 2 ** i, strides=strides, conv=conv, norm=norm, act=nn.relu)(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes)(x)


def flax_variables(jr: dict, stages=(2, 2, 2, 2)) -> dict:
    """jaxretina ResNet18 variables renamed to the Flax example's module names."""
    params, stats = jr["params"], jr["batch_stats"]
    out_p = {"conv_init": params["conv1"], "bn_init": params["bn1"], "Dense_0": params["fc"]}
    out_s = {"bn_init": stats["bn1"]}
    k = 0
    for s, count in enumerate(stages, start=1):
        for b in range(count):
            src_p, src_s, name = params[f"layer{s}.{b}"], stats[f"layer{s}.{b}"], f"ResNetBlock_{k}"
            block_p = {"Conv_0": src_p["conv1"], "BatchNorm_0": src_p["bn1"], "Conv_1": src_p["conv2"],
                       "BatchNorm_1": src_p["bn2"]}
            block_s = {"BatchNorm_0": src_s["bn1"], "BatchNorm_1": src_s["bn2"]}
            if "downsample.0" in src_p:
                block_p.update(conv_proj=src_p["downsample.0"], norm_proj=src_p["downsample.1"])
                block_s["norm_proj"] = src_s["downsample.1"]
            out_p[name], out_s[name] = block_p, block_s
            k += 1
    return {"params": out_p, "batch_stats": out_s}


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
    x = jnp.asarray(np.random.default_rng(1).standard_normal((65, 65, 3)), jnp.float32)   # odd: SAME == torchvision
    # names in order: the Flax example's blocks <-> jaxretina's block taps
    names = dict(zip(taps.layer_names(wrapped, (1, *x.shape)), [f"layer{s}.{b}" for s in range(1, 5) for b in range(2)]))
    return native, jr, wrapped, flax_variables(jr), x, names


def test_same_function_and_the_wrapper_takes_the_modules_own_variables(pair):
    native, jr, wrapped, fv, x, names = pair
    assert list(names) == [f"ResNetBlock_{k}" for k in range(8)]
    want = jax.jit(native.apply)(jr, x[None])
    np.testing.assert_allclose(jax.jit(wrapped.module.apply)(fv, x[None]), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(jax.jit(wrapped.apply)(fv, x[None]), want, rtol=1e-4, atol=1e-5)
    assert substitute.count_relus(lambda v, z: wrapped.module.apply(v, z), fv, x[None]) == 17


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
