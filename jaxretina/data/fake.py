"""A small generated stand-in for Kaggle's diabetic-retinopathy data, in both on-disk layouts.

Each image is an orange retina disc on black (random size and aspect, so the square padding and
the retina-diameter detection are exercised) with dark vessels, an optic disc, and lesions
whose number grows with the grade (grade g: 3g dark-red haemorrhages and g yellow exudates) —
learnable, so a fine-tuning run on it shows a falling loss.

Example::

    >>> root = data.make_fake_dataset("/tmp/fake_dr", per_class=4)
    >>> src = data.kaggle_manual_dir(root / "manual", "train")     # TFDS's manual layout
    >>> src = data.kaggle_folder(root / "folder" / "images", root / "folder" / "trainLabels.csv")
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["fake_fundus", "make_fake_dataset"]


def fake_fundus(grade: int, rng: np.random.Generator, height: int = 96, width: int = 120, *,
                with_mask: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """One synthetic fundus photograph (uint8 (height, width, 3)) of DR ``grade`` 0–4; with
    ``with_mask`` also its lesion mask (bool (height, width))."""
    im = Image.new("RGB", (width, height), (0, 0, 0))
    d = ImageDraw.Draw(im)
    r = 0.46 * min(height, width)
    cx, cy = width / 2 + rng.uniform(-0.03, 0.03) * width, height / 2
    base = tuple(int(v) for v in rng.normal((190, 95, 45), 12).clip(0, 255))
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=base)
    ox = cx + rng.choice([-1, 1]) * 0.45 * r
    d.ellipse([ox - 0.15 * r, cy - 0.15 * r, ox + 0.15 * r, cy + 0.15 * r], fill=(245, 220, 160))
    for _ in range(6):  # vessels: arcs leaving the optic disc
        angle = rng.uniform(0, 2 * np.pi)
        pts = [(ox + t * r * np.cos(angle + 0.3 * t), cy + t * r * np.sin(angle + 0.3 * t)) for t in np.linspace(0, 1.2, 12)]
        d.line(pts, fill=(120, 30, 20), width=max(1, int(r / 30)))
    size = max(1.5, r / 14)
    lesions = Image.new("1", (width, height), 0)
    marks = ImageDraw.Draw(lesions)
    for k in range(3 * grade + grade):
        rho, phi = r * np.sqrt(rng.uniform(0, 0.7)), rng.uniform(0, 2 * np.pi)
        x, y = cx + rho * np.cos(phi), cy + rho * np.sin(phi)
        colour = (90, 10, 10) if k < 3 * grade else (250, 235, 110)
        d.ellipse([x - size, y - size, x + size, y + size], fill=colour)
        marks.ellipse([x - size, y - size, x + size, y + size], fill=1)
    img = np.asarray(im).astype(np.float32)
    inside = img.sum(-1) > 0
    img[inside] += rng.normal(0, 4, size=(int(inside.sum()), 3))
    img = img.clip(0, 255).astype(np.uint8)
    return (img, np.asarray(lesions, bool)) if with_mask else img


def make_fake_dataset(root: str | Path, *, per_class: int | tuple[int, ...] = 4, test_per_class: int = 2,
                      size: int = 96, seed: int = 0) -> Path:
    """Write the same kind of data in two layouts under ``root`` and return ``root``:

    * ``manual/`` — Kaggle's extracted download = TFDS's manual directory: ``train/*.jpeg``,
      ``trainLabels.csv``, ``test/*.jpeg``, ``retinopathy_solution.csv`` (Usage Public/Private);
    * ``folder/`` — a plain folder ``images/*.png`` (lossless) with ``trainLabels.csv``, holding
      the training images of ``manual/``;
    * ``masks/`` — each training image's lesion mask (``<name>.png``, 0/255).
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    counts = (per_class,) * 5 if isinstance(per_class, int) else tuple(per_class)
    for sub in ("manual/train", "manual/test", "folder/images", "masks"):
        (root / sub).mkdir(parents=True, exist_ok=True)

    def image(grade):
        h = int(size * rng.uniform(0.85, 1.0))
        w = int(size * rng.uniform(1.0, 1.3))
        return fake_fundus(grade, rng, h, w, with_mask=True)

    train_rows, test_rows = [], []
    for grade, n in enumerate(counts):
        for i in range(n):
            name = f"{1000 * grade + i}_{'left' if i % 2 else 'right'}"
            img, mask = image(grade)
            Image.fromarray(img).save(root / "manual/train" / f"{name}.jpeg", quality=95)
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / f"{name}.png")
            Image.fromarray(img).save(root / "folder/images" / f"{name}.png")
            train_rows.append((name, grade))
        for i in range(test_per_class):
            name = f"{50000 + 1000 * grade + i}_left"
            Image.fromarray(image(grade)[0]).save(root / "manual/test" / f"{name}.jpeg", quality=95)
            test_rows.append((name, grade, "Public" if i % 2 == 0 else "Private"))
    for path in (root / "manual/trainLabels.csv", root / "folder/trainLabels.csv"):
        with open(path, "w", newline="") as fh:
            csv.writer(fh).writerows([("image", "level"), *train_rows])
    with open(root / "manual/retinopathy_solution.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("image", "level", "Usage"), *test_rows])
    return root
