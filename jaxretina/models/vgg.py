"""VGG (Simonyan & Zisserman, ICLR 2015) with torchvision's structure and names, in Flax.

``VGG16(num_classes=2)`` is one of seed 002's graders; seed 004 checks its feature
visualisations on VGG16 and VGG19 with Keras's ImageNet weights.  Module paths are
torchvision's flat ``features.N`` / ``classifier.N`` (``features.28.weight`` →
``params/features.28/kernel``), so state dicts map one to one.

Structure: 3×3 convs (pad 1; ``batch_norm=True``: each followed by BatchNorm) with ReLU, a 2×2/2
max pool after each of five stages (11: 1-1-2-2-2 convs per stage, 13: 2-2-2-2-2, 16:
2-2-3-3-3, 19: 2-2-4-4-4; widths 64, 128, 256, 512, 512) → ``avgpool`` (adaptive average to
7×7: the identity at 224×224) → ``classifier.0`` (25088 → 4096) → ReLU → dropout →
``classifier.3`` (4096 → 4096) → ReLU → dropout → ``classifier.6`` (→ classes).  Flattening is
channels-last here (Keras's order); the torchvision converter permutes ``classifier.0``'s rows
from torchvision's channels-first flatten, so the same weights give the same function.

Shapes (NHWC): input (N, H, W, 3) (H, W ≥ 32); output (N, num_classes) **logits** (Keras's
``predictions`` applies a softmax after them).

Tapped layers (torchvision module paths, each that module's output): every ReLU after a conv
(``features.1``, ``features.3``, …), every pool (``features.4``, …), ``avgpool``,
``classifier.1``, ``classifier.4`` (the ReLUs after the hidden linears) and ``classifier.6``.
Aliases: Keras's names (``block1_conv1`` … ``block5_conv3``/``_conv4``, ``block5_pool``,
``fc1``, ``fc2``, ``predictions``) and ``features`` (the last pool).

Example::

    >>> model = VGG11(num_classes=3)
    >>> variables = jaxretina.models.random_variables(model)
    >>> jax.jit(model.apply)(variables, jnp.zeros((1, 32, 32, 3))).shape
    (1, 3)
    >>> model.layer_aliases()["block2_conv1"], model.layer_names()[:3]
    ('features.4', ('features.1', 'features.2', 'features.4'))
"""

from __future__ import annotations

from typing import Callable, ClassVar

import numpy as np
import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxretina.models.layers import max_pool_2x2, normalize_input, torch_batch_norm
from jaxretina.models.stem import check_part, check_stem_output
from jaxretina.models.tap_points import TapPoints
from jaxretina.validate import check_image_batch

__all__ = ["VGG", "VGG11", "VGG13", "VGG16", "VGG19", "CONFIGS", "KERAS_CAFFE_NORMALIZATION", "adaptive_avg_pool", "layout_of"]

# torchvision's cfgs: output channels of each conv, "M" for a max pool
CONFIGS = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}
# Keras applications' "caffe" preprocessing as a model normalisation of BGR input: x - mean (BGR order)
KERAS_CAFFE_NORMALIZATION = ((103.939, 116.779, 123.68), (1.0, 1.0, 1.0))


def _bins(size: int, out: int) -> np.ndarray:
    """``(out, size)`` averaging matrix of PyTorch's adaptive pooling: row ``i`` averages
    ``[floor(i·size/out), ceil((i+1)·size/out))``."""
    m = np.zeros((out, size), np.float32)
    for i in range(out):
        lo, hi = (i * size) // out, -((-(i + 1) * size) // out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def adaptive_avg_pool(x: jax.Array, out: tuple[int, int] = (7, 7)) -> jax.Array:
    """PyTorch's ``AdaptiveAvgPool2d(out)`` on (N, H, W, C): two small matrix products, exact
    (each output cell the mean of its bin; the identity when ``(H, W) == out``)."""
    if x.shape[1:3] == tuple(out):
        return x
    mh, mw = (jnp.asarray(_bins(n, o), x.dtype) for n, o in zip(x.shape[1:3], out))
    return jnp.einsum("ih,jw,nhwc->nijc", mh, mw, x)


def layout_of(depth: int, batch_norm: bool):
    """``[(kind, torchvision index, channels, keras name)]`` for kind ``conv`` (index of the
    conv; its BatchNorm is index + 1, its ReLU the next) and ``pool``."""
    if depth not in CONFIGS:
        raise ValueError(f"VGG: depth must be one of {sorted(CONFIGS)}; found {depth!r}")
    out, i, block, conv = [], 0, 1, 1
    for v in CONFIGS[depth]:
        if v == "M":
            out.append(("pool", i, None, f"block{block}_pool"))
            i, block, conv = i + 1, block + 1, 1
        else:
            out.append(("conv", i, v, f"block{block}_conv{conv}"))
            i, conv = i + (3 if batch_norm else 2), conv + 1
    return out


