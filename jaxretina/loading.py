"""``jaxretina.load``: one entry point from a weight file to ``(module, variables)``.

Supported models (``name``, :data:`MODELS`): ``"driu"`` (vessel or optic-disc, Caffe or
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

import importlib
import json
import os
from typing import Any

__all__ = ["load", "load_with_report", "save", "digest", "read_record", "check_model_options", "MODELS", "RECORD_NAME",
           "model_config",
    "check_name", "model_from_config",
]

# name -> (class in jaxretina.models, converter module).  A converter module exposes
# ``from_weights(kind, content, source, **model_kwargs) -> (model, variables, report)`` for the
# ``(kind, content)`` of converters.formats.read_weights.  Adding a model = one line + one module.
_REGISTRY = {
    "driu": ("DRIU", "converters.driu"),
    "densenet121": ("DenseNet121", "converters.densenet"),
    "inception_v3": ("InceptionV3", "converters.inception"),
    "unet3d": ("UNet3D", "converters.unet3d"),
}
MODELS = tuple(_REGISTRY)
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


def check_name(name: str) -> str:
    key = name.lower().replace("-", "_")
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {list(MODELS)}")
    return key


def _tuples(value: Any) -> Any:
    # JSON turns tuples into lists; model options are tuples (hashable, as Flax fields must be).
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def model_config(model: Any) -> dict[str, Any]:
    """The JSON-serialisable options of a jaxretina model (for records and reloading)."""
    from dataclasses import fields

    out = {}
    for f in fields(model):
        if f.name in ("parent", "name", "act", "dtype"):
            continue
        out[f.name] = getattr(model, f.name)
    return out


def model_from_config(key: str, config: dict[str, Any]):
    from jaxretina import models

    return getattr(models, _REGISTRY[key][0])(**config)


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
    if record["model"] not in MODELS:
        raise ValueError(f"{record_path}: records an unknown model {record['model']!r}; expected one of {list(MODELS)}")
    return record


def check_model_options(name: str, config: dict[str, Any], source: str) -> None:
    """Refuse (``ValueError`` naming ``source`` and the option) options that are not fields of
    model ``name``, or whose value is not of the default's type (a JSON/TOML file gives lists
    for tuples and ints for whole floats, both accepted): the first model call is no place
    to find out."""
    import dataclasses

    from jaxretina import models

    key = check_name(name)
    fields = {f.name: f for f in dataclasses.fields(getattr(models, _REGISTRY[key][0]))}
    unknown = sorted(set(config) - set(fields) | {k for k in config if k in ("parent", "name")})
    if unknown:
        raise ValueError(f"{source}: unknown {key} options {unknown}; expected some of "
                         f"{sorted(set(fields) - {'parent', 'name', 'act', 'dtype'})}")
    for option, value in config.items():
        default = fields[option].default
        if default is dataclasses.MISSING or default is None or value is None:
            continue
        ok = (type(value) is type(default) or (type(default) is float and type(value) is int)
              or (type(default) is tuple and type(value) is list))
        if not ok:
            raise ValueError(f"{source}: option {option}={value!r:.60} is a {type(value).__name__}; expected a "
                             f"{type(default).__name__} (like the default {default!r:.60})")


def _load_orbax(key: str, path: str, model_kwargs: dict[str, Any]):
    from converters.mapping import Report
    from jaxretina.checkpoint import expected_variables, load_variables

    record = read_record(path)
    if record["model"] != key:
        raise ValueError(f"{path}: holds a {record['model']!r} model; asked to load it as {key!r}")
    config = {k: _tuples(v) for k, v in record.get("config", {}).items()}
    check_model_options(key, config, os.path.join(path, RECORD_NAME))
    config.update(model_kwargs)
    model = model_from_config(key, config)
    like = expected_variables(model)
    variables = load_variables(path, like=like)
    return model, variables, Report(source_format="Orbax checkpoint", config=config)


def load_with_report(name: str, path: str | os.PathLike, *, backend: str = "auto", **model_kwargs: Any):
    """Like :func:`load`, plus the conversion :class:`converters.mapping.Report`."""
    key = check_name(name)
    path = os.fspath(path)
    if os.path.isdir(path):
        return _load_orbax(key, path, model_kwargs)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load: no file or checkpoint directory at {path}")
    from converters.formats import read_weights

    kind, content = read_weights(path, backend=backend)
    return from_weights(key, kind, content, path, **model_kwargs)


def from_weights(name: str, kind: str, content: Any, source: str, **model_kwargs: Any):
    """``(module, variables, report)`` from already-read weights ``(kind, content)`` of
    :func:`converters.formats.read_weights`, through the model's converter module."""
    converter = importlib.import_module(_REGISTRY[check_name(name)][1])
    return converter.from_weights(kind, content, source, **model_kwargs)


def load(name: str, path: str | os.PathLike, *, backend: str = "auto", **model_kwargs: Any):
    """``(module, variables)`` for model ``name`` with the weights at ``path``.

    Args:
      name: one of :data:`MODELS`.
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

    key = check_name(name)
    out = save_variables(out, variables)
    record = {"jaxretina_version": jaxretina.__version__, "model": key, "config": model_config(model),
              "notes": extra or {}}
    with open(os.path.join(out, RECORD_NAME), "w") as fh:
        json.dump(record, fh, indent=1)
    return out
