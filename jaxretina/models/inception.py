"""Inception V3 (Szegedy et al., CVPR 2016) with torchvision's structure and names, in Flax.

The diabetic-retinopathy grader of seed 001 is an ImageNet Inception V3 without its top, two
added fully connected layers and a 5-way softmax: ``InceptionV3(head="seed001")``.  With
``head="torchvision"`` (default) the top is torchvision's ``fc`` (2048 → ``num_classes``).
Module paths mirror torchvision's ``inception_v3`` so state-dict keys map one to one
(``Mixed_6b.branch7x7_2.conv.weight`` → ``params/Mixed_6b/branch7x7_2/conv/kernel``; BatchNorm
``running_mean``/``running_var`` → ``batch_stats``).

Structure: ``Conv2d_1a_3x3`` (3×3/2) → ``Conv2d_2a_3x3`` → ``Conv2d_2b_3x3`` (pad 1) → max pool
3/2 → ``Conv2d_3b_1x1`` → ``Conv2d_4a_3x3`` → max pool 3/2 → ``Mixed_5b/5c/5d`` (InceptionA) →
``Mixed_6a`` (B) → ``Mixed_6b/6c/6d/6e`` (C, factorised 7×7) → ``Mixed_7a`` (D) →
``Mixed_7b/7c`` (E) → global average pool → (dropout 0.5 in training) → top.  Every
convolution is torchvision's ``BasicConv2d``: conv without bias → BatchNorm (ε = 0.001) → ReLU.
Max pools are 3×3 stride 2 without padding (floor); the branch average pools 3×3 stride 1
pad 1 count the padding (PyTorch's default).  ``aux_logits=True`` adds ``AuxLogits`` on
``Mixed_6e`` (its parameters load from torchvision files; its output is returned in training
only, as torchvision does).  ``transform_input=True`` is torchvision's re-normalisation of
ImageNet-normalised input to the ``(x − 0.5)/0.5`` range the Google weights expect (its
pretrained ``inception_v3`` sets it).

Shapes (NHWC): input (N, H, W, 3) float, H, W ≥ 75 (≥ 299 to initialise or train with
``aux_logits``); output (N, num_classes) **logits**.  At
299×299 ``Mixed_7c`` is (N, 8, 8, 2048); at 256×256 (seed 001) (N, 6, 6, 2048).

Tapped layers (torchvision module paths): every ``BasicConv2d`` (e.g. ``Conv2d_4a_3x3``,
``Mixed_5b.branch5x5_2``; post-ReLU), every ``Mixed_*`` block output, ``fc`` (torchvision
head) or ``head.fc1``, ``head.fc2``, ``head.out`` (seed 001 head).

Example::

    >>> import jax, jax.numpy as jnp
    >>> from jaxretina.models import InceptionV3
    >>> model = InceptionV3(num_classes=5, head="seed001")
    >>> x = jnp.zeros((1, 96, 96, 3))                         # seed 001: 256 x 256; at least 75 x 75
    >>> variables = jaxretina.models.random_variables(model, x.shape)    # or model.init(key, x)
    >>> jax.jit(model.apply)(variables, x).shape
    (1, 5)
"""

from __future__ import annotations

from typing import Callable, ClassVar

import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxretina.models.layers import IMAGENET_NORMALIZATION, avg_pool_3x3_s1, max_pool_3x3_s2, normalize_input, torch_batch_norm
from jaxretina.models.stem import check_part, check_stem_output
from jaxretina.models.tap_points import TapPoints
from jaxretina.validate import check_image_batch

__all__ = ["InceptionV3", "HEADS", "AUX_MIN_SIZE"]

HEADS = ("torchvision", "seed001")
_MIN_SIZE = 75  # torchvision's own minimum: every stride and valid convolution leaves >= 1 pixel
AUX_MIN_SIZE = 299  # with AuxLogits (init or training): Mixed_6e >= 17x17


class _BasicConv(nn.Module):
    """torchvision ``BasicConv2d``: conv (no bias) → BatchNorm (ε 0.001) → act (``skip_act``:
    without the act — the affine stem's output)."""

    feats: int
    kernel: tuple[int, int]
    stride: int = 1
    padding: tuple[int, int] = (0, 0)
    act: Callable = nn.relu
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x, train, *, skip_act=False):
        (ph, pw) = self.padding
        x = nn.Conv(self.feats, self.kernel, strides=(self.stride, self.stride), padding=((ph, ph), (pw, pw)),
                    use_bias=False, dtype=self.dtype, name="conv")(x)
        x = torch_batch_norm("bn", train, self.dtype, epsilon=1e-3)(x)  # torchvision: BatchNorm2d(eps=0.001)
        return x if skip_act else self.act(x)


