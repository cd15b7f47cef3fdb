"""DRIU (Maninis et al., MICCAI 2016): retinal vessel and optic-disc segmentation, in Flax.

A VGG16 trunk with "specialised" 16-channel side convolutions on each stage, upsampled by
fixed bilinear transposed convolutions, cropped to the input, concatenated and fused by a
1×1 convolution.  Module names are the Caffe layer names of the official deploy prototxts
(``conv1_1`` … ``conv5_3``, ``conv1_2_16`` … ``conv5_3_16``, ``upsample2`` … ``upsample16``
for Caffe's ``upsample2_`` …, ``new_score_weighting`` for ``new-score-weighting``), so the
Caffe converter maps names one to one and ``layers=["upsample2"]`` means the paper's layer.

Shapes (NHWC): input (N, H, W, 3) float, BGR minus the Caffe mean (see
:func:`jaxretina.preprocess.driu_caffe_input`); output (N, H, W, 1) **logits** — the vessel
(or disc) probability is ``jax.nn.sigmoid(out)``, Caffe's ``sigmoid-fuse``.

Tapped layers (Caffe blob semantics: conv blobs are post-ReLU, as Caffe's ReLU is in place):
every trunk convolution and pooling, every side convolution (linear), every upsampled map
*after* its crop (``upsample2`` is what the fuse layer sees, at input size), and the fused
logits ``new_score_weighting``.

Example::

    >>> import jax, jax.numpy as jnp
    >>> from jaxretina.models import DRIU, random_variables
    >>> model = DRIU()                                  # vessel variant
    >>> x = jnp.zeros((1, 37, 45, 3))                   # any size: Caffe's crops align the sides
    >>> variables = random_variables(model, x.shape)    # or jax.jit(model.init)(jax.random.key(0), x)
    >>> jax.jit(model.apply)(variables, x).shape
    (1, 37, 45, 1)
"""

from __future__ import annotations

from typing import Callable, ClassVar

import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxretina.models.layers import (
    IMAGENET_NORMALIZATION, CaffeDeconv, bilinear_diagonal_init, crop_to, max_pool_2x2, normalize_input,
)
from jaxretina.models.stem import check_part, check_stem_output
from jaxretina.models.tap_points import TapPoints
from jaxretina.validate import check_image_batch

__all__ = ["DRIU", "VARIANTS", "HED_CROP_OFFSETS", "CAFFE_UPSAMPLE_PADDING", "IMAGENET_NORMALIZATION",
           "DEEPDRAW_OPTIONS", "VGG_STAGES", "UPSAMPLE_FACTORS", "UPSAMPLE_GEOMETRY"]

# VGG16 stages: (stage, number of 3×3 convolutions, width).
VGG_STAGES = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))

# Per variant: number of VGG stages, and the stages that feed a side branch.
VARIANTS = {
    "vessel": {"stages": 4, "sides": (1, 2, 3, 4)},
    "optic_disc": {"stages": 5, "sides": (2, 3, 4, 5)},
}

# Crop offsets of upsample2 / 4 / 8 / 16: HED's Caffe computes a Crop's offset from the
# network geometry when the prototxt gives none.  A transposed conv with kernel k, stride s,
# pad p maps output pixel y to input position (y + p − (k − 1)/2) / s, so aligning its centres
# with the input pixels needs offset (k − s)/2 − p: 0 for upsample2 (4/2/1), 2 for upsample4
# (8/4/0), 4 for upsample8 (16/8/0), 8 for upsample16 (32/16/0) — the same values the DRIU
# author wrote explicitly in the OSVOS deploy prototxt.  BVLC Caffe's own default (offset 0
# everywhere) shifts the coarse maps by up to 8 pixels.
HED_CROP_OFFSETS = (0, 2, 4, 8)
UPSAMPLE_FACTORS = (2, 4, 8, 16)

# Caffe geometry of the upsampling deconvolutions: factor -> (kernel, stride); their padding
# is a model option (Caffe: 1 for upsample2, 0 for the others).
UPSAMPLE_GEOMETRY = {2: (4, 2), 4: (8, 4), 8: (16, 8), 16: (32, 16)}
CAFFE_UPSAMPLE_PADDING = (1, 0, 0, 0)


