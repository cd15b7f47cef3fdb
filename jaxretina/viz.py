"""Pictures of attributions: heat-map overlays, signed green/red maps, per-layer grids, PNGs.

Everything here runs on the host (it copies maps from the device once): call it on results,
never inside a jitted program.  Images are RGB uint8 (H, W, 3); maps are (H, W) floats.

Example::

    >>> cams = explain.grad_cam(model, variables, x, target, relu=False)
    >>> fig = viz.layer_grid(cams, image=rgb, signed=True, title="Grad-CAM per layer")
    >>> viz.save_figure(fig, "out/layers.png")
    'out/layers.png'
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping

import numpy as np

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

__all__ = ["heatmap_rgb", "overlay", "signed_map", "signed_overlay", "layer_grid", "image_grid", "unit_squares",
           "filter_grid", "save_png", "save_figure"]


def _map2d(m: Any, who: str) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"{who}: expected a 2D map (H, W); found shape {m.shape}")
    return np.nan_to_num(m)


def _rgb(image: Any, who: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"{who}: expected an RGB image (H, W, 3) or gray (H, W); found shape {image.shape}")
    if image.dtype != np.uint8:
        lo, hi = float(image.min()), float(image.max())
        image = ((image - lo) / (hi - lo + 1e-12) * 255).round().astype(np.uint8)
    return image


def _fit(m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if m.shape == shape:
        return m
    img = Image.fromarray(m.astype(np.float32), mode="F").resize(shape[::-1], Image.BILINEAR)
    return np.asarray(img, dtype=np.float64)


def heatmap_rgb(m: Any, *, cmap: str = "jet", vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """Colour-map a 2D map to RGB uint8 (min–max scaled unless ``vmin``/``vmax`` are given)."""
    m = _map2d(m, "heatmap_rgb")
    lo = m.min() if vmin is None else vmin
    hi = m.max() if vmax is None else vmax
    scaled = np.clip((m - lo) / (hi - lo + 1e-12), 0, 1)
    return (plt.get_cmap(cmap)(scaled)[..., :3] * 255).round().astype(np.uint8)


def overlay(image: Any, m: Any, *, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Blend a colour-mapped map over an image (the map is resized to the image if needed)."""
    image = _rgb(image, "overlay")
    heat = heatmap_rgb(_fit(_map2d(m, "overlay"), image.shape[:2]), cmap=cmap)
    return ((1 - alpha) * image + alpha * heat).round().astype(np.uint8)


def signed_map(m: Any, *, scale: float | None = None) -> np.ndarray:
    """Signed map as RGB: green = positive, red = negative, black = 0 (seed 000's colours).

    Intensity is ``|m| / scale`` with ``scale = max |m|`` by default (pass one scale to compare
    several maps on a common footing).
    """
    m = _map2d(m, "signed_map")
    s = float(np.abs(m).max()) if scale is None else float(scale)
    v = np.clip(m / (s + 1e-12), -1, 1)
    rgb = np.zeros((*m.shape, 3))
    rgb[..., 1] = np.maximum(v, 0)
    rgb[..., 0] = np.maximum(-v, 0)
    return (rgb * 255).round().astype(np.uint8)


def signed_overlay(image: Any, m: Any, *, alpha: float = 0.6, scale: float | None = None) -> np.ndarray:
    """The signed green/red map blended over a dimmed gray copy of the image."""
    image = _rgb(image, "signed_overlay").astype(np.float64)
    gray = image.mean(-1, keepdims=True).repeat(3, -1)
    colour = signed_map(_fit(_map2d(m, "signed_overlay"), image.shape[:2]), scale=scale).astype(np.float64)
    weight = alpha * colour.max(-1, keepdims=True) / 255.0
    return ((1 - weight) * 0.6 * gray + weight * colour).round().clip(0, 255).astype(np.uint8)