class _Block(nn.Module):
    """Shared fields of the Inception blocks: tap points, tap-name prefix, act, dtype."""

    tap: nn.Module
    prefix: str
    act: Callable
    dtype: jnp.dtype | None

    def conv(self, x, train, name, feats, kernel, stride=1, padding=(0, 0)):
        if isinstance(kernel, int):
            kernel = (kernel, kernel)
        if isinstance(padding, int):
            padding = (padding, padding)
        layer = _BasicConv(feats, kernel, stride, padding, act=self.act, dtype=self.dtype, name=name)
        return self.tap(f"{self.prefix}.{name}", layer(x, train))


class _InceptionA(_Block):
    pool_features: int = 32

    @nn.compact
    def __call__(self, x, train):
        b1 = self.conv(x, train, "branch1x1", 64, 1)
        b5 = self.conv(self.conv(x, train, "branch5x5_1", 48, 1), train, "branch5x5_2", 64, 5, padding=2)
        b3 = self.conv(x, train, "branch3x3dbl_1", 64, 1)
        b3 = self.conv(b3, train, "branch3x3dbl_2", 96, 3, padding=1)
        b3 = self.conv(b3, train, "branch3x3dbl_3", 96, 3, padding=1)
        bp = self.conv(avg_pool_3x3_s1(x), train, "branch_pool", self.pool_features, 1)
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class _InceptionB(_Block):
    @nn.compact
    def __call__(self, x, train):
        b3 = self.conv(x, train, "branch3x3", 384, 3, stride=2)
        bd = self.conv(x, train, "branch3x3dbl_1", 64, 1)
        bd = self.conv(bd, train, "branch3x3dbl_2", 96, 3, padding=1)
        bd = self.conv(bd, train, "branch3x3dbl_3", 96, 3, stride=2)
        return jnp.concatenate([b3, bd, max_pool_3x3_s2(x, padding=0)], axis=-1)


class _InceptionC(_Block):
    channels_7x7: int = 128

    @nn.compact
    def __call__(self, x, train):
        c7 = self.channels_7x7
        b1 = self.conv(x, train, "branch1x1", 192, 1)
        b7 = self.conv(x, train, "branch7x7_1", c7, 1)
        b7 = self.conv(b7, train, "branch7x7_2", c7, (1, 7), padding=(0, 3))
        b7 = self.conv(b7, train, "branch7x7_3", 192, (7, 1), padding=(3, 0))
        bd = self.conv(x, train, "branch7x7dbl_1", c7, 1)
        bd = self.conv(bd, train, "branch7x7dbl_2", c7, (7, 1), padding=(3, 0))
        bd = self.conv(bd, train, "branch7x7dbl_3", c7, (1, 7), padding=(0, 3))
        bd = self.conv(bd, train, "branch7x7dbl_4", c7, (7, 1), padding=(3, 0))
        bd = self.conv(bd, train, "branch7x7dbl_5", 192, (1, 7), padding=(0, 3))
        bp = self.conv(avg_pool_3x3_s1(x), train, "branch_pool", 192, 1)
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class _InceptionD(_Block):
    @nn.compact
    def __call__(self, x, train):
        b3 = self.conv(self.conv(x, train, "branch3x3_1", 192, 1), train, "branch3x3_2", 320, 3, stride=2)
        b7 = self.conv(x, train, "branch7x7x3_1", 192, 1)
        b7 = self.conv(b7, train, "branch7x7x3_2", 192, (1, 7), padding=(0, 3))
        b7 = self.conv(b7, train, "branch7x7x3_3", 192, (7, 1), padding=(3, 0))
        b7 = self.conv(b7, train, "branch7x7x3_4", 192, 3, stride=2)
        return jnp.concatenate([b3, b7, max_pool_3x3_s2(x, padding=0)], axis=-1)


