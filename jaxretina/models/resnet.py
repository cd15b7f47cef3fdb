"""ResNet (He et al., CVPR 2016) with torchvision's structure and names, in Flax; Keras's
variant by option.

``ResNet101(num_classes=2)`` is one of seed 002's graders.  Module paths are torchvision's
(``layer3.22.conv2.weight`` → ``params/layer3.22/conv2/kernel``; BatchNorm statistics in
``batch_stats``), so state dicts map one to one.

Structure: ``conv1`` 7×7/2 pad 3 → ``bn1`` → ReLU → max pool 3/2 pad 1 → ``layer1`` …
``layer4`` (blocks per stage: 18 = 2-2-2-2 and 34 = 3-4-6-3 BasicBlocks, two 3×3 convs;
50 = 3-4-6-3, 101 = 3-4-23-3, 152 = 3-8-36-3 Bottlenecks, 1×1 → 3×3 → 1×1 with expansion 4;
a 1×1 projection ``downsample.0``/``.1`` where the shape changes) → global average pool →
``fc``.  torchvision strides the 3×3 conv of a stage's first Bottleneck ("v1.5");
Keras applications' ResNet50/101/152 stride its first 1×1 conv, give every conv a bias and
use BatchNorm ε = 1.001e-5 — ``stride_in_1x1=True, conv_bias=True, bn_eps=1.001e-5``
(:data:`KERAS_OPTIONS`, which the Keras converter sets): a different function with the same
shapes.

Shapes (NHWC): input (N, H, W, 3) float (ImageNet-normalised RGB for torchvision weights, or
0..255 pixels with ``normalization`` set); output (N, num_classes) **logits**.  At 224×224
``layer4`` is (N, 7, 7, 2048) (512 for 18/34).

Tapped layers (torchvision module paths, each the output of that module): ``relu`` (the stem
after ``bn1``'s ReLU), ``maxpool``, every block ``layerS.B`` and ``fc``.  Aliases: the stage
``layerS`` (its last block; pytorch-grad-cam's usual ``model.layer4[-1]``) and Keras's names
(``conv1_relu``, ``pool1_pool``, ``conv{S+1}_block{B+1}_out``, ``predictions``).

Example::

    >>> model = ResNet18(num_classes=5)
    >>> variables = jaxretina.models.random_variables(model)
    >>> jax.jit(model.apply)(variables, jnp.zeros((1, 64, 64, 3))).shape
    (1, 5)
    >>> model.layer_names()[:4]
    ('relu', 'maxpool', 'layer1.0', 'layer1.1')
"""

from __future__ import annotations

from typing import Callable, ClassVar

import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxretina.models.layers import max_pool_3x3_s2, normalize_input, torch_batch_norm
from jaxretina.models.stem import check_part, check_stem_output
from jaxretina.models.tap_points import TapPoints
from jaxretina.validate import check_image_batch

__all__ = ["ResNet", "ResNet18", "ResNet34", "ResNet50", "ResNet101", "ResNet152", "STAGES", "KERAS_OPTIONS"]

# depth -> (bottleneck?, blocks per stage)
STAGES = {18: (False, (2, 2, 2, 2)), 34: (False, (3, 4, 6, 3)), 50: (True, (3, 4, 6, 3)),
          101: (True, (3, 4, 23, 3)), 152: (True, (3, 8, 36, 3))}
KERAS_OPTIONS = {"stride_in_1x1": True, "conv_bias": True, "bn_eps": 1.001e-5}
WIDTHS = (64, 128, 256, 512)


class _Block(nn.Module):
    """One BasicBlock or Bottleneck (torchvision's), output after the final ReLU."""

    planes: int
    stride: int
    bottleneck: bool
    project: bool
    stride_in_1x1: bool
    conv_bias: bool
    bn_eps: float
    act: Callable
    dtype: jnp.dtype | None

    def conv(self, feats, k, stride, name):
        pad = k // 2
        return nn.Conv(feats, (k, k), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                       use_bias=self.conv_bias, dtype=self.dtype, name=name)

    def bn(self, name, train):
        return torch_batch_norm(name, train, self.dtype, epsilon=self.bn_eps)

    @nn.compact
    def __call__(self, x, train):
        s = self.stride
        if self.bottleneck:
            first, second = (s, 1) if self.stride_in_1x1 else (1, s)
            h = self.act(self.bn("bn1", train)(self.conv(self.planes, 1, first, "conv1")(x)))
            h = self.act(self.bn("bn2", train)(self.conv(self.planes, 3, second, "conv2")(h)))
            h = self.bn("bn3", train)(self.conv(4 * self.planes, 1, 1, "conv3")(h))
        else:
            h = self.act(self.bn("bn1", train)(self.conv(self.planes, 3, s, "conv1")(x)))
            h = self.bn("bn2", train)(self.conv(self.planes, 3, 1, "conv2")(h))
        if self.project:
            x = self.bn("downsample.1", train)(self.conv(h.shape[-1], 1, s, "downsample.0")(x))
        return self.act(h + x)