def layer_grid(
    maps: Mapping[str, Any],
    *,
    image: Any = None,
    signed: bool = False,
    ncols: int | None = None,
    title: str | None = None,
    panel_size: float = 2.4,
):
    """One panel per layer (seed 000, Fig. 2 style); returns a matplotlib Figure.

    Args:
      maps: ``{layer: (H, W) map}``, e.g. the result of :func:`jaxretina.explain.grad_cam`.
      image: optional RGB image drawn under each map (and as the first panel).
      signed: green/red signed maps instead of a jet heat map.
    """
    if not maps:
        raise ValueError("layer_grid: no maps given")
    panels = ([("input", None)] if image is not None else []) + list(maps.items())
    ncols = ncols or min(6, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows + (0.4 if title else 0)),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, m) in zip(axes.ravel(), panels):
        if m is None:
            pic = _rgb(image, "layer_grid")
        elif signed:
            pic = signed_overlay(image, m) if image is not None else signed_map(m)
        else:
            pic = overlay(image, m) if image is not None else heatmap_rgb(m)
        ax.imshow(pic)
        ax.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def filter_grid(activation: Any, *, cols: int | None = None, pad: int = 1, per_filter: bool = True,
                cmap: str | None = None) -> np.ndarray:
    """Every filter's activation map of one layer as one mosaic image (seed 004, Figs. 2–3).

    ``activation``: (H, W, C), e.g. :func:`jaxretina.explain.activation_maps`.  Tiles go row by
    row (``cols`` per row, default ⌈√C⌉), separated by ``pad`` black pixels; each tile is its
    map min–max scaled to 0..255 (``per_filter``; else one scale for the layer), so a dead
    filter is a black tile.  Gray, or colour-mapped with ``cmap``.  Returns RGB uint8.
    """
    a = np.nan_to_num(np.asarray(activation, np.float64))
    if a.ndim != 3:
        raise ValueError(f"filter_grid: expected one layer's activation (H, W, C); found shape {a.shape}")
    h, w, c = a.shape
    cols = cols or math.ceil(math.sqrt(c))
    rows = math.ceil(c / cols)
    axes = (0, 1) if per_filter else (0, 1, 2)
    lo, hi = a.min(axis=axes, keepdims=True), a.max(axis=axes, keepdims=True)
    span = hi - lo
    unit = np.where(span > 0, (a - lo) / np.where(span > 0, span, 1), 0.0)
    mosaic = np.zeros((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad))
    for k in range(c):
        i, j = divmod(k, cols)
        mosaic[i * (h + pad):i * (h + pad) + h, j * (w + pad):j * (w + pad) + w] = unit[..., k]
    if cmap is not None:
        return (plt.get_cmap(cmap)(mosaic)[..., :3] * 255).round().astype(np.uint8)
    return np.repeat((mosaic * 255).round().astype(np.uint8)[..., None], 3, axis=-1)


def image_grid(rows: Any, *, row_titles: list[str] | None = None, col_titles: list[str] | None = None,
               panel_size: float = 2.4, title: str | None = None):
    """A grid of RGB panels, ``rows[i][j]`` (H, W, 3) uint8 or any image :func:`save_png` takes;
    rows may differ in length.  Returns a matplotlib Figure."""
    rows = [list(r) for r in rows]
    if not rows or not any(rows):
        raise ValueError("image_grid: no panels given")
    ncols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(panel_size * ncols, panel_size * len(rows) + (0.4 if title else 0)),
                             squeeze=False)
    for i, row in enumerate(rows):
        for j in range(ncols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if j < len(row):
                ax.imshow(_rgb(row[j], "image_grid"))
            if i == 0 and col_titles and j < len(col_titles):
                ax.set_title(col_titles[j], fontsize=9)
            if j == 0 and row_titles and i < len(row_titles):
                ax.set_ylabel(row_titles[i], fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def unit_squares(values: Any, *, row_labels: list[str] | None = None, col_labels: list[str] | None = None,
                 title: str | None = None, cell: float = 0.35):
    """Seed 001's unit chart: one square per value, side ∝ √(|v| / max |v|) (area ∝ magnitude),
    green for positive, red for negative.  ``values``: (rows, units)."""
    v = np.asarray(values, np.float64)
    if v.ndim != 2:
        raise ValueError(f"unit_squares: expected values (rows, units); found shape {v.shape}")
    top = float(np.abs(v).max()) or 1.0
    fig, ax = plt.subplots(figsize=(max(3.0, cell * v.shape[1] + 1.5), max(2.0, cell * v.shape[0] + 1.0)))
    for (i, j), x in np.ndenumerate(v):
        side = 0.9 * np.sqrt(abs(x) / top)
        ax.add_patch(plt.Rectangle((j - side / 2, i - side / 2), side, side, color="green" if x >= 0 else "red"))
    ax.set_xlim(-0.5, v.shape[1] - 0.5)
    ax.set_ylim(v.shape[0] - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_xticks(range(v.shape[1]), col_labels or [str(j) for j in range(v.shape[1])], fontsize=7, rotation=90)
    ax.set_yticks(range(v.shape[0]), row_labels or [str(i) for i in range(v.shape[0])], fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def save_png(rgb: Any, path: str | os.PathLike) -> str:
    """Write an RGB (or gray) uint8 image as PNG, creating folders; returns the path."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    Image.fromarray(_rgb(rgb, "save_png")).save(path)
    return path


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 100) -> str:
    """Save a matplotlib figure as PNG, creating folders, and close it; returns the path."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
