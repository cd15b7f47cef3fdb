"""Volumes as pictures (seed 003, Fig. 1–5): maximum-intensity projections, slice montages,
attributions overlaid in red.

Host-side NumPy on results (one copy from the device), never inside a jitted program.
Volumes are ``(D, H, W)`` or ``(D, H, W, 1)``; pictures are RGB uint8 (write them with
:func:`jaxretina.viz.save_png`).  Attribution maps are shown as the seed does: scaled to 0..1
(white = most important) and that white turned red over the gray input.

Example::

    >>> gbp = explain.guided_backprop(unet, unet_variables, volume[:16, :16, :16], targets.segmentation_sum())
    >>> panel = views.volume_panel(volume[:16, :16, :16], gbp, axis=0, slices=16)     # [MIP | montage], RGB
    >>> panel.dtype, panel.shape[-1]
    (dtype('uint8'), 3)
    >>> viz.save_png(panel, "out/gbp.png")
    'out/gbp.png'
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["mip", "montage", "unit_scale", "red_overlay", "volume_panel"]


def _volume(v: Any, who: str) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    if v.ndim == 4 and v.shape[-1] == 1:
        v = v[..., 0]
    if v.ndim != 3:
        raise ValueError(f"{who}: expected a volume (D, H, W) or (D, H, W, 1); found shape {v.shape}")
    return np.nan_to_num(v)


def _axis(axis: int, who: str) -> int:
    if axis not in (0, 1, 2, -1, -2, -3):
        raise ValueError(f"{who}: axis must be 0, 1 or 2 (D, H, W); found {axis!r}")
    return axis % 3


def mip(volume: Any, axis: int = 0) -> np.ndarray:
    """Maximum-intensity projection along ``axis``: ``max_k v[..k..]``, a 2D array."""
    return _volume(volume, "mip").max(axis=_axis(axis, "mip"))


def montage(volume: Any, axis: int = 0, slices: int = 16, cols: int | None = None) -> np.ndarray:
    """``slices`` evenly spaced slices along ``axis`` tiled row by row (``cols`` per row,
    default ⌈√slices⌉); unused tiles are 0.  A 2D array."""
    v = np.moveaxis(_volume(volume, "montage"), _axis(axis, "montage"), 0)
    if not (isinstance(slices, int) and slices >= 1):
        raise ValueError(f"montage: slices must be a positive int; found {slices!r}")
    slices = min(slices, v.shape[0])
    index = np.linspace(0, v.shape[0] - 1, slices).round().astype(int)
    cols = cols or math.ceil(math.sqrt(slices))
    rows = math.ceil(slices / cols)
    h, w = v.shape[1:]
    out = np.zeros((rows * h, cols * w))
    for k, i in enumerate(index):
        r, c = divmod(k, cols)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = v[i]
    return out


def unit_scale(m: Any, *, signed: str = "abs") -> np.ndarray:
    """Scale a map to 0..1 as the seed shows it (1 = most important): ``|m| / max |m|``
    (``signed="abs"``), or only the positive part ``max(m, 0) / max m`` (``"positive"``)."""
    m = np.nan_to_num(np.asarray(m, np.float64))
    if signed not in ("abs", "positive"):
        raise ValueError(f"unit_scale: signed must be 'abs' or 'positive'; found {signed!r}")
    m = np.abs(m) if signed == "abs" else np.maximum(m, 0)
    top = m.max() if m.size else 0.0
    return m / top if top > 0 else np.zeros_like(m)


def red_overlay(gray: Any, weight: Any, *, alpha: float = 1.0) -> np.ndarray:
    """Gray picture with ``weight`` (0..1, same 2D shape) drawn in red: ``rgb = (1 − αw)·g + αw·red``.

    ``gray`` is min–max scaled to 0..1 first."""
    g = np.asarray(gray, np.float64)
    w = np.clip(np.asarray(weight, np.float64), 0, 1) * alpha
    if g.ndim != 2 or w.shape != g.shape:
        raise ValueError(f"red_overlay: expected two 2D arrays of one shape; found {g.shape} and {w.shape}")
    span = g.max() - g.min()
    g = (g - g.min()) / span if span > 0 else np.zeros_like(g)
    rgb = (1 - w)[..., None] * g[..., None].repeat(3, -1)
    rgb[..., 0] += w
    return (rgb * 255).round().clip(0, 255).astype(np.uint8)


def volume_panel(volume: Any, attribution: Any = None, *, axis: int = 0, slices: int = 16,
                 signed: str = "abs", gap: int = 4) -> np.ndarray:
    """[MIP | montage] of a volume, the attribution in red over it when given (seed 003's figures).

    The attribution is projected the same way as the volume (its MIP of the 0..1 scaled map,
    and the same slices), so red marks where the method puts the most weight along each ray."""
    v = _volume(volume, "volume_panel")
    views = [mip(v, axis), montage(v, axis, slices)]
    if attribution is not None:
        a = unit_scale(_volume(attribution, "volume_panel"), signed=signed)
        if a.shape != v.shape:
            raise ValueError(f"volume_panel: attribution shape {a.shape} differs from the volume's {v.shape}")
        views = [red_overlay(g, w) for g, w in zip(views, (mip(a, axis), montage(a, axis, slices)))]
    else:
        views = [red_overlay(g, np.zeros_like(g)) for g in views]
    h = max(p.shape[0] for p in views)
    padded = [np.pad(p, ((0, h - p.shape[0]), (0, 0), (0, 0))) for p in views]
    spacer = np.zeros((h, gap, 3), np.uint8)
    return np.concatenate([padded[0], spacer, padded[1]], axis=1)
