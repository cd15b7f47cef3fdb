"""``jaxretina.load``: one entry point from a weight file to ``(module, variables)``.

Supported models (``name``, :func:`jaxretina.models.registry.names`): ``"driu"`` (vessel or optic-disc, Caffe or
deepdraw configuration, decided by the file), ``"densenet121"``, ``"inception_v3"`` and
``"unet3d"`` (DS6).  Supported files (``path``), recognised by content, not extension:

* a ``.caffemodel`` (Caffe ``NetParameter``; no Caffe needed);
* a PyTorch ``.pth``/``.pt`` (zip or legacy format; read without executing pickled code);
* a ``.safetensors`` file;
* an Orbax checkpoint directory written by :func:`save` or ``jaxretina convert``: its
  ``jaxretina.json`` record names the model and restores its options (a bare Orbax checkpoint,
  e.g. from :func:`jaxretina.checkpoint.save_variables`, loads with
  :func:`jaxretina.checkpoint.load_variables`).

Foreign formats are handled by the ``converters`` package, imported only when needed.

Example::

    >>> model, variables = jaxretina.load("driu", "DRIU_DRIVE.caffemodel")
    >>> logits = jax.jit(model.apply)(variables, xs)   # xs: (N, H, W, 3)
    >>> logits.shape
    (2, 32, 32, 1)
    >>> model, variables = jaxretina.load("densenet121", "grader.pth", num_classes=5)
    >>> model.num_classes, model.in_channels
    (5, 3)
"""

from __future__ import annotations

import json
import os
from typing import Any

from jaxretina.models import registry

__all__ = ["load", "load_with_report", "save", "digest", "read_record", "from_weights", "RECORD_NAME"]

RECORD_NAME = "jaxretina.json"  # the conversion record inside a converted checkpoint directory


def digest(path: str | os.PathLike, block: int = 1 << 22) -> str:
    """SHA-256 (hex) of a weight file, or of a checkpoint directory: its files' relative names
    and contents, in sorted order."""
    import hashlib

    h = hashlib.sha256()
    path = os.fspath(path)
    if os.path.isdir(path):
        files = []
        for dirpath, dirnames, names in os.walk(path):
            dirnames.sort()
            files += [os.path.join(dirpath, n) for n in sorted(names)]
    else:
        files = [path]
    for full in files:
        if full != path:
            h.update(os.path.relpath(full, path).encode())
        with open(full, "rb") as fh:
            while chunk := fh.read(block):
                h.update(chunk)
    return h.hexdigest()


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """The ``jaxretina.json`` record of a checkpoint directory written by :func:`save` or
    ``jaxretina convert``, checked: a JSON object whose ``model`` is a registered name and
    whose ``config`` is an object.  Anything else is one ``ValueError`` saying what is wrong."""
    path = os.fspath(path)
    record_path = os.path.join(path, RECORD_NAME)
    bare = ("; a bare Orbax checkpoint loads with jaxretina.checkpoint.load_variables(path, like=...)")
    if not os.path.isfile(record_path):
        raise ValueError(f"{path}: no {RECORD_NAME} record: not a checkpoint written by jaxretina.save or "
                         f"jaxretina convert{bare}")
    try:
        with open(record_path, "rb") as fh:
            record = json.loads(fh.read(1 << 24))  # records are a few kB; a 16 MB cap is generous
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ValueError(f"{record_path}: malformed record, not JSON ({type(err).__name__}: {err})") from err
    if not isinstance(record, dict) or not isinstance(record.get("model"), str) \
            or not isinstance(record.get("config", {}), dict):
        raise ValueError(f"{record_path}: not a jaxretina record (expected an object with a 'model' name and a "
                         f"'config' object; found {str(record)[:120]}){bare}")
    if record["model"] not in registry.names():
        raise ValueError(f"{record_path}: records an unknown model {record['model']!r}; expected one of "
                         f"{list(registry.names())}")
    return record


def _load_orbax(spec: registry.ModelSpec, path: str, model_kwargs: dict[str, Any]):
    from converters.mapping import Report
    from jaxretina.checkpoint import expected_variables, load_variables

    record = read_record(path)
    if record["model"] != spec.name:
        raise ValueError(f"{path}: holds a {record['model']!r} model; asked to load it as {spec.name!r}")
    config = dict(record.get("config", {}))
    spec.check_options(config, os.path.join(path, RECORD_NAME))
    config.update(model_kwargs)
    model = spec.build(**config)
    like = expected_variables(model)
    variables = load_variables(path, like=like)
    return model, variables, Report(source_format="Orbax checkpoint", config=config)


def load_with_report(name: str, path: str | os.PathLike, *, backend: str = "auto", **model_kwargs: Any):
    """Like :func:`load`, plus the conversion :class:`converters.mapping.Report`."""
    spec = registry.get(name)
    path = os.fspath(path)
    if os.path.isdir(path):
        return _load_orbax(spec, path, model_kwargs)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load: no file or checkpoint directory at {path}")
    from converters.formats import read_weights

    kind, content = read_weights(path, backend=backend)
    return spec.from_weights(kind, content, path, **model_kwargs)


def from_weights(name: str, kind: str, content: Any, source: str, **model_kwargs: Any):
    """``(module, variables, report)`` from already-read weights ``(kind, content)`` of
    :func:`converters.formats.read_weights`, through the model's converter module."""
    return registry.get(name).from_weights(kind, content, source, **model_kwargs)


def load(name: str, path: str | os.PathLike, *, backend: str = "auto", **model_kwargs: Any):
    """``(module, variables)`` for model ``name`` with the weights at ``path``.

    Args:
      name: a registered model (:func:`jaxretina.models.registry.names`).
      path: a ``.caffemodel``, ``.pth``/``.pt``, ``.safetensors`` file or an Orbax directory.
      backend: PyTorch reader, ``"auto"`` | ``"torch"`` | ``"jaxretina"`` (see
        :func:`converters.torch.read_torch`).
      **model_kwargs: model options; they override what the file says (e.g. ``variant``,
        ``crop_offsets``, ``num_classes``).

    Raises ``ValueError`` listing every missing, unexpected and mis-shaped key when the file
    does not fit the model, and when a file is truncated or not a weight file.
    """
    model, variables, _ = load_with_report(name, path, backend=backend, **model_kwargs)
    return model, variables


def save(name: str, model: Any, variables: Any, out: str | os.PathLike, *, extra: dict | None = None) -> str:
    """Write ``variables`` of ``model`` (registered as ``name``) to the new Orbax directory ``out``
    with a record of the model's options, so that ``load(name, out)`` rebuilds the same model
    (e.g. after fine-tuning).  ``extra``: JSON-serialisable notes kept in the record."""
    import jaxretina
    from jaxretina.checkpoint import save_variables

    spec = registry.get(name)
    out = save_variables(out, variables)
    record = {"jaxretina_version": jaxretina.__version__, "model": spec.name, "config": spec.config_of(model),
              "notes": extra or {}}
    with open(os.path.join(out, RECORD_NAME), "w") as fh:
        json.dump(record, fh, indent=1)
    return out