class VGG(nn.Module):
    """torchvision's VGG; :class:`VGG11` … :class:`VGG19` fix ``depth``.

    Attributes:
      depth: 11, 13, 16 or 19.
      batch_norm: torchvision's ``vgg*_bn`` (BatchNorm after each conv).
      num_classes: outputs of ``classifier.6``.
      hidden: width of the two hidden linear layers (4096 in every published VGG).
      in_channels: input channels.
      normalization: ``None`` or ``((mean_c), (std_c))`` applied inside before the first conv
        (Keras weights: :data:`KERAS_CAFFE_NORMALIZATION` with ``input_bgr=True``, so the
        model reads 0..255 RGB pixels).
      input_bgr: reverse the input's channels first (weights trained on BGR input).
      include_top: ``False``: the network ends at the last pool (output (N, h, w, 512)), as
        Keras's ``include_top=False`` ("notop") files and torchvision's ``features``.
      act: the nonlinearity; swapped for guided backprop / deconvnet.
      dtype: computation dtype.
    """

    spatial_dims: ClassVar[int] = 2
    AFFINE_STEM: ClassVar[bool] = True  # part="stem": normalisation, the first conv (+ BatchNorm in eval)

    depth: int = 16
    batch_norm: bool = False
    num_classes: int = 1000
    in_channels: int = 3
    hidden: int = 4096
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    input_bgr: bool = False
    include_top: bool = True
    act: Callable[[jax.Array], jax.Array] = nn.relu
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False, part: str = "all") -> jax.Array:
        """``part``: ``"all"``, ``"stem"`` (image -> the first conv's (BatchNorm's) output,
        before its ReLU) or ``"head"`` (that -> logits)."""
        check_part(part)
        layout = layout_of(self.depth, self.batch_norm)
        if self.dtype is not None:
            x = x.astype(self.dtype)
        tap = TapPoints(name="taps")
        first = True
        if part == "head":
            h = check_stem_output(x, layout[0][2], "VGG")
        else:
            check_image_batch(x, channels=self.in_channels, name="VGG input")
            if x.shape[1] < 32 or x.shape[2] < 32:
                raise ValueError(f"VGG input: images need at least 32x32 pixels (five 2x poolings); "
                                 f"found {x.shape[1]}x{x.shape[2]}")
            if self.input_bgr:
                x = x[..., ::-1]
            h = normalize_input(x, self.normalization)
        for kind, i, feats, _ in layout:
            if kind == "pool":
                h = tap(f"features.{i}", max_pool_2x2(h, ceil_mode=False))
                continue
            if not (first and part == "head"):
                h = nn.Conv(feats, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, name=f"features.{i}")(h)
                if self.batch_norm:
                    h = torch_batch_norm(f"features.{i + 1}", train, self.dtype)(h)
                if first and part == "stem":
                    return h
            first = False
            h = tap(f"features.{i + (2 if self.batch_norm else 1)}", self.act(h))
        if not self.include_top:
            return h
        h = tap("avgpool", adaptive_avg_pool(h, (7, 7)))
        h = h.reshape(h.shape[0], -1)
        for i in (0, 3):
            h = tap(f"classifier.{i + 1}", self.act(nn.Dense(self.hidden, dtype=self.dtype, name=f"classifier.{i}")(h)))
            h = nn.Dropout(0.5, deterministic=not train)(h)
        return tap("classifier.6", nn.Dense(self.num_classes, dtype=self.dtype, name="classifier.6")(h))

    def shape_probe(self) -> tuple["VGG", jax.Array]:
        """A module and input whose ``init`` has this model's variable shapes."""
        return self, jnp.zeros((1, 32, 32, self.in_channels), jnp.float32)

    def layer_names(self) -> tuple[str, ...]:
        """Tap names in execution order (the same for every input size)."""
        relu = 2 if self.batch_norm else 1
        names = [f"features.{i + relu}" if kind == "conv" else f"features.{i}"
                 for kind, i, _, _ in layout_of(self.depth, self.batch_norm)]
        top = ("avgpool", "classifier.1", "classifier.4", "classifier.6") if self.include_top else ()
        return (*names, *top)

    def layer_aliases(self) -> dict[str, str]:
        """Keras applications' layer names and ``features`` (the last pool)."""
        relu = 2 if self.batch_norm else 1
        layout = layout_of(self.depth, self.batch_norm)
        aliases = {keras: f"features.{i + relu}" if kind == "conv" else f"features.{i}" for kind, i, _, keras in layout}
        aliases["features"] = f"features.{layout[-1][1]}"
        if self.include_top:
            aliases.update({"fc1": "classifier.1", "fc2": "classifier.4", "predictions": "classifier.6"})
        return aliases


class VGG11(VGG):
    """VGG-11 (torchvision ``vgg11``; ``batch_norm=True``: ``vgg11_bn``)."""

    depth: int = 11


class VGG13(VGG):
    """VGG-13 (torchvision ``vgg13`` / ``vgg13_bn``)."""

    depth: int = 13


class VGG16(VGG):
    """VGG-16 (torchvision ``vgg16`` / ``vgg16_bn``; Keras ``VGG16``)."""

    depth: int = 16


class VGG19(VGG):
    """VGG-19 (torchvision ``vgg19`` / ``vgg19_bn``; Keras ``VGG19``)."""

    depth: int = 19
