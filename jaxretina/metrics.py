"""Grading metrics of the DR studies (seeds 001 and 002) and vessel-segmentation metrics
(seed 000), in jax.numpy: jittable, no host copies.

Labels are integer grades ``0 … K−1`` (1-D, one per image); predictions are grades (for the
confusion-matrix metrics) or scores (for ROC AUC).  The binary referable / non-referable split
of the DR literature is :func:`binarize` (grade ≥ 2 by default).

* :func:`confusion_matrix` ``C[i, j]`` = number of images of true grade ``i`` predicted ``j``;
* :func:`accuracy` ``= trace(C) / N``;
* :func:`sensitivity`, :func:`specificity`: per class, one-vs-rest, ``TP / (TP + FN)`` and
  ``TN / (TN + FP)`` (a class with no positives, or no negatives, gives NaN);
* :func:`quadratic_weighted_kappa` ``κ = 1 − Σ W∘O / Σ W∘E`` with ``W_ij = (i − j)² / (K − 1)²``,
  ``O`` the confusion matrix and ``E`` the outer product of its marginals over ``N``;
* :func:`roc_auc` the Mann–Whitney statistic with average ranks for tied scores.

Vessel segmentation (seed 000): :func:`masked_miou` (vessel and background IoU averaged, inside
the field-of-view mask eroded by one pixel), :func:`segmentation_scores` /
:func:`segmentation_report` (mIoU, accuracy, sensitivity, specificity, pixel AUC).

Example::

    >>> import jax.numpy as jnp
    >>> from jaxretina import metrics
    >>> y = jnp.array([0, 1, 2, 4, 4]); p = jnp.array([0, 2, 2, 4, 3])
    >>> float(metrics.accuracy(y, p)), float(metrics.quadratic_weighted_kappa(y, p, 5))
    (0.6..., 0.907...)
    >>> float(metrics.roc_auc(metrics.binarize(y), jnp.array([0.1, 0.2, 0.7, 0.9, 0.6])))
    1.0
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["confusion_matrix", "accuracy", "sensitivity", "specificity", "quadratic_weighted_kappa",
           "roc_auc", "average_ranks", "histogram", "binarize", "report", "erode_mask", "SegmentationCounts", "segmentation_counts", "masked_miou",
           "segmentation_scores", "segmentation_report"]


def _labels(y, name: str) -> jax.Array:
    y = jnp.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of labels (one per image); found shape {y.shape}")
    if not jnp.issubdtype(y.dtype, jnp.integer) and y.dtype != jnp.bool_:
        raise ValueError(f"{name}: expected integer labels; found dtype {y.dtype}")
    return y.astype(jnp.int32)


def _pair(y_true, y_pred) -> tuple[jax.Array, jax.Array]:
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred need the same length; found {t.shape[0]} and {p.shape[0]}")
    return t, p


def confusion_matrix(y_true, y_pred, num_classes: int) -> jax.Array:
    """(K, K) float32 counts; labels outside ``0 … K−1`` are dropped (as out-of-range scatters)."""
    t, p = _pair(y_true, y_pred)
    return jnp.zeros((num_classes, num_classes), jnp.float32).at[t, p].add(1.0, mode="drop")


def accuracy(y_true, y_pred) -> jax.Array:
    t, p = _pair(y_true, y_pred)
    return jnp.mean((t == p).astype(jnp.float32))


def _one_vs_rest(y_true, y_pred, num_classes):
    c = confusion_matrix(y_true, y_pred, num_classes)
    tp = jnp.diag(c)
    fn = c.sum(axis=1) - tp
    fp = c.sum(axis=0) - tp
    tn = c.sum() - tp - fn - fp
    return tp, fn, fp, tn


def sensitivity(y_true, y_pred, num_classes: int) -> jax.Array:
    """(K,) recall of each class against the rest (binary labels: ``num_classes=2``, entry 1)."""
    tp, fn, _, _ = _one_vs_rest(y_true, y_pred, num_classes)
    return tp / (tp + fn)


def specificity(y_true, y_pred, num_classes: int) -> jax.Array:
    """(K,) true-negative rate of each class against the rest."""
    _, _, fp, tn = _one_vs_rest(y_true, y_pred, num_classes)
    return tn / (tn + fp)


def quadratic_weighted_kappa(y_true, y_pred, num_classes: int) -> jax.Array:
    """Cohen's kappa with quadratic weights (the Kaggle DR metric)."""
    o = confusion_matrix(y_true, y_pred, num_classes)
    i = jnp.arange(num_classes, dtype=jnp.float32)
    w = (i[:, None] - i[None, :]) ** 2 / max(num_classes - 1, 1) ** 2
    e = jnp.outer(o.sum(axis=1), o.sum(axis=0)) / o.sum()
    return 1.0 - (w * o).sum() / (w * e).sum()