class ResNet(nn.Module):
    """torchvision's ResNet; :class:`ResNet18` … :class:`ResNet152` fix ``depth``.

    Attributes:
      depth: 18, 34, 50, 101 or 152.
      num_classes: outputs of ``fc``.
      in_channels: input channels.
      stride_in_1x1, conv_bias, bn_eps: torchvision's (``False``, ``False``, 1e-5) or Keras
        applications' (:data:`KERAS_OPTIONS`) variant.
      normalization: ``None`` or ``((mean_c), (std_c))`` applied inside, before ``conv1`` (part
        of the affine stem), e.g. ``preprocess.imagenet_normalization(255.0)`` for 0..255 pixels.
      input_bgr: the first convolution reads BGR (Keras's and Caffe's weights): the model
        reverses the channels of its RGB input first (before ``normalization``, whose values are
        then in BGR order).
      include_top: ``False``: the network ends at ``layer4`` (output (N, h, w, 2048 or 512)), as
        Keras's ``include_top=False`` ("notop") files.
      act: the nonlinearity (``nn.relu``); swapped for guided backprop / deconvnet.
      dtype: computation dtype (parameters stay float32).
    """

    spatial_dims: ClassVar[int] = 2
    AFFINE_STEM: ClassVar[bool] = True  # part="stem" (conv1, bn1 in eval mode) is affine in the image

    depth: int = 50
    num_classes: int = 1000
    in_channels: int = 3
    stride_in_1x1: bool = False
    conv_bias: bool = False
    bn_eps: float = 1e-5
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    input_bgr: bool = False
    include_top: bool = True
    act: Callable[[jax.Array], jax.Array] = nn.relu
    dtype: jnp.dtype | None = None

    def _stages(self) -> tuple[bool, tuple[int, ...]]:
        if self.depth not in STAGES:
            raise ValueError(f"ResNet: depth must be one of {sorted(STAGES)}; found {self.depth!r}")
        return STAGES[self.depth]

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False, part: str = "all") -> jax.Array:
        """``part``: ``"all"`` (image -> logits), ``"stem"`` (image -> ``bn1``'s output before
        its ReLU) or ``"head"`` (that -> logits); ``head(stem(x)) == model(x)``, the stem
        affine with ``train=False``."""
        check_part(part)
        bottleneck, blocks = self._stages()
        if self.dtype is not None:
            x = x.astype(self.dtype)
        tap = TapPoints(name="taps")
        if part == "head":
            h = check_stem_output(x, 64, "ResNet")
        else:
            check_image_batch(x, channels=self.in_channels, name="ResNet input")
            if self.input_bgr:
                x = x[..., ::-1]
            x = normalize_input(x, self.normalization)
            h = nn.Conv(64, (7, 7), strides=(2, 2), padding=((3, 3), (3, 3)), use_bias=self.conv_bias,
                        dtype=self.dtype, name="conv1")(x)
            h = torch_batch_norm("bn1", train, self.dtype, epsilon=self.bn_eps)(h)
            if part == "stem":
                return h
        h = tap("relu", self.act(h))
        h = tap("maxpool", max_pool_3x3_s2(h))
        channels = 64
        for stage, (planes, count) in enumerate(zip(WIDTHS, blocks), start=1):
            for b in range(count):
                stride = 2 if (b == 0 and stage > 1) else 1
                out = planes * (4 if bottleneck else 1)
                name = f"layer{stage}.{b}"
                h = tap(name, _Block(planes, stride, bottleneck, stride != 1 or channels != out, self.stride_in_1x1,
                                     self.conv_bias, self.bn_eps, self.act, self.dtype, name=name)(h, train))
                channels = out
        if not self.include_top:
            return h
        h = jnp.mean(h, axis=(1, 2))
        return tap("fc", nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(h))

    def shape_probe(self) -> tuple["ResNet", jax.Array]:
        """A module and input whose ``init`` has this model's variable shapes."""
        return self, jnp.zeros((1, 32, 32, self.in_channels), jnp.float32)

    def layer_names(self) -> tuple[str, ...]:
        """Tap names in execution order (the same for every input size)."""
        _, blocks = self._stages()
        names = ["relu", "maxpool"]
        for stage, count in enumerate(blocks, start=1):
            names += [f"layer{stage}.{b}" for b in range(count)]
        return (*names, "fc") if self.include_top else tuple(names)

    def layer_aliases(self) -> dict[str, str]:
        """torchvision stage names (``layer4`` → its last block) and Keras applications' names."""
        _, blocks = self._stages()
        aliases = {"conv1_relu": "relu", "pool1_pool": "maxpool", **({"predictions": "fc"} if self.include_top else {})}
        for stage, count in enumerate(blocks, start=1):
            aliases[f"layer{stage}"] = f"layer{stage}.{count - 1}"
            for b in range(count):
                aliases[f"conv{stage + 1}_block{b + 1}_out"] = f"layer{stage}.{b}"
        return aliases


class ResNet18(ResNet):
    """ResNet-18 (torchvision ``resnet18``)."""

    depth: int = 18


class ResNet34(ResNet):
    """ResNet-34 (torchvision ``resnet34``)."""

    depth: int = 34


class ResNet50(ResNet):
    """ResNet-50 (torchvision ``resnet50``; Keras ``ResNet50`` with :data:`KERAS_OPTIONS`)."""

    depth: int = 50


class ResNet101(ResNet):
    """ResNet-101 (torchvision ``resnet101``; Keras ``ResNet101`` with :data:`KERAS_OPTIONS`)."""

    depth: int = 101


class ResNet152(ResNet):
    """ResNet-152 (torchvision ``resnet152``; Keras ``ResNet152`` with :data:`KERAS_OPTIONS`)."""

    depth: int = 152
