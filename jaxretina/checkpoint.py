"""Save and load model variables as Orbax checkpoints (a directory).

Loading takes the expected tree (``like``, e.g. ``jax.eval_shape(model.init, ...)``) and
reports every missing, unexpected and mis-shaped entry in one error.  Orbax stores arrays in
TensorStore/OCDBT files and metadata as JSON: restoring never executes code from the files.

Example::

    >>> path = save_variables("ckpt/driu", variables)
    >>> like = jax.eval_shape(model.init, jax.random.key(0), x[None])
    >>> restored = load_variables(path, like=like)
    >>> bool(jnp.all(restored["params"]["conv1_1"]["kernel"] == variables["params"]["conv1_1"]["kernel"]))
    True
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import jax
import jax.numpy as jnp

from jaxretina import caches
from jaxretina.models import spec
from jaxretina.taps import params_only
from jaxretina.validate import check_weight_dtype

__all__ = ["save_variables", "load_variables", "expected_variables"]


def _checkpointer():
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer()


def expected_variables(model: Any, example: Any = None, collections=("params", "batch_stats")) -> dict[str, Any]:
    """The model's variable shapes (``jax.ShapeDtypeStruct``, no compute) for ``collections``.

    ``example``: a valid input batch; by default the model's own ``shape_probe()`` (every
    jaxretina model has one) supplies a module and input with the same variable shapes.
    """
    if example is None:
        return dict(_probe_shapes(model, tuple(collections)))
    shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), example)
    return {k: v for k, v in shapes.items() if k in collections}


@caches.memoize(maxsize=32)
def _probe_shapes(model: Any, collections: tuple[str, ...]) -> dict[str, Any]:
    # Tracing a model's init costs ~0.4 s for DenseNet121 (Flax module overhead, no compute):
    # more than reading its weights.  Shapes depend only on the (hashable) module's fields, so
    # a process converting many checkpoints of one model traces it once.  Callers copy the dict.
    probe, example = spec.shape_probe(model, "expected_variables without an example")
    shapes = jax.eval_shape(lambda x: probe.init(jax.random.key(0), x), example)
    return {k: v for k, v in shapes.items() if k in collections}


def save_variables(path: str | os.PathLike, variables: Any) -> str:
    """Write ``variables`` (a pytree of arrays) to the new directory ``path``; returns it."""
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path):
        raise FileExistsError(f"save_variables: {path} exists; expected a new directory path")
    ckpt = _checkpointer()
    # Tap-point collections (zero perturbations, recorded activations) that model.init returns
    # are per input size and carry no weights: never stored.
    ckpt.save(path, jax.tree.map(np.asarray, params_only(variables)))
    ckpt.wait_until_finished()
    return path


def _flat(tree: Any) -> dict[str, Any]:
    return {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(tree)}


@jax.jit
def _all_finite(tree: Any) -> Any:
    return jax.tree.map(lambda a: jnp.all(jnp.isfinite(a)) if jnp.issubdtype(a.dtype, jnp.inexact) else True, tree)


def load_variables(path: str | os.PathLike, *, like: Any) -> Any:
    """Restore the checkpoint at ``path`` into the structure, shapes and dtypes of ``like``.

    Refused with one ``ValueError`` naming every offending path: missing, unexpected and
    mis-shaped arrays, stored dtypes that are not float where ``like`` is (bool, integer,
    complex, float8: never cast silently), unreadable array files, and NaN or infinite values.
    """
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"load_variables: expected an Orbax checkpoint directory; found no directory at {path}"
            " (Caffe and PyTorch weight files need the converters)"
        )
    ckpt = _checkpointer()
    try:
        stored = ckpt.metadata(path)
        stored = getattr(stored, "item_metadata", stored)
    except Exception as err:  # noqa: BLE001 - any unreadable directory gets the same message
        raise ValueError(f"load_variables: {path} is not a readable Orbax checkpoint ({err})") from err
    like = params_only(like)
    want, have = _flat(like), _flat(stored)
    missing = sorted(set(want) - set(have))
    unexpected = sorted(set(have) - set(want))
    misshaped, mistyped = [], []
    for k in sorted(set(want) & set(have)):
        shape = tuple(getattr(have[k], "shape", ()) or ())
        if tuple(want[k].shape) != shape:
            misshaped.append(f"{k}: expected {tuple(want[k].shape)}, found {shape}")
        try:
            check_weight_dtype(getattr(have[k], "dtype", None) or np.dtype("O"), want[k].dtype, k)
        except (ValueError, TypeError) as err:
            mistyped.append(str(err))
    if missing or unexpected or misshaped or mistyped:
        raise ValueError(
            f"load_variables: checkpoint {path} does not match the model: "
            f"missing {missing or 'none'}; unexpected {unexpected or 'none'}; "
            f"mis-shaped {misshaped or 'none'}; wrong dtype {mistyped or 'none'}"
        )
    try:
        restored = ckpt.restore(path, like)
    except Exception as err:  # noqa: BLE001 - damaged array files: one clear message
        raise ValueError(f"load_variables: {path}: the checkpoint's arrays cannot be read ({type(err).__name__}: "
                         f"{str(err)[:300]})") from err
    # One program on the arrays' devices (one compile per model, not one per array shape),
    # one small transfer of a boolean per array.
    finite = jax.device_get(_all_finite(restored))
    bad = [k for k, ok in _flat(finite).items() if not bool(ok)]
    if bad:
        raise ValueError(f"load_variables: checkpoint {path}: {', '.join(bad[:10])} hold NaN or infinite values")
    return restored
