"""A ResNet written in the style of Flax's own examples/imagenet (its blocks, ``nn.relu``
passed in, SAME padding, BatchNorm with running averages) — not jaxretina's layers — and the
renaming of jaxretina ``ResNet`` variables to its module names.  SAME padding equals
torchvision's (pad 1 for 3×3/2, pad 0 for 1×1/2) when every stride-2 input side is odd
(inputs of 65, 129, 193, … pixels), so the two networks are then the same function."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Sequence

import jax.numpy as jnp
import flax.linen as nn

__all__ = ["ResNetBlock", "BottleneckResNetBlock", "FlaxResNet", "flax_variables"]


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


class BottleneckResNetBlock(nn.Module):
    filters: int
    conv: Any
    norm: Any
    act: Callable
    strides: tuple[int, int] = (1, 1)

    @nn.compact
    def __call__(self, x):
        residual = x
        y = self.conv(self.filters, (1, 1))(x)
        y = self.act(self.norm()(y))
        y = self.conv(self.filters, (3, 3), self.strides)(y)
        y = self.act(self.norm()(y))
        y = self.conv(self.filters * 4, (1, 1))(y)
        y = self.norm()(y)
        if residual.shape != y.shape:
            residual = self.conv(self.filters * 4, (1, 1), self.strides, name="conv_proj")(residual)
            residual = self.norm(name="norm_proj")(residual)
        return self.act(residual + y)


class FlaxResNet(nn.Module):
    """Flax's examples/imagenet ResNet (v1.5), as written there: SAME padding (equal to
    torchvision's at odd sizes), ``nn.relu`` passed in, BatchNorm with running averages."""

    stage_sizes: Sequence[int]
    num_classes: int
    num_filters: int = 64
    block_cls: Any = ResNetBlock

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
                x = self.block_cls(self.num_filters * 2 ** i, strides=strides, conv=conv, norm=norm, act=nn.relu)(x)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes)(x)


def flax_variables(jr: dict, stages=(2, 2, 2, 2), bottleneck: bool = False) -> dict:
    """jaxretina ResNet variables renamed to the Flax example's module names (``stages``:
    blocks per stage; ``bottleneck``: ResNet-50 and deeper)."""
    params, stats = jr["params"], jr["batch_stats"]
    out_p = {"conv_init": params["conv1"], "bn_init": params["bn1"], "Dense_0": params["fc"]}
    out_s = {"bn_init": stats["bn1"]}
    k = 0
    for s, count in enumerate(stages, start=1):
        for b in range(count):
            src_p, src_s = params[f"layer{s}.{b}"], stats[f"layer{s}.{b}"]
            name = f"{'BottleneckResNetBlock' if bottleneck else 'ResNetBlock'}_{k}"
            convs = 3 if bottleneck else 2
            block_p = {f"Conv_{i}": src_p[f"conv{i + 1}"] for i in range(convs)}
            block_p.update({f"BatchNorm_{i}": src_p[f"bn{i + 1}"] for i in range(convs)})
            block_s = {f"BatchNorm_{i}": src_s[f"bn{i + 1}"] for i in range(convs)}
            if "downsample.0" in src_p:
                block_p.update(conv_proj=src_p["downsample.0"], norm_proj=src_p["downsample.1"])
                block_s["norm_proj"] = src_s["downsample.1"]
            out_p[name], out_s[name] = block_p, block_s
            k += 1
    return {"params": out_p, "batch_stats": out_s}