def roc_auc(y_true, scores, valid=None) -> jax.Array:
    """Area under the ROC curve of binary labels (0/1 or bool) against scores, ties counted
    half (average ranks).  NaN when only one class is present.

    ``valid`` (bool, same shape, optional): only those entries count — fixed shapes for a jitted
    program (e.g. the pixels inside a field-of-view mask)."""
    t = _labels(y_true, "y_true")
    s = jnp.asarray(scores)
    if s.shape != t.shape:
        raise ValueError(f"roc_auc: scores need one value per label, shape {t.shape}; found {s.shape}")
    s = s if jnp.issubdtype(s.dtype, jnp.floating) and s.dtype.itemsize >= 4 else s.astype(jnp.float32)
    keep = jnp.ones(t.shape, bool) if valid is None else jnp.asarray(valid, bool)
    if keep.shape != t.shape:
        raise ValueError(f"roc_auc: valid needs the labels' shape {t.shape}; found {keep.shape}")
    ranks = average_ranks(s, keep)
    pos = ((t == 1) & keep).astype(s.dtype)
    n_pos, n_neg = pos.sum(), (keep & (t != 1)).astype(s.dtype).sum()
    return ((ranks * pos).sum() - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)


def average_ranks(values: jax.Array, valid: jax.Array | None = None) -> jax.Array:
    """1-based ranks of ``values`` (any shape, a float dtype) among the ``valid`` entries (all by
    default), tied values sharing their average rank (as ``scipy.stats.rankdata``); entries left
    out get ranks that mean nothing.  ``O(n log n)``: one sort, two binary searches."""
    keep = jnp.ones(values.shape, bool) if valid is None else valid
    # left-out entries rank above every kept one (+inf), so kept ranks count kept entries only
    ordered = jnp.sort(jnp.where(keep, values, jnp.inf).reshape(-1))
    below = jnp.searchsorted(ordered, values, side="left").astype(values.dtype)
    upto = jnp.searchsorted(ordered, values, side="right").astype(values.dtype)
    return below + (upto - below + 1) / 2


def histogram(values: jax.Array, valid: jax.Array, bins: int) -> tuple[jax.Array, jax.Array]:
    """``(counts (bins,), edges (bins + 1,))`` of the flat ``values`` where ``valid``: ``bins``
    equal bins over ``[min, max]`` of the valid values, the last one closed — ``numpy.histogram``'s
    bins and its assignment of values on an edge (the index scaled, then corrected against the
    edges).  All values equal: everything in the middle bin of ``[v − 0.5, v + 0.5]``, as NumPy."""
    lo, hi = jnp.where(valid, values, jnp.inf).min(), jnp.where(valid, values, -jnp.inf).max()
    flat = hi <= lo
    lo, hi = jnp.where(flat, lo - 0.5, lo), jnp.where(flat, hi + 0.5, hi)
    edges = jnp.linspace(lo, hi, bins + 1)
    index = jnp.clip(((values - lo) * (bins / (hi - lo))).astype(jnp.int32), 0, bins - 1)
    index = index - (values < edges[index]).astype(jnp.int32)
    index = index + ((values >= edges[jnp.minimum(index + 1, bins)]) & (index != bins - 1)).astype(jnp.int32)
    counts = jnp.zeros(bins, values.dtype).at[jnp.clip(index, 0, bins - 1)].add(valid.astype(values.dtype))
    return counts, edges


