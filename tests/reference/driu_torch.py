"""A PyTorch DRIU written from the Caffe prototxt semantics, for parity tests.

Functional: it takes Caffe-named weights in Caffe/PyTorch layouts (Convolution (O, I, kh, kw),
Deconvolution (I, O, kh, kw)) and runs ``torch.nn.functional`` ops, so it shares no code with
the Flax model or the converters.  Options cover both configurations users bring:

* Caffe (``deploy_DRIVE.prototxt`` + HED's crop geometry): ceil pooling, deconv paddings
  1/0/0/0, crop offsets 0/2/4/8 from the top-left corner;
* deepdraw: floor pooling, deconv padding 0, centre crop, ImageNet normalisation in the model.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

VGG = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
SIDES = {"vessel": (1, 2, 3, 4), "optic_disc": (2, 3, 4, 5)}
DECONV = {2: (4, 2), 4: (8, 4), 8: (16, 8), 16: (32, 16)}


def random_driu_weights(variant: str, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Caffe-named random weights ``{layer: [weight, bias]}``; He-scaled so activations stay O(1);
    deconvolution kernels random and non-symmetric (a wrong flip shows)."""
    rng = np.random.default_rng(seed)
    stages = 5 if variant == "optic_disc" else 4
    w: dict[str, list[np.ndarray]] = {}
    cin = 3
    for stage, depth, feats in VGG[:stages]:
        for i in range(1, depth + 1):
            w[f"conv{stage}_{i}"] = [
                rng.normal(0, np.sqrt(2 / (9 * cin)), (feats, cin, 3, 3)).astype(np.float32),
                rng.normal(0, 0.1, feats).astype(np.float32),
            ]
            cin = feats
    for stage in SIDES[variant]:
        depth, feats = VGG[stage - 1][1], VGG[stage - 1][2]
        w[f"conv{stage}_{depth}_16"] = [
            rng.normal(0, np.sqrt(1 / (9 * feats)), (16, feats, 3, 3)).astype(np.float32),
            rng.normal(0, 0.1, 16).astype(np.float32),
        ]
        if stage > 1:
            f = 2 ** (stage - 1)
            k = DECONV[f][0]
            w[f"upsample{f}_"] = [
                rng.uniform(0, 2 / k, (16, 16, k, k)).astype(np.float32),
                rng.normal(0, 0.1, 16).astype(np.float32),
            ]
    w["new-score-weighting"] = [rng.normal(0, 0.25, (1, 64, 1, 1)).astype(np.float32),
                                rng.normal(0, 0.1, 1).astype(np.float32)]
    return w


def driu_reference(weights, x: np.ndarray, *, variant="vessel", ceil_mode=True,
                   paddings=(1, 0, 0, 0), crop=(0, 2, 4, 8), normalization=None) -> np.ndarray:
    """Logits (N, 1, H, W) for ``x`` (N, 3, H, W) as float64 numpy (computed in float64)."""
    t = lambda a: torch.from_numpy(np.asarray(a, np.float64))
    h = t(x)
    if normalization is not None:
        mean, std = (t(v).reshape(1, 3, 1, 1) for v in normalization)
        h = (h - mean) / std
    height, width = h.shape[2], h.shape[3]
    stages = 5 if variant == "optic_disc" else 4
    outs = {}
    for stage, depth, _ in VGG[:stages]:
        if stage > 1:
            h = F.max_pool2d(h, 2, 2, ceil_mode=ceil_mode)
        for i in range(1, depth + 1):
            wt, b = weights[f"conv{stage}_{i}"]
            h = F.relu(F.conv2d(h, t(wt), t(b), padding=1))
        outs[stage] = h
    pieces = []
    for stage in SIDES[variant]:
        depth = VGG[stage - 1][1]
        wt, b = weights[f"conv{stage}_{depth}_16"]
        side = F.conv2d(outs[stage], t(wt), t(b), padding=1)
        if stage == 1:
            pieces.append(side)
            continue
        f = 2 ** (stage - 1)
        k, s = DECONV[f]
        idx = {2: 0, 4: 1, 8: 2, 16: 3}[f]
        wt, b = weights[f"upsample{f}_"]
        up = F.conv_transpose2d(side, t(wt), t(b), stride=s, padding=paddings[idx])
        if crop == "center":
            oh, ow = (up.shape[2] - height) // 2, (up.shape[3] - width) // 2
        else:
            oh = ow = crop[idx]
        pieces.append(up[:, :, oh:oh + height, ow:ow + width])
    wt, b = weights["new-score-weighting"]
    return F.conv2d(torch.cat(pieces, 1), t(wt), t(b)).numpy()