class _InceptionE(_Block):
    @nn.compact
    def __call__(self, x, train):
        b1 = self.conv(x, train, "branch1x1", 320, 1)
        b3 = self.conv(x, train, "branch3x3_1", 384, 1)
        b3 = jnp.concatenate([self.conv(b3, train, "branch3x3_2a", 384, (1, 3), padding=(0, 1)),
                              self.conv(b3, train, "branch3x3_2b", 384, (3, 1), padding=(1, 0))], axis=-1)
        bd = self.conv(x, train, "branch3x3dbl_1", 448, 1)
        bd = self.conv(bd, train, "branch3x3dbl_2", 384, 3, padding=1)
        bd = jnp.concatenate([self.conv(bd, train, "branch3x3dbl_3a", 384, (1, 3), padding=(0, 1)),
                              self.conv(bd, train, "branch3x3dbl_3b", 384, (3, 1), padding=(1, 0))], axis=-1)
        bp = self.conv(avg_pool_3x3_s1(x), train, "branch_pool", 192, 1)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class _InceptionAux(_Block):
    num_classes: int = 1000

    @nn.compact
    def __call__(self, x, train):
        if min(x.shape[1], x.shape[2]) < 17:
            raise ValueError(f"InceptionV3 AuxLogits: Mixed_6e is {x.shape[1]}x{x.shape[2]}; its 5/3 pool and 5x5 "
                             f"conv need at least 17x17, i.e. inputs of at least {AUX_MIN_SIZE}x{AUX_MIN_SIZE} "
                             "(torchvision's auxiliary classifier, run in training only)")
        x = jax.lax.reduce_window(x, jnp.zeros((), x.dtype), jax.lax.add, (1, 5, 5, 1), (1, 3, 3, 1), "VALID") / 25
        x = self.conv(x, train, "conv0", 128, 1)
        x = self.conv(x, train, "conv1", 768, 5)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)


# (name, block, keyword arguments) after the stem, in torchvision's order.
_MIXED = (
    ("Mixed_5b", _InceptionA, {"pool_features": 32}),
    ("Mixed_5c", _InceptionA, {"pool_features": 64}),
    ("Mixed_5d", _InceptionA, {"pool_features": 64}),
    ("Mixed_6a", _InceptionB, {}),
    ("Mixed_6b", _InceptionC, {"channels_7x7": 128}),
    ("Mixed_6c", _InceptionC, {"channels_7x7": 160}),
    ("Mixed_6d", _InceptionC, {"channels_7x7": 160}),
    ("Mixed_6e", _InceptionC, {"channels_7x7": 192}),
    ("Mixed_7a", _InceptionD, {}),
    ("Mixed_7b", _InceptionE, {}),
    ("Mixed_7c", _InceptionE, {}),
)
_STEM = (  # (name, feats, kernel, stride, padding); max pools after Conv2d_2b_3x3 and Conv2d_4a_3x3
    ("Conv2d_1a_3x3", 32, 3, 2, 0),
    ("Conv2d_2a_3x3", 32, 3, 1, 0),
    ("Conv2d_2b_3x3", 64, 3, 1, 1),
    ("Conv2d_3b_1x1", 80, 1, 1, 0),
    ("Conv2d_4a_3x3", 192, 3, 1, 0),
)