def _number(v) -> float | None:
    """A host float for JSON; NaN (undefined: a class absent) becomes None."""
    v = float(v)
    return None if math.isnan(v) else v


def binarize(grades, positive_from: int = 2) -> jax.Array:
    """Referable (1) / non-referable (0): ``grade >= positive_from`` (moderate DR or worse)."""
    return (_labels(grades, "grades") >= positive_from).astype(jnp.int32)


def report(y_true, probabilities, *, positive_from: int = 2) -> dict:
    """Every metric of the DR studies as plain Python numbers (JSON-ready), host-side.

    ``probabilities``: (N, K) class probabilities; the predicted grade is their argmax.  The
    referable split uses :func:`binarize` for labels and predictions, and the summed probability
    of grades ``>= positive_from`` as the ROC score.  Undefined values (a class absent) are None.
    """
    probs = jnp.asarray(probabilities)
    if probs.ndim != 2:
        raise ValueError(f"report: expected probabilities (N, K); found shape {probs.shape}")
    k = probs.shape[1]
    t = _labels(y_true, "y_true")
    p = probs.argmax(-1)
    bt, bp = binarize(t, positive_from), binarize(p, positive_from)

    return {
        "n": int(t.shape[0]),
        "accuracy": _number(accuracy(t, p)),
        "quadratic_weighted_kappa": _number(quadratic_weighted_kappa(t, p, k)),
        "confusion_matrix": [[int(v) for v in row] for row in confusion_matrix(t, p, k).tolist()],
        "sensitivity_per_class": [_number(v) for v in sensitivity(t, p, k).tolist()],
        "specificity_per_class": [_number(v) for v in specificity(t, p, k).tolist()],
        "referable": {
            "positive_from_grade": positive_from,
            "accuracy": _number(accuracy(bt, bp)),
            "sensitivity": _number(sensitivity(bt, bp, 2)[1]),
            "specificity": _number(specificity(bt, bp, 2)[1]),
            "roc_auc": _number(roc_auc(bt, probs[:, positive_from:].sum(-1))),
        },
    }


# ---------------------------------------------------------------------------------------------
# Vessel segmentation (seed 000, DRIVE): masked IoU and pixel metrics inside the field of view.


def _pixel_map(a, name: str, like: tuple[int, ...] | None = None) -> jax.Array:
    a = jnp.asarray(a)
    if a.ndim >= 3 and a.shape[-1] == 1 and (like is None or a.ndim == len(like) + 1):
        a = a[..., 0]
    if a.ndim not in (2, 3):
        raise ValueError(f"{name}: expected a map (H, W) or a batch (N, H, W) (a trailing axis of 1 is "
                         f"accepted); found shape {a.shape}")
    if like is not None and a.shape != like:
        raise ValueError(f"{name}: expected shape {like} like the predictions; found {a.shape}")
    return a


def _binary(a) -> jax.Array:
    return a if a.dtype == jnp.bool_ else a > 0


def erode_mask(mask, pixels: int = 1) -> jax.Array:
    """Binary erosion of (…, H, W) masks by a 3×3 square, ``pixels`` times; outside the image
    counts as outside the mask (SciPy's ``binary_erosion(structure=ones((3, 3)), border_value=0)``)."""
    m = _binary(_pixel_map(mask, "erode_mask"))
    if not (isinstance(pixels, int) and pixels >= 0):
        raise ValueError(f"erode_mask: pixels must be an int >= 0; found {pixels!r}")
    for _ in range(pixels):
        pad = [(0, 0)] * (m.ndim - 2) + [(1, 1), (1, 1)]
        p = jnp.pad(m, pad, constant_values=False)
        h, w = m.shape[-2:]
        out = m
        for dy in range(3):
            for dx in range(3):
                out = out & p[..., dy:dy + h, dx:dx + w]
        m = out
    return m


class SegmentationCounts(NamedTuple):
    """Pixel counts per image inside the evaluated region: each (N,) float32 (or () for one map)."""

    tp: jax.Array
    fp: jax.Array
    fn: jax.Array
    tn: jax.Array


