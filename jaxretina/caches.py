"""jaxretina's process-wide caches, in one place: one call empties them all.

jaxretina remembers what is costly to find out and safe to reuse while a process runs: the
names and shapes of a model's layers (an abstract trace of its ``init``, ~0.5–1 s for
Inception V3), abstract variable shapes, the target objects that keep compiled programs
reusable.  Each such cache is made with :func:`memoize` (or registered with
:func:`on_clear`), so :func:`clear_caches` — also ``jaxretina.clear_caches()`` — empties
every one of them and JAX's own compilation caches: for a long-lived process (a notebook, a
server) that has explained many models and wants the memory back.

Example::

    >>> @memoize(maxsize=8)
    ... def square(n):
    ...     return n * n
    >>> square(3), square.cache_info().currsize
    (9, 1)
    >>> clear_caches(jax_too=False)
    >>> square.cache_info().currsize
    0
"""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

__all__ = ["memoize", "on_clear", "clear_caches"]

F = TypeVar("F", bound=Callable)
_CLEARERS: list[Callable[[], None]] = []


def on_clear(clear: Callable[[], None]) -> Callable[[], None]:
    """Register ``clear()`` to be called by :func:`clear_caches`; returns it."""
    _CLEARERS.append(clear)
    return clear


def memoize(maxsize: int = 64, *, typed: bool = False) -> Callable[[F], F]:
    """``functools.lru_cache(maxsize, typed=typed)`` that :func:`clear_caches` empties."""

    def decorate(fn: F) -> F:
        cached = functools.lru_cache(maxsize=maxsize, typed=typed)(fn)
        on_clear(cached.cache_clear)
        return cached  # type: ignore[return-value]

    return decorate


def clear_caches(*, jax_too: bool = True) -> None:
    """Empty every jaxretina cache and (``jax_too``) JAX's compiled-program caches
    (``jax.clear_caches()``).  Results do not change; the next call of each method traces and
    compiles again (the persistent compilation cache on disk, when enabled, is kept)."""
    for clear in _CLEARERS:
        clear()
    if jax_too:
        import jax

        jax.clear_caches()
