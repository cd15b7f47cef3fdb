"""Wall time of a block split into compile time and run time, without running anything twice.

JAX reports the duration of every trace, lowering and backend compile through
``jax.monitoring``; :class:`Stopwatch` sums those reported inside its block, so

    run time = wall time − compile time.

Example::

    >>> with Stopwatch() as sw:
    ...     cams = explain.grad_cam(model, variables, x, target)
    ...     _ = jax.block_until_ready(cams)
    >>> sw.wall >= sw.compile >= 0 and sw.run >= 0 and sw.compiles >= 0
    True
"""

from __future__ import annotations

import threading
import time

import jax

__all__ = ["Stopwatch"]

_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_BACKEND = "/jax/core/compile/backend_compile_duration"
_active: list["Stopwatch"] = []
_lock = threading.Lock()
_registered = False


def _listener(event: str, duration: float, **_kwargs) -> None:
    if event in _COMPILE_EVENTS:
        with _lock:
            for sw in _active:
                sw.compile += duration
                sw.compiles += event == _BACKEND


class Stopwatch:
    """Context manager: ``wall``, ``compile`` (trace + lower + compile) and ``run`` seconds,
    and ``compiles`` (number of backend compilations) of its block.  Block on results inside
    the ``with`` so that asynchronous dispatch does not hide run time."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.compile = 0.0
        self.compiles = 0

    @property
    def run(self) -> float:
        return max(self.wall - self.compile, 0.0)

    def __enter__(self) -> "Stopwatch":
        global _registered
        with _lock:
            if not _registered:
                jax.monitoring.register_event_duration_secs_listener(_listener)
                _registered = True
            _active.append(self)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._start
        with _lock:
            _active.remove(self)

    def as_dict(self) -> dict[str, float]:
        return {"wall_s": self.wall, "compile_s": self.compile, "run_s": self.run, "compiles": self.compiles}
