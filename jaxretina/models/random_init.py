"""Random variables for a model without compiling its ``init``.

``jax.jit(model.init)`` compiles one random draw per parameter (Inception V3: ~300 threefry
draws, 20–25 s of XLA compilation on a CPU); the draws here are NumPy's, shaped from an
abstract ``init`` (``jax.eval_shape``: no FLOPs, no compilation).  For experiments without
weights, tests and benchmarks — not a replacement for the model's own initialisation, whose
distributions it does not copy; parameters the model's init fixes rather than draws (DRIU's
bilinear upsampling kernels) are set as that init sets them, by the model's
``fixed_parameters(variables)`` when it has one.

Example::

    >>> variables = models.random_variables(InceptionV3(num_classes=5), seed=0)     # no compile
    >>> variables["params"]["fc"]["kernel"].shape
    (2048, 5)
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxretina.models import spec

__all__ = ["random_variables"]


def random_variables(model: Any, example_shape: Sequence[int] | None = None, *, seed: int = 0,
                     bias_std: float = 0.1) -> dict:
    """``{"params", "batch_stats"}`` of ``model`` with kernels ~ N(0, 1/fan_in) (fan_in = the
    product of every kernel axis but the last), biases and other parameters ~ N(0, bias_std²)
    and BatchNorm statistics and scales the identity (mean 0, variance 1, scale 1).

    ``example_shape``: an input shape with batch axis; default the model's ``shape_probe()``.
    """
    if example_shape is None:
        model, example = spec.shape_probe(model, "random_variables without example_shape")
        example = jax.ShapeDtypeStruct(example.shape, example.dtype)
    else:
        example = jax.ShapeDtypeStruct(tuple(example_shape), jnp.float32)
    shapes = jax.eval_shape(model.init, jax.random.key(0), example)
    shapes = {k: v for k, v in shapes.items() if k in ("params", "batch_stats")}
    rng = np.random.default_rng(seed)

    # Host arrays of the final dtype, then one transfer: no per-shape device program (a
    # jnp.ones or a float64 -> float32 conversion on the device compiles once per shape: ~150
    # small compiles for Inception V3).
    # Draws in the parameter's own precision (float32: 4x faster than float64 and a cast; VGG16's
    # 138 M values in 1 s instead of 4 s).
    def normal(shape, std, dtype):
        draw_dtype = dtype if dtype in (np.float32, np.float64) else np.dtype(np.float32)
        values = rng.standard_normal(shape, dtype=draw_dtype)
        values *= draw_dtype.type(std)
        return values.astype(dtype, copy=False)

    def fill(path, s):
        name = jax.tree_util.keystr(path)
        dtype = np.dtype(s.dtype)
        if "kernel" in name:
            return normal(s.shape, 1 / np.sqrt(np.prod(s.shape[:-1])), dtype)
        if "var" in name or "scale" in name:
            return np.ones(s.shape, dtype)
        if "mean" in name:
            return np.zeros(s.shape, dtype)
        return normal(s.shape, bias_std, dtype)

    variables = jax.device_put(jax.tree_util.tree_map_with_path(fill, shapes))
    return spec.fixed_parameters(model, variables)   # parameters a model's init sets, not draws
