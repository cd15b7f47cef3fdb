"""``jaxretina convert``: a foreign weight file → an Orbax checkpoint plus a JSON record.

The record (``<out>/jaxretina.json``) holds the source file's path, size and SHA-256, the
model name and options, the key-mapping summary (every Flax path and the source key it came
from, ignored and unexpected keys, the options read from the file), timings, and parity
figures when the model's converter names an independent reference (its optional
``reference(module, state)``): for DenseNet121 and Inception V3 (torchvision head),
torchvision's model with the same state dict on a seeded random input (max absolute and
relative logit difference under highest matmul precision).
``jaxretina.load(name, out)`` reads the checkpoint back with the recorded options.

Example::

    $ jaxretina convert DRIU_DRIVE.caffemodel --model driu --out weights/driu_drive
    >>> record = convert("DRIU_DRIVE.caffemodel", "driu", "weights/driu_drive")
    >>> record["mapping"]["mapped"], record["config"]["variant"], record["parity"]["available"]
    (36, 'vessel', False)

For DenseNet121 and Inception V3 ``record["parity"]`` holds ``max_abs`` and ``max_rel`` (e.g.
3.1e-07) against torchvision.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import numpy as np

__all__ = ["convert", "sha256"]


def sha256(path: str, block: int = 1 << 22) -> str:
    """SHA-256 (hex) of the file at ``path`` (:func:`jaxretina.loading.digest`)."""
    from jaxretina.loading import digest

    return digest(path, block)


def _parity(spec, model, variables, state: dict[str, np.ndarray], seed: int = 0) -> dict[str, Any]:
    """Max absolute / relative logit difference against torchvision on a seeded random input."""
    try:
        import torch
        import torchvision
    except ImportError as err:
        return {"available": False, "reason": f"torch/torchvision not installed ({err.name})"}
    import jax
    import jax.numpy as jnp

    found = spec.reference(model, state)
    if isinstance(found, str):
        return {"available": False, "reason": found}
    ref, state, size = found
    ref.load_state_dict({k: torch.from_numpy(np.array(v, np.float32)) if v.dtype.kind == "f" else
                         torch.from_numpy(np.array(v)) for k, v in state.items()})
    ref.eval()
    x = np.random.default_rng(seed).standard_normal((1, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).double().numpy()
    with jax.default_matmul_precision("highest"):
        got = np.asarray(jax.jit(model.apply)(variables, jnp.asarray(x.transpose(0, 2, 3, 1))), np.float64)
    diff = np.abs(got - want)
    return {"available": True, "reference": f"torchvision {torchvision.__version__} {type(ref).__name__}, torch "
            f"{torch.__version__}", "input": f"standard normal (1, 3, {size}, {size}), numpy seed {seed}",
            "max_abs": float(diff.max()), "max_rel": float(diff.max() / max(np.abs(want).max(), 1e-30))}


def convert(src: str | os.PathLike, model: str, out: str | os.PathLike, *, backend: str = "auto",
            parity: bool = True, **model_kwargs: Any) -> dict[str, Any]:
    """Convert ``src`` for ``model`` into the new Orbax directory ``out``; returns the record."""
    import jaxretina
    from converters.formats import read_weights
    from jaxretina.checkpoint import save_variables
    from jaxretina.loading import RECORD_NAME
    from jaxretina.models import registry

    src, out = os.fspath(src), os.path.abspath(os.fspath(out))
    spec = registry.get(model)
    spec.check_options(model_kwargs, "convert")
    if os.path.exists(out):
        raise FileExistsError(f"convert: {out} exists; expected a new directory path")
    t0 = time.perf_counter()
    kind, content = read_weights(src, backend=backend)  # read once: the parity check reuses it
    module, variables, report = spec.from_weights(kind, content, src, **model_kwargs)
    t_load = time.perf_counter() - t0
    save_variables(out, variables)
    t_save = time.perf_counter() - t0 - t_load
    if parity:
        check = _parity(spec, module, variables, content)
    else:
        check = {"available": False, "reason": "not requested (--no-parity)"}
    record = {
        "jaxretina_version": jaxretina.__version__,
        "model": spec.name,
        "config": spec.config_of(module),
        "source": {"path": os.path.abspath(src), "bytes": os.path.getsize(src), "sha256": sha256(src)},
        "mapping": report.summary(),
        "parity": check,
        "seconds": {"read_and_map": round(t_load, 3), "save": round(t_save, 3)},
    }
    text = json.dumps(record, indent=1)
    with open(os.path.join(out, RECORD_NAME), "w") as fh:
        fh.write(text)
    return json.loads(text)  # exactly what the file holds (tuples as lists)