# The deepdraw / bob.ip.binseg PyTorch port (``driu``) as options of the same model: VGG16 from
# torchvision (floor pooling), transposed convolutions with pad 0 (trained, not bilinear),
# centre crops, and ImageNet normalisation of RGB in [0, 1] inside the network.  Its output is
# logits, like this model's.  ``DRIU(**DEEPDRAW_OPTIONS)``.
DEEPDRAW_OPTIONS = {
    "ceil_mode": False,
    "crop_offsets": "center",
    "upsample_padding": (0, 0, 0, 0),
    "normalization": IMAGENET_NORMALIZATION,
}


class DRIU(nn.Module):
    """DRIU vessel (``variant="vessel"``) or optic-disc (``variant="optic_disc"``) network.

    Attributes:
      variant: ``"vessel"`` (VGG stages 1–4, sides on conv1_2 … conv4_3) or ``"optic_disc"``
        (stages 1–5, sides on conv2_2 … conv5_3).
      side_channels: K, channels of each side branch (16 in DRIU).
      crop_offsets: offsets of the crops after upsample2, 4, 8 and 16 (a 4-tuple; the vessel
        model uses the first three); default :data:`HED_CROP_OFFSETS` (0/2/4/8, see there why);
        or ``"center"`` for centre crops (deepdraw port).
      ceil_mode: Caffe's ceil rounding in the max pools (True); False is PyTorch's floor, which
        fails on odd sizes with Caffe's padding (upsampled maps smaller than the input) but
        works with ``upsample_padding=(0, 0, 0, 0)``.
      upsample_padding: padding of the upsample2/4/8/16 transposed convolutions
        (:data:`CAFFE_UPSAMPLE_PADDING` = (1, 0, 0, 0); the deepdraw port uses 0 everywhere).
      normalization: ``None`` (the input is already preprocessed, Caffe's BGR minus mean) or
        ``((mean_c), (std_c))`` applied inside the model as ``(x - mean) / std`` per channel
        (deepdraw: :data:`IMAGENET_NORMALIZATION` on RGB in [0, 1]).  Inside the model, so
        attributions are with respect to the image the user holds.
      act: the trunk nonlinearity (``nn.relu``); swap it for guided backprop / deconvnet.
      dtype: computation dtype (parameters stay float32).
    """

    spatial_dims: ClassVar[int] = 2  # one example is (H, W, 3)
    AFFINE_STEM: ClassVar[bool] = True  # part="stem" is affine in the image (see models/stem.py)

    variant: str = "vessel"
    side_channels: int = 16
    crop_offsets: tuple[int, int, int, int] | str = HED_CROP_OFFSETS
    ceil_mode: bool = True
    upsample_padding: tuple[int, int, int, int] = CAFFE_UPSAMPLE_PADDING
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    act: Callable[[jax.Array], jax.Array] = nn.relu
    dtype: jnp.dtype | None = None

    def _config(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown DRIU variant {self.variant!r}; expected one of {list(VARIANTS)}")
        return VARIANTS[self.variant]

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False, part: str = "all") -> jax.Array:
        """``part``: ``"all"`` (image -> logits), ``"stem"`` (image -> the affine stem's output:
        normalisation and ``conv1_1`` before its ReLU, (N, H, W, 64)) or ``"head"`` (that stem
        output -> logits).  ``head(stem(x)) == model(x)``; see :data:`AFFINE_STEM`."""
        del train  # no dropout or batch statistics in DRIU
        cfg = self._config()
        check_part(part)
        if part != "head":
            check_image_batch(x, channels=3, name="DRIU input")
        if self.dtype is not None:
            x = x.astype(self.dtype)
        height, width = x.shape[1], x.shape[2]
        offsets = self._per_factor("crop_offsets", self.crop_offsets, allow_center=True)
        paddings = self._per_factor("upsample_padding", self.upsample_padding)
        if part != "head":
            x = normalize_input(x, self.normalization)
        tap = TapPoints(name="taps")

        def conv(name, feats, ksize=3):
            pad = ksize // 2
            return nn.Conv(feats, (ksize, ksize), padding=((pad, pad), (pad, pad)),
                           dtype=self.dtype, name=name)

        stage_out = {}
        h = x
        for stage, depth, feats in VGG_STAGES[: cfg["stages"]]:
            if stage > 1:
                h = tap(f"pool{stage - 1}", max_pool_2x2(h, ceil_mode=self.ceil_mode))
            for i in range(1, depth + 1):
                name = f"conv{stage}_{i}"
                if name == "conv1_1" and part == "head":
                    h = tap(name, self.act(check_stem_output(h, feats, "DRIU")))
                    continue
                h = conv(name, feats)(h)
                if name == "conv1_1" and part == "stem":
                    return h
                h = tap(name, self.act(h))
            stage_out[stage] = (f"conv{stage}_{depth}", h)

        pieces = []
        for stage in cfg["sides"]:
            trunk_name, feat = stage_out[stage]
            side_name = f"{trunk_name}_16"
            side = tap(side_name, conv(side_name, self.side_channels)(feat))  # linear, no ReLU
            if stage == 1:
                pieces.append(side)  # already at input resolution
                continue
            factor = 2 ** (stage - 1)
            k, s = UPSAMPLE_GEOMETRY[factor]
            up_name = f"upsample{factor}"
            up = CaffeDeconv(self.side_channels, k, s, paddings[factor], name=up_name)(side)
            pieces.append(tap(up_name, crop_to(up, height, width, offsets[factor], layer=up_name)))

        fused = jnp.concatenate(pieces, axis=-1)
        return tap(self.FUSE_LAYER, conv(self.FUSE_LAYER, 1, ksize=1)(fused))

    @staticmethod
    def _per_factor(field_name, value, allow_center=False):
        if allow_center and value == "center":
            return dict.fromkeys(UPSAMPLE_FACTORS, "center")
        if isinstance(value, str) or len(value) != len(UPSAMPLE_FACTORS):
            extra = " or 'center'" if allow_center else ""
            raise ValueError(
                f"{field_name} needs one value per upsampling factor {UPSAMPLE_FACTORS}{extra}; found {value!r}"
            )
        return dict(zip(UPSAMPLE_FACTORS, value))

    def shape_probe(self) -> tuple["DRIU", jax.Array]:
        """A module and input whose ``init`` has this model's variable shapes.  Crop offsets and
        pooling rounding change no parameter but can reject a given input size, so the probe
        uses the always-valid centre crop and ceil rounding."""
        return self.clone(crop_offsets="center", ceil_mode=True), jnp.zeros((1, 64, 64, 3), jnp.float32)

    def fixed_parameters(self, variables: dict) -> dict:
        """``variables`` with the upsampling layers as ``init`` makes them (bilinear kernels on
        the channel diagonal, zero biases) — used by :func:`jaxretina.models.random_variables`."""
        params = dict(variables["params"])
        for name in [n for n in params if n.startswith("upsample")]:
            layer = params[name]
            params[name] = {"kernel": bilinear_diagonal_init(None, layer["kernel"].shape, layer["kernel"].dtype),
                            **({"bias": jnp.zeros_like(layer["bias"])} if "bias" in layer else {})}
        return {**variables, "params": params}

    FUSE_LAYER: ClassVar[str] = "new_score_weighting"

    def fuse_inputs(self) -> dict[str, range]:
        """The fuse convolution's input channels per layer it reads: ``{"conv1_2_16": range(0, 16),
        "upsample2": range(16, 32), …}`` (the concatenation order).  Scaling a layer's map by
        ``c`` equals scaling these rows of the fuse kernel by ``c`` (seed 000's weight edit)."""
        out = {}
        for i, stage in enumerate(self._config()["sides"]):
            name = f"conv{stage}_{VGG_STAGES[stage - 1][1]}_16" if stage == 1 else f"upsample{2 ** (stage - 1)}"
            out[name] = range(i * self.side_channels, (i + 1) * self.side_channels)
        return out

    def input_kind(self) -> str:
        """What the model's input is: ``"driu_caffe"`` (the Caffe model: BGR minus the Caffe
        mean, :func:`jaxretina.preprocess.driu_caffe_input`) or ``"unit"`` (the deepdraw port,
        recognised by its centre crops or its normaliser: RGB in [0, 1], normalised inside the
        model when the file had a normaliser)."""
        return "unit" if self.normalization is not None or self.crop_offsets == "center" else "driu_caffe"

    def layer_names(self) -> tuple[str, ...]:
        """Explainable layers in execution order (same for every input size)."""
        cfg = self._config()
        names = []
        for stage, depth, _ in VGG_STAGES[: cfg["stages"]]:
            if stage > 1:
                names.append(f"pool{stage - 1}")
            names += [f"conv{stage}_{i}" for i in range(1, depth + 1)]
        for stage in cfg["sides"]:
            names.append(f"conv{stage}_{VGG_STAGES[stage - 1][1]}_16")
            if stage > 1:
                names.append(f"upsample{2 ** (stage - 1)}")
        return tuple(names) + ("new_score_weighting",)
