"""Input checks that fail early with a message saying what was expected and what was found.

Shape and dtype checks cost nothing (they read static metadata, also under ``jit``/``vmap``).
The finiteness check needs values: it runs on concrete arrays only (a numpy array is checked
on the host; a device array costs one reduction on its device and a one-boolean transfer) and
is skipped for tracers, so it never breaks a caller's ``jit`` or ``vmap``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import jax
import jax.numpy as jnp

__all__ = ["check_image_batch", "check_example", "check_finite", "check_float", "check_weight_dtype",
           "FLOAT_WEIGHT_DTYPES"]


def _describe(x: Any) -> str:
    return f"shape {tuple(np.shape(x))}, dtype {getattr(x, 'dtype', type(x).__name__)}"


def check_float(x: Any, *, name: str) -> None:
    """Raise ``TypeError`` unless ``x`` has a floating dtype."""
    dtype = getattr(x, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        hint = ""
        if dtype is not None and jnp.issubdtype(dtype, jnp.integer):
            hint = " (integer pixels: preprocess first, e.g. jaxretina.preprocess.driu_caffe_input)"
        raise TypeError(f"{name}: expected a floating-point array; found {_describe(x)}{hint}")


FLOAT_WEIGHT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def check_weight_dtype(found: Any, want: Any, what: str) -> None:
    """Refuse (``ValueError`` naming ``what``) stored weights of dtype ``found`` where float
    weights of dtype ``want`` are expected: bool, integer, complex and float8 weights are never
    cast silently; float16, bfloat16, float32 and float64 are converted.

    >>> check_weight_dtype(np.dtype("float16"), np.float32, "conv1.weight")
    >>> check_weight_dtype(np.dtype("int64"), np.float32, "conv1.weight")
    Traceback (most recent call last):
    ValueError: conv1.weight holds int64 values; expected floating-point weights (float16, bfloat16, float32, float64), converted to float32
    """
    if not jnp.issubdtype(np.dtype(want), jnp.floating):
        return
    found = np.dtype(found)
    if found.name not in FLOAT_WEIGHT_DTYPES:
        raise ValueError(f"{what} holds {found.name} values; expected floating-point weights "
                         f"({', '.join(FLOAT_WEIGHT_DTYPES)}), converted to {np.dtype(want).name}")


def check_image_batch(x: Any, *, channels: int | None, name: str, spatial_dims: int = 2) -> None:
    """Check a channels-last batch (N, *spatial, C) with ``channels`` channels and a float dtype."""
    rank = spatial_dims + 2
    layout = "(N, H, W, C)" if spatial_dims == 2 else "(N, D, H, W, C)"
    if np.ndim(x) != rank:
        raise ValueError(f"{name}: expected a rank-{rank} batch {layout}; found {_describe(x)}")
    check_float(x, name=name)
    if channels is not None and x.shape[-1] != channels:
        hint = ""
        if x.shape[1] == channels:
            hint = " — this looks channels-first (NCHW); jaxretina is channels-last (NHWC)"
        raise ValueError(
            f"{name}: expected {channels} channels in the last axis of {layout}; "
            f"found {_describe(x)}{hint}"
        )


def check_example(x: Any, *, name: str, rank: int | None = None) -> None:
    """Check one unbatched example: a float array of the given rank (if any), finite values."""
    if rank is not None and np.ndim(x) != rank:
        raise ValueError(
            f"{name}: expected one example of rank {rank} (a batch is jax.vmap over examples); "
            f"found {_describe(x)}"
        )
    check_float(x, name=name)
    check_finite(x, name=name)


def check_finite(x: Any, *, name: str) -> None:
    """Raise ``ValueError`` if a concrete ``x`` holds NaN or ±inf; tracers pass unchecked."""
    if isinstance(x, jax.core.Tracer):
        return
    if isinstance(x, np.ndarray) or np.isscalar(x):
        ok = bool(np.isfinite(x).all())
    else:
        # a concrete device array met while tracing (a closed-over baseline, say): evaluate now
        with jax.ensure_compile_time_eval():
            ok = bool(_all_finite(x))
    if not ok:
        arr = np.asarray(x)
        raise ValueError(
            f"{name}: expected finite values; found {int(np.isnan(arr).sum())} NaN and "
            f"{int(np.isinf(arr).sum())} inf among {arr.size} ({_describe(x)})"
        )


@jax.jit
def _all_finite(x: jax.Array) -> jax.Array:
    return jnp.isfinite(x).all()
