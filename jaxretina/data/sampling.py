"""Which examples go into each mini-batch: class-balanced (seed 001), weighted oversampling
(seed 002), epochs in random order (seed 000's DRIU retraining), or every example once (evaluation).

Samplers are pure functions of ``(seed, step)``: batch ``s`` is the same whenever it is drawn,
so a resumed run continues with exactly the batches it would have seen (nothing to checkpoint).

Example::

    >>> labels = np.repeat(np.arange(5), 20)          # 20 examples of each grade
    >>> order = class_balanced(labels, SEED001_FRACTIONS, batch_size=32, seed=0)
    >>> np.bincount(labels[next(iter(order))], minlength=5)   # 32 indices: 16 grade 0, 2 grade 1, 4, 2, 8
    array([16,  2,  4,  2,  8])
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

__all__ = ["SEED001_FRACTIONS", "SEED002_WEIGHTS", "class_counts", "class_balanced", "weighted", "sequential",
           "shuffled"]

# Seed 001: every mini-batch holds 50 % grade 0, 6.25 % grade 1, 12.5 % grade 2, 6.25 % grade 3,
# 25 % grade 4.
SEED001_FRACTIONS = (0.5, 0.0625, 0.125, 0.0625, 0.25)
# Seed 002, eq. (2-1): per-grade sampling weights w = [0.1, 1, 0.5, 3, 4].
SEED002_WEIGHTS = (0.1, 1.0, 0.5, 3.0, 4.0)


def _labels(labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or labels.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D integer array; found shape {labels.shape}, "
                         f"dtype {labels.dtype}")
    return labels


def class_counts(fractions: Sequence[float], batch_size: int) -> np.ndarray:
    """Examples per class in one batch: ``fractions · batch_size`` rounded by largest remainder
    (the counts sum to ``batch_size``; exact when the products are integers)."""
    f = np.asarray(fractions, np.float64)
    if f.ndim != 1 or np.any(f < 0) or not np.isclose(f.sum(), 1.0):
        raise ValueError(f"fractions must be non-negative and sum to 1; found {tuple(fractions)}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive int; found {batch_size!r}")
    raw = f * batch_size
    counts = np.floor(raw).astype(np.int64)
    short = batch_size - counts.sum()
    counts[np.argsort(-(raw - counts), kind="stable")[:short]] += 1
    return counts


def class_balanced(labels, fractions: Sequence[float], batch_size: int, *, seed: int = 0,
                   start: int = 0) -> Iterator[np.ndarray]:
    """Endless batches with a fixed number of examples per class (:func:`class_counts`), drawn
    uniformly with replacement within each class, shuffled within the batch.

    Yields ``(batch_size,)`` int64 indices into ``labels``; ``start`` skips to that batch number.
    """
    labels = _labels(labels)
    counts = class_counts(fractions, batch_size)
    members = [np.flatnonzero(labels == k) for k in range(len(counts))]
    empty = [k for k, (n, m) in enumerate(zip(counts, members)) if n and m.size == 0]
    if empty:
        raise ValueError(f"class_balanced: classes {empty} have a non-zero fraction but no examples "
                         f"(labels present: {sorted(set(labels.tolist()))})")
    step = start
    while True:
        rng = np.random.default_rng([seed, step])
        idx = np.concatenate([rng.choice(m, size=n) for n, m in zip(counts, members) if n])
        yield rng.permutation(idx)
        step += 1


def weighted(labels, class_weights: Sequence[float], batch_size: int, *, seed: int = 0,
             start: int = 0) -> Iterator[np.ndarray]:
    """Endless batches drawn with replacement, example ``i`` with probability ∝
    ``class_weights[labels[i]]`` (seed 002's oversampling).  Class ``k``'s expected share is
    ``w_k n_k / Σ_j w_j n_j``."""
    labels = _labels(labels)
    w = np.asarray(class_weights, np.float64)
    if w.ndim != 1 or np.any(w < 0) or labels.max() >= w.size or labels.min() < 0:
        raise ValueError(f"class_weights must be non-negative with one entry per label 0..{labels.max()}; "
                         f"found {tuple(class_weights)}")
    p = w[labels]
    if p.sum() <= 0:
        raise ValueError("weighted: every example has weight 0")
    p = p / p.sum()
    step = start
    while True:
        yield np.random.default_rng([seed, step]).choice(labels.size, size=batch_size, p=p)
        step += 1


def sequential(n: int, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every example once, in order, as ``(indices, valid)``: the last batch is padded with
    repeats of index 0 and ``valid`` marks the real ones, so every batch has one shape (one
    compiled evaluation program)."""
    for lo in range(0, n, batch_size):
        idx = np.arange(lo, min(lo + batch_size, n))
        valid = np.ones(batch_size, bool)
        valid[idx.size:] = False
        yield np.concatenate([idx, np.zeros(batch_size - idx.size, np.int64)]), valid


def shuffled(n: int, batch_size: int = 1, *, seed: int = 0, start: int = 0) -> Iterator[np.ndarray]:
    """Endless batches going through all ``n`` examples once per epoch, each epoch in a new random
    order (epoch ``e``'s permutation from ``(seed, e)``); a batch may span two epochs.  Batch
    ``b`` depends only on ``(seed, b)``: ``start`` resumes exactly.  Seed 000 trains on one image
    per step (``batch_size=1``)."""
    if not (isinstance(n, (int, np.integer)) and n >= 1 and isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"shuffled: n and batch_size must be positive ints; found {n!r}, {batch_size!r}")
    cache: dict[int, np.ndarray] = {}

    def perm(epoch):
        if epoch not in cache:
            if len(cache) > 2:
                cache.clear()
            cache[epoch] = np.random.default_rng([seed, epoch]).permutation(n)
        return cache[epoch]

    step = start
    while True:
        pos = step * batch_size + np.arange(batch_size)
        yield np.asarray([perm(int(p // n))[p % n] for p in pos], np.int64)
        step += 1
