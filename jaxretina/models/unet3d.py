"""DS6's 3D U-Net with deep supervision (``U_Net_DeepSup``, soumickmj/DS6 ``Models/unet3d.py``).

Channels-last volumes (N, D, H, W, C).  Structure (ARCHITECTURES.md §5), with DS6's module
names so PyTorch keys map one to one (``Conv1.conv.0.weight`` ↔ ``params/Conv1/conv/0/kernel``)::

    e1 = Conv1(x); e2 = Conv2(pool(e1)); …; e5 = Conv5(pool(e4))
    d5 = Up_conv5(cat(e4, Up5(e5))); d4 = Up_conv4(cat(e3, Up4(d5))); d4_out = Conv_d4(d4)
    d3 = Up_conv3(cat(e2, Up3(d4))); d3_out = Conv_d3(d3)
    d2 = Up_conv2(cat(e1, Up2(d3))); out = Conv(d2)                      -> (out, d3_out, d4_out)

``conv_block``: (3×3×3 conv with bias → BatchNorm → act) × 2; ``up_conv``: nearest ×2 → conv →
BatchNorm → act; pools 2×2×2 max; outputs without activation (DS6 applies a sigmoid to ``out``).
Filters ``w·(1, 2, 4, 8, 16)`` with base width ``w`` (DS6: 64, 103,546,883 parameters; tests
use small widths).  Every block's output is a tap (``Conv1`` … ``Conv``).  Spatial sizes must be
multiples of 16.

Example::

    >>> model = UNet3D(base_width=2)                           # DS6: 64
    >>> x = jnp.zeros((1, 32, 32, 32, 1))
    >>> variables = jaxretina.models.random_variables(model, x.shape)   # or jax.jit(model.init)(key, x)
    >>> out, d3_out, d4_out = jax.jit(model.apply)(variables, x)
    >>> out.shape, d3_out.shape, d4_out.shape
    ((1, 32, 32, 32, 1), (1, 16, 16, 16, 1), (1, 8, 8, 8, 1))
"""

from __future__ import annotations

from typing import Callable, ClassVar

import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxretina.models.layers import torch_batch_norm
from jaxretina.models.layers3d import Conv3D, max_pool_2x2x2, upsample_nearest_2x
from jaxretina.models.tap_points import TapPoints
from jaxretina.validate import check_image_batch

__all__ = ["UNet3D"]


class _ConvBlock(nn.Module):
    feats: int
    act: Callable
    dtype: jnp.dtype | None

    @nn.compact
    def __call__(self, x, train):
        # names mirror torch's nn.Sequential indices: conv.0 conv, conv.1 BN, (conv.2 ReLU), conv.3, conv.4
        for conv, bn in (("0", "1"), ("3", "4")):
            x = Conv3D(self.feats, dtype=self.dtype, name=f"conv.{conv}")(x)
            x = self.act(torch_batch_norm(f"conv.{bn}", train, self.dtype)(x))
        return x


class _UpConv(nn.Module):
    feats: int
    act: Callable
    dtype: jnp.dtype | None

    @nn.compact
    def __call__(self, x, train):
        x = Conv3D(self.feats, dtype=self.dtype, name="up.1")(upsample_nearest_2x(x))
        return self.act(torch_batch_norm("up.2", train, self.dtype)(x))


class UNet3D(nn.Module):
    """DS6 ``U_Net_DeepSup`` in Flax.

    Attributes:
      base_width: filters of the first level (DS6: 64).
      in_channels, out_channels: 1 and 1 in DS6.
      deep_supervision: return ``(out, d3_out, d4_out)`` (DS6's training output); ``False``
        returns ``out`` alone (DS6's inference; what the explainers and targets take).  The
        parameters are the same either way.
      act: the nonlinearity (``nn.relu``; some published variants use LeakyReLU — pass e.g.
        ``lambda v: nn.leaky_relu(v, 0.01)``; swap for guided backprop / deconvnet).
      dtype: computation dtype (parameters stay float32).
    """

    spatial_dims: ClassVar[int] = 3

    base_width: int = 64
    in_channels: int = 1
    out_channels: int = 1
    deep_supervision: bool = True
    act: Callable[[jax.Array], jax.Array] = nn.relu
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array | tuple[jax.Array, jax.Array, jax.Array]:
        check_image_batch(x, channels=self.in_channels, name="UNet3D input", spatial_dims=3)
        if any(s % 16 for s in x.shape[1:4]):
            raise ValueError(f"UNet3D input: depth, height and width must be multiples of 16 (four 2x poolings); "
                             f"found {tuple(x.shape[1:4])}")
        if self.dtype is not None:
            x = x.astype(self.dtype)
        tap = TapPoints(name="taps")
        f = [self.base_width * m for m in (1, 2, 4, 8, 16)]
        kw = dict(act=self.act, dtype=self.dtype)

        def block(name, feats, h):
            return tap(name, _ConvBlock(feats, name=name, **kw)(h, train))

        def up(name, feats, h):
            return tap(name, _UpConv(feats, name=name, **kw)(h, train))

        e1 = block("Conv1", f[0], x)
        e2 = block("Conv2", f[1], max_pool_2x2x2(e1))
        e3 = block("Conv3", f[2], max_pool_2x2x2(e2))
        e4 = block("Conv4", f[3], max_pool_2x2x2(e3))
        e5 = block("Conv5", f[4], max_pool_2x2x2(e4))
        d5 = block("Up_conv5", f[3], jnp.concatenate([e4, up("Up5", f[3], e5)], axis=-1))
        d4 = block("Up_conv4", f[2], jnp.concatenate([e3, up("Up4", f[2], d5)], axis=-1))
        d4_out = block("Conv_d4", self.out_channels, d4)
        d3 = block("Up_conv3", f[1], jnp.concatenate([e2, up("Up3", f[1], d4)], axis=-1))
        d3_out = block("Conv_d3", self.out_channels, d3)
        d2 = block("Up_conv2", f[0], jnp.concatenate([e1, up("Up2", f[0], d3)], axis=-1))
        out = tap("Conv", nn.Conv(self.out_channels, (1, 1, 1), dtype=self.dtype, name="Conv")(d2))
        return (out, d3_out, d4_out) if self.deep_supervision else out

    def shape_probe(self) -> tuple["UNet3D", jax.Array]:
        """A module and input whose ``init`` has this model's variable shapes."""
        return self, jnp.zeros((1, 16, 16, 16, self.in_channels), jnp.float32)

    def for_explaining(self) -> "UNet3D":
        """The model with DS6's inference output only (the one map methods explain)."""
        return self.clone(deep_supervision=False) if self.deep_supervision else self

    def layer_names(self) -> tuple[str, ...]:
        """Tap names in execution order."""
        return ("Conv1", "Conv2", "Conv3", "Conv4", "Conv5", "Up5", "Up_conv5", "Up4", "Up_conv4", "Conv_d4",
                "Up3", "Up_conv3", "Conv_d3", "Up2", "Up_conv2", "Conv")
