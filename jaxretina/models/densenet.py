"""DenseNet (Huang et al., CVPR 2017) with torchvision's structure and names, in Flax.

``DenseNet121(num_classes=5)`` is the diabetic-retinopathy grader of seed 002.  Module paths
mirror torchvision's ``densenet121`` so state-dict keys map one to one
(``features.denseblock2.denselayer3.conv1.weight`` → ``params/features/denseblock2/
denselayer3/conv1/kernel``; BatchNorm ``running_mean``/``running_var`` live in the
``batch_stats`` collection).

Structure: ``conv0`` 7×7/2 (no bias) → ``norm0`` → ReLU → max pool 3/2 pad 1 → four dense
blocks (6, 12, 24, 16 layers; each layer BN → ReLU → 1×1 conv to 4·32 → BN → ReLU → 3×3 conv to
32, its input the concatenation of the block input and all earlier layers' outputs) with a
transition (BN → ReLU → 1×1 conv halving the channels → 2×2 average pool) between blocks →
``norm5`` → ReLU → global average pool → ``classifier``.  Eval mode uses the running BatchNorm
statistics (ε = 1e-5); ``train=True`` uses batch statistics and updates ``batch_stats``.

Shapes (NHWC): input (N, H, W, 3) float (ImageNet-normalised RGB, as torchvision expects);
output (N, num_classes) **logits**.  At 224×224 ``denseblock4`` is (N, 7, 7, 1024).

Tapped layers (names = torchvision module paths without ``features.``, each the output of
that module): ``conv0``, ``norm0``, ``pool0``, every ``denseblockB.denselayerL.conv1`` /
``.conv2``, every ``denseblockB`` (the concatenated block output), ``transitionB.conv``,
``transitionB`` (after its pool), ``norm5`` and ``classifier``.

Example::

    >>> import jax, jax.numpy as jnp
    >>> from jaxretina.models import DenseNet121
    >>> model = DenseNet121(num_classes=5)
    >>> x = jnp.zeros((1, 64, 64, 3))                     # 224 x 224 for ImageNet; at least 29 x 29
    >>> variables = jaxretina.models.random_variables(model, x.shape)   # or model.init(key, x)
    >>> jax.jit(model.apply)(variables, x).shape
    (1, 5)
"""

from __future__ import annotations

from typing import Callable, ClassVar

import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxretina.models.layers import avg_pool_2x2, max_pool_3x3_s2, normalize_input, torch_batch_norm
from jaxretina.models.stem import check_part, check_stem_output
from jaxretina.models.tap_points import TapPoints
from jaxretina.validate import check_image_batch

__all__ = ["DenseNet", "DenseNet121"]


def _conv(feats: int, k: int, name: str, dtype, stride: int = 1) -> nn.Conv:
    pad = k // 2
    return nn.Conv(feats, (k, k), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                   use_bias=False, dtype=dtype, name=name)


class _Part(nn.Module):
    """Shared fields of the submodules: the model's tap points, the tap-name prefix (the
    torchvision module path without ``features.``), the nonlinearity and the dtype."""

    tap: nn.Module
    prefix: str
    act: Callable
    dtype: jnp.dtype | None

    def bn_act_conv(self, x, train, bn: str, conv: str, feats: int, k: int):
        """torchvision's pre-activation unit: BatchNorm → act → conv (tapped)."""
        h = self.act(torch_batch_norm(bn, train, self.dtype)(x))
        return self.tap(f"{self.prefix}.{conv}", _conv(feats, k, conv, self.dtype)(h))


class _DenseLayer(_Part):
    growth_rate: int = 32
    bn_size: int = 4

    @nn.compact
    def __call__(self, x, train):
        h = self.bn_act_conv(x, train, "norm1", "conv1", self.bn_size * self.growth_rate, 1)
        return self.bn_act_conv(h, train, "norm2", "conv2", self.growth_rate, 3)


class _DenseBlock(_Part):
    num_layers: int = 6
    growth_rate: int = 32
    bn_size: int = 4

    @nn.compact
    def __call__(self, x, train):
        features = [x]
        for i in range(1, self.num_layers + 1):
            name = f"denselayer{i}"
            layer = _DenseLayer(tap=self.tap, prefix=f"{self.prefix}.{name}", act=self.act, dtype=self.dtype,
                                growth_rate=self.growth_rate, bn_size=self.bn_size, name=name)
            features.append(layer(jnp.concatenate(features, axis=-1), train))
        return jnp.concatenate(features, axis=-1)


class _Transition(_Part):
    features: int = 128

    @nn.compact
    def __call__(self, x, train):
        return avg_pool_2x2(self.bn_act_conv(x, train, "norm", "conv", self.features, 1))


class _Features(_Part):
    growth_rate: int = 32
    block_config: tuple[int, ...] = (6, 12, 24, 16)
    num_init_features: int = 64
    bn_size: int = 4

    @nn.compact
    def __call__(self, x, train, part="all"):
        tap = self.tap
        if part == "head":
            h = check_stem_output(x, self.num_init_features, "DenseNet")
        else:
            h = tap("conv0", _conv(self.num_init_features, 7, "conv0", self.dtype, stride=2)(x))
            h = tap("norm0", torch_batch_norm("norm0", train, self.dtype)(h))
            if part == "stem":
                return h
        h = tap("pool0", max_pool_3x3_s2(self.act(h)))
        channels = self.num_init_features
        shared = dict(tap=tap, act=self.act, dtype=self.dtype)
        for b, num_layers in enumerate(self.block_config, start=1):
            name = f"denseblock{b}"
            h = _DenseBlock(prefix=name, num_layers=num_layers, growth_rate=self.growth_rate, bn_size=self.bn_size,
                            name=name, **shared)(h, train)
            h = tap(name, h)
            channels += num_layers * self.growth_rate
            if b != len(self.block_config):
                name = f"transition{b}"
                channels //= 2
                h = tap(name, _Transition(prefix=name, features=channels, name=name, **shared)(h, train))
        return tap("norm5", torch_batch_norm("norm5", train, self.dtype)(h))