def segmentation_counts(pred, target, region) -> SegmentationCounts:
    """TP/FP/FN/TN of binary maps ``pred`` vs ``target`` counted where ``region`` is true, per image."""
    p = _binary(_pixel_map(pred, "pred"))
    t = _binary(_pixel_map(target, "target", p.shape))
    r = _binary(_pixel_map(region, "region", p.shape))

    def count(a):
        return (a & r).astype(jnp.float32).sum(axis=(-2, -1))

    return SegmentationCounts(count(p & t), count(p & ~t), count(~p & t), count(~p & ~t))


def masked_miou(pred, target, fov_mask, *, erode: int = 1) -> jax.Array:
    """Seed 000's mIoU per image: ``(IoU_vessel + IoU_background) / 2`` over the pixels of the
    field-of-view mask eroded by ``erode`` pixels (:func:`erode_mask`), with
    ``IoU_vessel = TP / (TP + FP + FN)`` and ``IoU_background = TN / (TN + FN + FP)``.

    ``pred``, ``target``: binary maps (bool, or > 0 is vessel); shapes (H, W) or (N, H, W).
    Returns () or (N,); the seed's figure is the mean over the test images.

    Example::

        >>> logits = model.apply(variables, xs)
        >>> vessels, fov = jnp.zeros((2, 32, 32), bool), jnp.ones((2, 32, 32), bool)
        >>> metrics.masked_miou(logits[..., 0] > 0, vessels, fov).shape      # (N,)
        (2,)
    """
    vessel, background = _ious(segmentation_counts(pred, target, erode_mask(fov_mask, erode)))
    return 0.5 * (vessel + background)


def _ious(c: SegmentationCounts) -> tuple[jax.Array, jax.Array]:
    # per image: IoU of the vessel class and of the background class
    return c.tp / (c.tp + c.fp + c.fn), c.tn / (c.tn + c.fn + c.fp)


def segmentation_scores(probabilities, target, fov_mask, *, threshold: float = 0.5, erode: int = 1) -> dict:
    """Every vessel-segmentation figure, jittable: per-image ``miou``, ``vessel_iou`` and
    ``background_iou`` (N,), and pooled over all images' evaluated pixels ``accuracy``,
    ``sensitivity`` (TP / (TP + FN)), ``specificity`` (TN / (TN + FP)) and pixel ``auc``.

    ``probabilities``: (N, H, W) or (N, H, W, 1) vessel probabilities (a pixel is vessel when
    ``> threshold``); ``target``, ``fov_mask``: (N, H, W) binary.  Pixels count inside the FOV
    mask eroded by ``erode`` pixels (seed 000; ``erode=0`` is the plain FOV).
    """
    probs = _pixel_map(probabilities, "probabilities")
    region = erode_mask(fov_mask, erode)
    target = _binary(_pixel_map(target, "target", probs.shape))
    region = _pixel_map(region, "fov_mask", probs.shape)
    c = segmentation_counts(probs > threshold, target, region)
    tp, fp, fn, tn = (v.sum() for v in c)
    vessel, background = _ious(c)
    return {
        "miou": 0.5 * (vessel + background), "vessel_iou": vessel, "background_iou": background,
        "accuracy": (tp + tn) / (tp + fp + fn + tn), "sensitivity": tp / (tp + fn), "specificity": tn / (tn + fp),
        "auc": roc_auc(target.reshape(-1), probs.reshape(-1), region.reshape(-1)),
    }


def segmentation_report(probabilities, target, fov_mask, *, threshold: float = 0.5, erode: int = 1) -> dict:
    """:func:`segmentation_scores` as plain Python numbers (JSON-ready), with ``mean_miou`` — the
    seed's "average mIoU" (0.7502 before, 0.7674 after its intervention) — and the per-image list."""
    scores = jax.device_get(segmentation_scores(probabilities, target, fov_mask, threshold=threshold, erode=erode))
    out = {k: _number(v) for k, v in scores.items() if jnp.ndim(v) == 0}
    out["mean_miou"] = _number(scores["miou"].mean())
    out["per_image_miou"] = [_number(v) for v in scores["miou"].reshape(-1)]
    out.update(n=len(out["per_image_miou"]), threshold=threshold, erode=erode)
    return out
