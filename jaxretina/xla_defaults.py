"""XLA options jaxretina sets by default, each with the measurement that justifies it.

``--xla_cpu_experimental_ynn_fusion_type=`` (empty: no YNNPACK fusions) on the CPU backend.
Measured on the 2-core build machine with jaxlib 0.10.2 (benchmarks/driu_attribution.py, DRIU
vessel at 256×256, one process per case): IG with 16 Gauss–Legendre steps 9.94 s → 7.15 s with
chunks of 8 and 11.25 s → 8.28 s with all steps in one vmap, IG with 64 steps 33.5 s → 28.3 s
(chunks of 8), all-layer Grad-CAM 0.60 s → 0.53 s, peak memory lower in every case.  Results
agree to float32 rounding: at 128×128 the largest difference of IG (8 steps) and of every
signed Grad-CAM map, relative to the map's largest magnitude, was 3.6e-6.  It only affects CPU
compilation, so it is harmless on GPU/TPU.

The cost: float64 convolutions.  XLA:CPU sends float16/float32 convolutions to Eigen and
float64 ones to YNNPACK — off with this option — or else to its own loop emitter: a float64
DRIU forward at 37×45, batch 6, 4.3 s with the option vs 0.12 s without (a 5×6×512×512 float64
3×3 convolution: 0.95 s vs 0.016 s; float32 unchanged).  For float64 work on a CPU (parity
checks) set ``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=individual_convolution`` (YNNPACK
convolutions only; float32 IG on DRIU 256² 7.0 s vs 5.6 s with the default) or
``JAXRETINA_XLA_DEFAULTS=0`` before JAX starts.

Rules: applied only if the user's ``XLA_FLAGS`` does not mention the option already, only
before JAX has created its backends (XLA reads the variable then), only on jaxlib versions
where the option was verified to exist (XLA aborts the process on an unknown flag), and never
when ``JAXRETINA_XLA_DEFAULTS=0``.
"""

from __future__ import annotations

import os

__all__ = ["apply_defaults"]

_OPTION = "xla_cpu_experimental_ynn_fusion_type"
_VALUE = f"--{_OPTION}="
_VERIFIED = ((0, 10), (0, 11))  # jaxlib minor versions [lo, hi) where the option exists


def _jaxlib_version() -> tuple[int, int] | None:
    try:
        import jaxlib

        major, minor = jaxlib.__version__.split(".")[:2]
        return int(major), int(minor)
    except Exception:  # noqa: BLE001 - unknown layout: do nothing
        return None


def _backends_started() -> bool:
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except Exception:  # noqa: BLE001 - private API moved: assume started, do nothing
        return True


def apply_defaults() -> bool:
    """Add jaxretina's XLA defaults to ``XLA_FLAGS`` if allowed; True if anything was added."""
    if os.environ.get("JAXRETINA_XLA_DEFAULTS", "1") == "0":
        return False
    flags = os.environ.get("XLA_FLAGS", "")
    if _OPTION in flags:
        return False
    version = _jaxlib_version()
    if version is None or not (_VERIFIED[0] <= version < _VERIFIED[1]) or _backends_started():
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {_VALUE}".strip()
    return True