class InceptionV3(nn.Module):
    """torchvision's Inception V3, optionally with seed 001's two-layer head.

    Attributes:
      num_classes: outputs of the top (1000 ImageNet, 5 DR stages).
      head: ``"torchvision"`` (``fc``: 2048 → num_classes) or ``"seed001"`` (``head.fc1`` →
        ReLU → ``head.fc2`` → ReLU → ``head.out``; softmax is the target's, e.g.
        ``targets.class_probability``).
      hidden: widths of seed 001's two added layers (the seed does not give them).
      aux_logits: build ``AuxLogits`` (torchvision's auxiliary classifier on ``Mixed_6e``).
      transform_input: torchvision's input re-normalisation (True in its pretrained model).
      dropout: dropout rate before the top in training (torchvision 0.5).
      act, dtype: the nonlinearity (swap for guided backprop) and computation dtype.
      normalization: ``None`` or ``((mean_c), (std_c))``: ``(x − mean) / std`` inside the model
        before the first convolution (part of the affine stem), e.g.
        ``preprocess.imagenet_normalization(255.0)`` to explain 0..255 pixels.
        Applied before ``transform_input``.
    """

    spatial_dims: ClassVar[int] = 2
    AFFINE_STEM: ClassVar[bool] = True  # part="stem" is affine in the image when train=False

    num_classes: int = 1000
    head: str = "torchvision"
    hidden: tuple[int, int] = (1024, 512)
    aux_logits: bool = False
    transform_input: bool = False
    dropout: float = 0.5
    act: Callable[[jax.Array], jax.Array] = nn.relu
    dtype: jnp.dtype | None = None
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False, part: str = "all"):
        """``part``: ``"all"``; ``"stem"`` (image -> ``Conv2d_1a_3x3``'s BatchNorm output before
        its ReLU: input transform, conv and eval BatchNorm — affine); ``"head"`` (that ->
        logits).  In training with ``aux_logits``, returns ``(logits, aux_logits)``."""
        check_part(part)
        if self.head not in HEADS:
            raise ValueError(f"unknown InceptionV3 head {self.head!r}; expected one of {HEADS}")
        tap = TapPoints(name="taps")
        if part != "head":
            check_image_batch(x, channels=3, name="InceptionV3 input")
            if x.shape[1] < _MIN_SIZE or x.shape[2] < _MIN_SIZE:
                raise ValueError(f"InceptionV3 input: images need at least {_MIN_SIZE}x{_MIN_SIZE} pixels; "
                                 f"found {x.shape[1]}x{x.shape[2]}")
        if self.dtype is not None:
            x = x.astype(self.dtype)
        convs = [(name, _BasicConv(feats, (k, k), stride, (pad, pad), act=self.act, dtype=self.dtype, name=name))
                 for name, feats, k, stride, pad in _STEM]
        (first, conv1a), rest = convs[0], convs[1:]
        if part == "head":  # x is the stem's output: Conv2d_1a_3x3 before its ReLU
            h = check_stem_output(x, conv1a.feats, "InceptionV3")
        else:
            x = normalize_input(x, self.normalization)
            if self.transform_input:  # torchvision: ImageNet-normalised RGB -> (x - 0.5) / 0.5
                mean, std = (jnp.asarray(v, x.dtype) for v in IMAGENET_NORMALIZATION)
                x = (x * std + mean - 0.5) / 0.5
            h = conv1a(x, train, skip_act=True)
            if part == "stem":
                return h
        h = tap(first, self.act(h))
        for name, layer in rest:
            h = tap(name, layer(h, train))
            if name in ("Conv2d_2b_3x3", "Conv2d_4a_3x3"):
                h = max_pool_3x3_s2(h, padding=0)
        aux = None
        for name, block, kwargs in _MIXED:
            h = tap(name, block(tap=tap, prefix=name, act=self.act, dtype=self.dtype, name=name, **kwargs)(h, train))
            # torchvision runs the auxiliary classifier in training only; init creates its
            # parameters (so files with AuxLogits keys load) and needs >= 299x299 for that.
            if name == "Mixed_6e" and self.aux_logits and (train or self.is_initializing()):
                aux = _InceptionAux(tap=tap, prefix="AuxLogits", act=self.act, dtype=self.dtype,
                                    num_classes=self.num_classes, name="AuxLogits")(h, train)
        h = jnp.mean(h, axis=(1, 2))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        if self.head == "torchvision":
            out = tap("fc", nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(h))
        else:
            out = _Seed001Head(tap=tap, hidden=tuple(self.hidden), num_classes=self.num_classes, dtype=self.dtype,
                               name="head")(h)
        return (out, aux) if (train and aux is not None) else out

    def shape_probe(self) -> tuple["InceptionV3", jax.Array]:
        """A module and input whose ``init`` has this model's variable shapes."""
        size = AUX_MIN_SIZE if self.aux_logits else _MIN_SIZE
        return self, jnp.zeros((1, size, size, 3), jnp.float32)

    def layer_names(self) -> tuple[str, ...]:
        """Explainable layers in execution order."""
        names = [name for name, *_ in _STEM]
        for name, block, _ in _MIXED:
            names += [f"{name}.{conv}" for conv in _BLOCK_CONVS[block]] + [name]
        top = ("fc",) if self.head == "torchvision" else ("head.fc1", "head.fc2", "head.out")
        return tuple(names) + top


class _Seed001Head(nn.Module):
    """Seed 001's top: two fully connected layers with ReLU, then the class logits."""

    tap: nn.Module
    hidden: tuple[int, int]
    num_classes: int
    dtype: jnp.dtype | None

    @nn.compact
    def __call__(self, h):
        for name, width in zip(("fc1", "fc2"), self.hidden):
            h = self.tap(f"head.{name}", nn.relu(nn.Dense(width, dtype=self.dtype, name=name)(h)))
        return self.tap("head.out", nn.Dense(self.num_classes, dtype=self.dtype, name="out")(h))


# Convolution names per block type, in execution order (for layer_names).
_BLOCK_CONVS = {
    _InceptionA: ("branch1x1", "branch5x5_1", "branch5x5_2", "branch3x3dbl_1", "branch3x3dbl_2",
                  "branch3x3dbl_3", "branch_pool"),
    _InceptionB: ("branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"),
    _InceptionC: ("branch1x1", "branch7x7_1", "branch7x7_2", "branch7x7_3", "branch7x7dbl_1", "branch7x7dbl_2",
                  "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5", "branch_pool"),
    _InceptionD: ("branch3x3_1", "branch3x3_2", "branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3",
                  "branch7x7x3_4"),
    _InceptionE: ("branch1x1", "branch3x3_1", "branch3x3_2a", "branch3x3_2b", "branch3x3dbl_1", "branch3x3dbl_2",
                  "branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool"),
}
