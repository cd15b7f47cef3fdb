"""JAX's persistent compilation cache for the ``jaxretina`` command: a second run of the same
command loads its programs from disk instead of compiling them again.

Where (first match wins): the command's ``--compilation-cache DIR`` (``off`` disables it);
``JAXRETINA_COMPILATION_CACHE`` (a folder, or ``0`` / ``off`` to disable); JAX's own
``JAX_COMPILATION_CACHE_DIR`` if the user set it; else ``$XDG_CACHE_HOME/jaxretina/xla``
(``~/.cache/jaxretina/xla``).  Every program is cached, however fast it compiled (JAX's default
skips those under a second; the demo's are many small ones).  The library itself never turns
the cache on: only the command line does, and a user's script may call :func:`enable`.

:class:`CompileCount` counts what a block of code compiled and what it loaded from the cache
(JAX's monitoring events).

Example::

    >>> import jaxretina.compilation_cache as cc
    >>> cc.cache_dir(flag="off")
    >>> with cc.CompileCount() as count:
    ...     _ = jax.jit(lambda v: v + 1)(1.0)
    >>> count.compiled + count.cached >= 1
    True
"""

from __future__ import annotations

import os
import threading

__all__ = ["cache_dir", "enable", "CompileCount", "ENV"]

ENV = "JAXRETINA_COMPILATION_CACHE"
_OFF = ("0", "off", "no", "false", "none", "")


def _default_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "jaxretina", "xla")


def cache_dir(flag: str | None = None) -> str | None:
    """The folder the cache would use (``None``: disabled), from the flag, the environment and
    the default, in that order."""
    for value in (flag, os.environ.get(ENV)):
        if value is not None:
            return None if value.strip().lower() in _OFF else os.path.abspath(os.path.expanduser(value))
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.path.abspath(os.environ["JAX_COMPILATION_CACHE_DIR"])
    return _default_dir()


def enable(flag: str | None = None) -> str | None:
    """Turn JAX's persistent compilation cache on in :func:`cache_dir`; returns the folder (or
    ``None`` if disabled).  Call it before the first compile of the process."""
    import jax

    path = cache_dir(flag)
    if path is None:
        return None
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise ValueError(f"compilation cache: cannot create {path} ({err}); give another folder with "
                         f"--compilation-cache DIR or {ENV}=DIR, or turn it off with {ENV}=off") from None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


class CompileCount:
    """Counts, while active, the programs XLA compiled (``compiled``) and those loaded from the
    persistent cache instead (``cached``); ``compile_s`` is the time of both."""

    _lock = threading.Lock()
    _active: list["CompileCount"] = []
    _registered = False

    def __init__(self):
        self.programs, self.compile_s, self.cached = 0, 0.0, 0

    @property
    def compiled(self) -> int:
        # JAX times a program's "backend compile" also when the persistent cache supplies it
        return max(0, self.programs - self.cached)

    @classmethod
    def _on_duration(cls, event: str, seconds: float, **_) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            for c in list(cls._active):
                c.programs += 1
                c.compile_s += seconds

    @classmethod
    def _on_event(cls, event: str, **_) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            for c in list(cls._active):
                c.cached += 1

    def __enter__(self) -> "CompileCount":
        import jax

        with self._lock:
            if not CompileCount._registered:
                jax.monitoring.register_event_duration_secs_listener(CompileCount._on_duration)
                jax.monitoring.register_event_listener(CompileCount._on_event)
                CompileCount._registered = True
            CompileCount._active.append(self)
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            CompileCount._active.remove(self)

    def as_dict(self) -> dict:
        return {"compiled": self.compiled, "compile_s": round(self.compile_s, 3), "from_cache": self.cached}