class DenseNet(nn.Module):
    """torchvision's DenseNet-BC; :func:`DenseNet121` fixes the DenseNet-121 configuration.

    Attributes:
      num_classes: outputs of ``classifier`` (1000 for ImageNet, 5 for DR grades).
      in_channels: input channels (3 for RGB; MONAI's ``DenseNet121(in_channels=1)`` for
        grayscale scans).
      growth_rate, block_config, num_init_features, bn_size: torchvision's arguments.
      act: the nonlinearity (``nn.relu``); swap it for guided backprop / deconvnet.
      normalization: ``None`` or ``((mean_c), (std_c))``: ``(x − mean) / std`` inside the model
        before the first convolution (part of the affine stem), e.g.
        ``preprocess.imagenet_normalization(255.0)`` to explain 0..255 pixels.
      dtype: computation dtype (parameters stay float32).
    """

    spatial_dims: ClassVar[int] = 2
    AFFINE_STEM: ClassVar[bool] = True  # part="stem" is affine in the image when train=False

    num_classes: int = 1000
    in_channels: int = 3
    growth_rate: int = 32
    block_config: tuple[int, ...] = (6, 12, 24, 16)
    num_init_features: int = 64
    bn_size: int = 4
    act: Callable[[jax.Array], jax.Array] = nn.relu
    dtype: jnp.dtype | None = None
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False, part: str = "all") -> jax.Array:
        """``part``: ``"all"`` (image -> logits), ``"stem"`` (image -> ``norm0``'s output, before
        its ReLU: conv0 and, in eval mode, an affine BatchNorm) or ``"head"`` (that -> logits).
        ``head(stem(x)) == model(x)``; the stem is affine only with ``train=False``."""
        check_part(part)
        if part != "head":
            check_image_batch(x, channels=self.in_channels, name="DenseNet input")
            if x.shape[1] < 29 or x.shape[2] < 29:
                raise ValueError(f"DenseNet input: images need at least 29x29 pixels (five 2x downsamplings); "
                                 f"found {x.shape[1]}x{x.shape[2]}")
        if self.dtype is not None:
            x = x.astype(self.dtype)
        if part != "head":
            x = normalize_input(x, self.normalization)
        tap = TapPoints(name="taps")
        h = _Features(tap=tap, prefix="", act=self.act, dtype=self.dtype, growth_rate=self.growth_rate,
                      block_config=tuple(self.block_config), num_init_features=self.num_init_features,
                      bn_size=self.bn_size, name="features")(x, train, part)
        if part == "stem":
            return h
        h = tap("relu5", self.act(h))   # torchvision's F.relu after norm5; MONAI's class_layers.relu
        h = jnp.mean(h, axis=(1, 2))
        return tap("classifier", nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(h))

    def shape_probe(self) -> tuple["DenseNet", jax.Array]:
        """A module and input whose ``init`` has this model's variable shapes."""
        return self, jnp.zeros((1, 64, 64, self.in_channels), jnp.float32)

    def layer_aliases(self) -> dict[str, str]:
        """Other names of the layers: the PyTorch module paths of torchvision's DenseNet
        (``features.denseblock1``, ``features.transition1.pool``, ``classifier``) and of MONAI's
        (``features.denseblock1.denselayer1.layers.conv1``, ``class_layers.relu``,
        ``class_layers.out``), so that a layer named as in a Captum, pytorch-grad-cam or MONAI
        script resolves; results are keyed by the name asked for."""
        out = {}
        for name in self.layer_names():
            if name == "classifier":
                out["class_layers.out"] = name
                continue
            if name == "relu5":
                out["class_layers.relu"] = name
                continue
            out[f"features.{name}"] = name
            if ".denselayer" in name:  # MONAI keeps a layer's modules in `.layers`
                block, layer, conv = name.split(".")
                out[f"features.{block}.{layer}.layers.{conv}"] = name
            if name.startswith("transition") and "." not in name:
                out[f"features.{name}.pool"] = name   # a transition's output is its pool's
        return out

    def layer_names(self) -> tuple[str, ...]:
        """Explainable layers in execution order."""
        names = ["conv0", "norm0", "pool0"]
        for b, num_layers in enumerate(self.block_config, start=1):
            for i in range(1, num_layers + 1):
                names += [f"denseblock{b}.denselayer{i}.conv1", f"denseblock{b}.denselayer{i}.conv2"]
            names.append(f"denseblock{b}")
            if b != len(self.block_config):
                names += [f"transition{b}.conv", f"transition{b}"]
        return tuple(names) + ("norm5", "relu5", "classifier")


class DenseNet121(DenseNet):
    """DenseNet-121 (torchvision ``densenet121``): growth 32, blocks (6, 12, 24, 16), 64 initial
    features, bottleneck 4 — the defaults of :class:`DenseNet`; set ``num_classes``."""
