"""Mini-batches of fixed shape from any source, decoded on host threads ahead of the device.

Each image is padded to a centred square and resized to ``size`` on the host
(:func:`jaxretina.data.sources.square_resize`), so every batch is ``(B, size, size, 3)`` uint8 and
the jitted preprocessing + model step compiles once.  Decoding runs in a thread pool (PIL
releases the GIL) ``prefetch`` batches ahead of the consumer.

Example::

    >>> src = data.kaggle_manual_dir("~/eyepacs", split="train")
    >>> order = data.class_balanced(src.labels, data.SEED001_FRACTIONS, batch_size=8)
    >>> for batch in data.batches(src, order, size=64, steps=1):      # seed 001: size 512, 1395 steps of 32
    ...     print(batch["image"].shape, batch["image"].dtype, batch["label"].shape, batch["label"].dtype)
    (8, 64, 64, 3) uint8 (8,) int32
"""

from __future__ import annotations

import collections
import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from jaxretina.data.sources import square_resize

__all__ = ["load_batch", "batches", "prefetched"]


def load_batch(source: Sequence[Any], indices: Iterable[int], size: int, *, pool: ThreadPoolExecutor | None = None,
               valid: np.ndarray | None = None) -> dict[str, Any]:
    """``{"image": (B, size, size, 3) uint8, "label": (B,) int32, "name": [B], "valid": (B,) bool}``."""
    indices = [int(i) for i in indices]

    def one(i):
        ex = source[i]
        return ex.name, square_resize(ex.image, size), ex.label

    rows = list(pool.map(one, indices)) if pool is not None else [one(i) for i in indices]
    return {
        "image": np.stack([r[1] for r in rows]),
        "label": np.asarray([r[2] for r in rows], np.int32),
        "name": [r[0] for r in rows],
        "valid": np.ones(len(rows), bool) if valid is None else np.asarray(valid, bool),
    }


def batches(source: Sequence[Any], order: Iterable[Any], *, size: int, steps: int | None = None,
            workers: int = 4, prefetch: int = 2) -> Iterator[dict[str, Any]]:
    """Batches for each entry of ``order`` (index arrays, or ``(indices, valid)`` pairs from
    :func:`jaxretina.data.sequential`), at most ``steps`` of them.  Same batches for the same
    order whatever the source type (folder, manual directory, TFDS)."""
    if not (isinstance(size, int) and size >= 8):
        raise ValueError(f"batches: size must be an int >= 8; found {size!r}")

    def load(idx, valid, pool):
        return load_batch(source, idx, size, pool=pool, valid=valid)

    return prefetched(load, order, steps=steps, workers=workers, prefetch=prefetch)


def prefetched(load: Callable[[Any, Any, ThreadPoolExecutor], dict[str, Any]], order: Iterable[Any], *,
               steps: int | None = None, workers: int = 4, prefetch: int = 2) -> Iterator[dict[str, Any]]:
    """``load(indices, valid, pool)`` for each entry of ``order``, ``prefetch`` batches ahead on a
    thread pool (which ``load`` may use to decode the batch's examples in parallel)."""
    order = iter(order) if steps is None else itertools.islice(order, steps)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, \
            ThreadPoolExecutor(max_workers=max(1, prefetch)) as ahead:
        pending: collections.deque = collections.deque()

        def submit():
            entry = next(order, None)
            if entry is None:
                return False
            idx, valid = entry if isinstance(entry, tuple) else (entry, None)
            pending.append(ahead.submit(load, idx, valid, pool))
            return True

        for _ in range(max(1, prefetch)):
            if not submit():
                break
        while pending:
            batch = pending.popleft().result()
            submit()
            yield batch
