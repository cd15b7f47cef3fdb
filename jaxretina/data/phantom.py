"""A synthetic vessel phantom: branching tubes in a noisy volume (TOF-MRA-like: bright vessels
on a darker, slowly varying background), with its ground-truth mask — for tests and examples
where no MRA volume is at hand.

Example::

    >>> ph = data.vessel_phantom((64, 64, 64), seed=0)
    >>> ph.volume.shape, round(float(ph.mask.mean()), 3)       # ~2 % of the voxels are vessel
    ((64, 64, 64, 1), 0.017)
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

__all__ = ["Phantom", "vessel_phantom"]


class Phantom(NamedTuple):
    """``volume`` (D, H, W, 1) float32 in about 0..1; ``mask`` (D, H, W) bool (inside a tube);
    ``segments`` (S, 2, 3) float start/end points and ``radii`` (S,) of the tubes."""

    volume: np.ndarray
    mask: np.ndarray
    segments: np.ndarray
    radii: np.ndarray


def _grow(rng, shape, trees, depth, radius, step):
    segments, radii = [], []
    hi = np.asarray(shape, float) - 1
    for _ in range(trees):
        start = rng.uniform(0.2, 0.8, 3) * hi
        start[0] = 0.0  # trees enter through the first face (as arteries through the skull base)
        direction = np.array([1.0, 0.0, 0.0]) + rng.normal(0, 0.3, 3)
        stack = [(start, direction / np.linalg.norm(direction), radius, 0)]
        while stack:
            p, d, r, level = stack.pop()
            for _ in range(rng.integers(3, 6)):  # a few persistent steps per branch
                d = d + rng.normal(0, 0.25, 3)
                d /= np.linalg.norm(d)
                q = np.clip(p + step * d, 0, hi)
                segments.append((p, q))
                radii.append(r)
                p = q
            if level < depth:
                for sign in (1, -1):  # bifurcate: two children turned apart, thinner
                    turn = np.cross(d, rng.normal(size=3))
                    child = d + sign * 0.8 * turn / (np.linalg.norm(turn) + 1e-9)
                    stack.append((p, child / np.linalg.norm(child), max(r * 0.75, 0.6), level + 1))
    return np.asarray(segments), np.asarray(radii)


def _distance_to_segments(shape, segments, radii):
    """``min_s (dist(voxel, segment_s) − r_s)``: signed distance to the nearest tube wall."""
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"), -1)
    best = np.full(shape, np.inf, np.float32)
    for (a, b), r in zip(segments, radii):
        lo = np.maximum(np.floor(np.minimum(a, b) - r - 2), 0).astype(int)
        hi = np.minimum(np.ceil(np.maximum(a, b) + r + 3), shape).astype(int)
        box = tuple(slice(l, h) for l, h in zip(lo, hi))
        p = grid[box]
        ab = (b - a).astype(np.float32)
        t = np.clip(((p - a) @ ab) / max(float(ab @ ab), 1e-9), 0, 1)
        d = np.linalg.norm(p - (a + t[..., None] * ab), axis=-1) - r
        best[box] = np.minimum(best[box], d)
    return best


def vessel_phantom(
    shape: Sequence[int] = (64, 64, 64), *, seed: int = 0, trees: int = 3, depth: int = 3,
    radius: float = 2.5, noise: float = 0.05, contrast: float = 0.7,
) -> Phantom:
    """Branching tubes in noise.

    Each of ``trees`` trees enters through the first face and grows in persistent random steps
    (length ≈ shape/10), bifurcating ``depth`` times with radii shrinking by 0.75 (from
    ``radius`` voxels, at least 0.6).  Intensity: a smooth background 0.15–0.35, plus
    ``contrast`` inside the tubes with a one-voxel soft edge, plus Gaussian noise of σ
    ``noise``.  Deterministic for a ``seed``.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"vessel_phantom: shape must be three sizes >= 8; found {shape}")
    rng = np.random.default_rng(seed)
    segments, radii = _grow(rng, shape, trees, depth, radius, step=max(shape) / 10)
    dist = _distance_to_segments(shape, segments, radii)
    axes = np.meshgrid(*[np.linspace(0, np.pi, n) for n in shape], indexing="ij")
    phase = rng.uniform(0, np.pi, 3)
    background = 0.25 + 0.1 * np.sin(axes[0] + phase[0]) * np.cos(axes[1] + phase[1]) * np.sin(axes[2] + phase[2])
    tube = np.clip(0.5 - dist, 0, 1)  # 1 inside, linear edge over one voxel
    volume = background + contrast * tube + rng.normal(0, noise, shape)
    return Phantom(volume.astype(np.float32)[..., None], dist <= 0, segments.astype(np.float32),
                   radii.astype(np.float32))
