"""Grading metrics of the DR studies (seeds 001 and 002), in jax.numpy: jittable, no host copies.

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

import jax
import jax.numpy as jnp

__all__ = ["confusion_matrix", "accuracy", "sensitivity", "specificity", "quadratic_weighted_kappa",
           "roc_auc", "binarize", "report"]


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


def roc_auc(y_true, scores) -> jax.Array:
    """Area under the ROC curve of binary labels (0/1 or bool) against scores, ties counted
    half (average ranks).  NaN when only one class is present."""
    t = _labels(y_true, "y_true")
    s = jnp.asarray(scores)
    if s.shape != t.shape:
        raise ValueError(f"roc_auc: scores need one value per label, shape {t.shape}; found {s.shape}")
    s = s.astype(jnp.promote_types(s.dtype, jnp.float32))
    ordered = jnp.sort(s)
    below = jnp.searchsorted(ordered, s, side="left").astype(jnp.float32)
    upto = jnp.searchsorted(ordered, s, side="right").astype(jnp.float32)
    ranks = below + (upto - below + 1.0) / 2.0  # 1-based average rank
    pos = (t == 1).astype(jnp.float32)
    n_pos, n_neg = pos.sum(), (1.0 - pos).sum()
    return ((ranks * pos).sum() - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)


def binarize(grades, positive_from: int = 2) -> jax.Array:
    """Referable (1) / non-referable (0): ``grade >= positive_from`` (moderate DR or worse)."""
    return (_labels(grades, "grades") >= positive_from).astype(jnp.int32)


def report(y_true, probabilities, *, positive_from: int = 2) -> dict:
    """Every metric of the DR studies as plain Python numbers (JSON-ready), host-side.

    ``probabilities``: (N, K) class probabilities; the predicted grade is their argmax.  The
    referable split uses :func:`binarize` for labels and predictions, and the summed probability
    of grades ``>= positive_from`` as the ROC score.  Undefined values (a class absent) are None.
    """
    import math

    probs = jnp.asarray(probabilities)
    if probs.ndim != 2:
        raise ValueError(f"report: expected probabilities (N, K); found shape {probs.shape}")
    k = probs.shape[1]
    t = _labels(y_true, "y_true")
    p = probs.argmax(-1)
    bt, bp = binarize(t, positive_from), binarize(p, positive_from)

    def num(v):
        v = float(v)
        return None if math.isnan(v) else v

    return {
        "n": int(t.shape[0]),
        "accuracy": num(accuracy(t, p)),
        "quadratic_weighted_kappa": num(quadratic_weighted_kappa(t, p, k)),
        "confusion_matrix": [[int(v) for v in row] for row in confusion_matrix(t, p, k).tolist()],
        "sensitivity_per_class": [num(v) for v in sensitivity(t, p, k).tolist()],
        "specificity_per_class": [num(v) for v in specificity(t, p, k).tolist()],
        "referable": {
            "positive_from_grade": positive_from,
            "accuracy": num(accuracy(bt, bp)),
            "sensitivity": num(sensitivity(bt, bp, 2)[1]),
            "specificity": num(specificity(bt, bp, 2)[1]),
            "roc_auc": num(roc_auc(bt, probs[:, positive_from:].sum(-1))),
        },
    }