class _Crop(torch.nn.Module):
    """Crop to the input's size at a fixed offset, or centred: a module so hooks can see it."""

    def __init__(self, offset):
        super().__init__()
        self.offset = offset
        self.size = None  # set by DRIUModule.forward

    def forward(self, x):
        h, w = self.size
        if self.offset == "center":
            oh, ow = (x.shape[2] - h) // 2, (x.shape[3] - w) // 2
        else:
            oh = ow = self.offset
        return x[:, :, oh:oh + h, ow:ow + w]


class DRIUModule(torch.nn.Module):
    """DRIU (Caffe semantics by default) as ``torch.nn`` modules, for Captum and pytorch-grad-cam.

    Submodules carry the Caffe names, and every ReLU is its own ``nn.ReLU`` (so Captum's guided
    backprop reaches it): ``conv1_1`` then ``relu1_1`` …; ``poolN``; ``convX_Y_16`` (linear);
    ``upsampleN`` = Sequential(ConvTranspose2d, crop); ``new_score_weighting``.  The module whose
    output equals jaxretina's tap of the same name: ``relu{s}_{i}`` for ``conv{s}_{i}`` (taps are
    post-ReLU), the module of the same name for every other layer (:meth:`tap_module`).
    """

    def __init__(self, weights, *, variant="vessel", ceil_mode=True, paddings=(1, 0, 0, 0), crop=(0, 2, 4, 8)):
        super().__init__()
        self.variant = variant
        stages = 5 if variant == "optic_disc" else 4
        t = lambda a: torch.nn.Parameter(torch.from_numpy(np.array(a)))
        self.trunk = []
        for stage, depth, _ in VGG[:stages]:
            if stage > 1:
                setattr(self, f"pool{stage - 1}", torch.nn.MaxPool2d(2, 2, ceil_mode=ceil_mode))
            for i in range(1, depth + 1):
                w, b = weights[f"conv{stage}_{i}"]
                conv = torch.nn.Conv2d(w.shape[1], w.shape[0], 3, padding=1)
                conv.weight, conv.bias = t(w), t(b)
                setattr(self, f"conv{stage}_{i}", conv)
                setattr(self, f"relu{stage}_{i}", torch.nn.ReLU())
        for stage in SIDES[variant]:
            depth = VGG[stage - 1][1]
            w, b = weights[f"conv{stage}_{depth}_16"]
            side = torch.nn.Conv2d(w.shape[1], 16, 3, padding=1)
            side.weight, side.bias = t(w), t(b)
            setattr(self, f"conv{stage}_{depth}_16", side)
            if stage > 1:
                f = 2 ** (stage - 1)
                k, s = DECONV[f]
                idx = {2: 0, 4: 1, 8: 2, 16: 3}[f]
                w, b = weights[f"upsample{f}_"]
                up = torch.nn.ConvTranspose2d(16, 16, k, stride=s, padding=paddings[idx])
                up.weight, up.bias = t(w), t(b)
                setattr(self, f"upsample{f}", torch.nn.Sequential(up, _Crop(crop if crop == "center" else crop[idx])))
        w, b = weights["new-score-weighting"]
        self.new_score_weighting = torch.nn.Conv2d(64, 1, 1)
        self.new_score_weighting.weight, self.new_score_weighting.bias = t(w), t(b)

    def tap_module(self, name: str) -> torch.nn.Module:
        if name.startswith("conv") and not name.endswith("_16"):
            return getattr(self, "relu" + name[4:])
        return getattr(self, name)

    def forward(self, x):
        height, width = x.shape[2], x.shape[3]
        stages = 5 if self.variant == "optic_disc" else 4
        outs = {}
        h = x
        for stage, depth, _ in VGG[:stages]:
            if stage > 1:
                h = getattr(self, f"pool{stage - 1}")(h)
            for i in range(1, depth + 1):
                h = getattr(self, f"relu{stage}_{i}")(getattr(self, f"conv{stage}_{i}")(h))
            outs[stage] = h
        pieces = []
        for stage in SIDES[self.variant]:
            depth = VGG[stage - 1][1]
            side = getattr(self, f"conv{stage}_{depth}_16")(outs[stage])
            if stage == 1:
                pieces.append(side)
                continue
            up = getattr(self, f"upsample{2 ** (stage - 1)}")
            up[1].size = (height, width)
            pieces.append(up(side))
        return self.new_score_weighting(torch.cat(pieces, 1))
