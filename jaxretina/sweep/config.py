"""A sweep's configuration: model, data, methods, targets and how to batch them.

One configuration comes from flags, from a config file (TOML or YAML, the same keys) or from
both (flags override the file); :func:`sweep_config` checks it and gives a frozen
:class:`SweepConfig`.  Methods and targets are written ``name:key=value,key=value``; a list
value is joined with ``+`` (``gradcam:layers=conv1_2+upsample2``).  In a file they may also be
tables::

    # sweep.toml
    model = "driu"
    data = "images/"
    out = "store.zarr"
    batch = 8
    size = 256
    method = ["ig:steps=32", {kind = "gradcam", layers = "all"}]
    target = ["segmentation_sum"]
    metric = ["deletion:steps=16", "pointing_game"]     # scored in the same program
    masks = "DRIVE/training/1st_manual/{prefix}_manual1.gif"

The part of the configuration that decides the results (:meth:`SweepConfig.identity`) is
recorded in the store; resuming with a different one is refused, naming the keys that differ.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Mapping

__all__ = ["Spec", "SweepConfig", "parse_spec", "parse_value", "sweep_config", "read_config_file", "DTYPES", "PROGRAMS",
           "positive_int", "finite_number"]

DTYPES = ("float16", "float32")
# Keys that say where and how fast, not what: a resumed run may change them.
_RUNTIME_KEYS = ("out", "progress", "coordinator", "num_processes", "process_id", "dry_run", "programs")
# How the per-example work is compiled: one program per method (the default: compile time grows
# with the number of methods, not faster, and a method added later compiles alone) or one
# program for them all (XLA may share the methods' common forward passes).
PROGRAMS = ("method", "one")
# Keys added after the first stores were written: left out of the identity while unset.
_OPTIONAL_KEYS = ("metrics", "masks", "fov")


@dataclasses.dataclass(frozen=True)
class Spec:
    """A method or target: ``kind`` plus options (sorted ``(key, value)`` pairs)."""

    kind: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def opts(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def name(self) -> str:
        """The store name: ``name=`` if given, else the kind (targets: kind and options)."""
        return str(self.opts.get("name", self.kind))

    def text(self) -> str:
        """Back to ``kind:key=value,...`` (lists joined with ``+``)."""
        parts = [f"{k}={'+'.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in self.options]
        return self.kind + (":" + ",".join(parts) if parts else "")


def parse_value(text: str) -> Any:
    """A flag's text as a value: ``true``/``false``, an int, a float, else the text."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, str) and "+" in value:
        return tuple(parse_value(v) for v in value.split("+"))
    return value


def parse_spec(spec: str | Mapping[str, Any] | Spec, *, what: str = "method") -> Spec:
    """``"ig:steps=32,rule=gausslegendre"`` (or ``{"kind": "ig", "steps": 32}``) -> :class:`Spec`.

    >>> parse_spec("gradcam:layers=conv1_2+upsample2,relu=false").opts
    {'layers': ('conv1_2', 'upsample2'), 'relu': False}
    """
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, Mapping):
        spec = dict(spec)
        if "kind" not in spec:
            raise ValueError(f"{what} table {spec!r}: needs a 'kind' key (e.g. kind = \"ig\")")
        kind = str(spec.pop("kind"))
        items = spec.items()
    elif isinstance(spec, str):
        kind, _, rest = spec.partition(":")
        items = []
        for part in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, val = part.partition("=")
            if not eq or not key:
                raise ValueError(f"{what} {spec!r}: expected key=value options after ':'; found {part!r}")
            items.append((key.strip(), parse_value(val.strip())))
    else:
        raise TypeError(f"{what}: expected 'kind:key=value,...' or a table; found {type(spec).__name__}")
    kind = kind.strip().lower()
    if not kind:
        raise ValueError(f"{what} {spec!r}: empty kind")
    return Spec(kind, tuple(sorted((str(k), _freeze(v)) for k, v in items)))


def _shape(size: Any) -> tuple[int, ...] | None:
    """``256`` -> (256, 256); ``"256x320"`` / ``[256, 320]`` -> (256, 320); ``None`` stays."""
    if size is None or size == "none":
        return None
    if isinstance(size, str):
        try:
            size = [int(s) for s in size.lower().split("x")]
        except ValueError:
            raise ValueError(f"size: expected an image size like 256 or 256x320 (height x width); "
                             f"found {size!r}") from None
    if isinstance(size, int):
        size = [size, size]
    size = tuple(int(s) for s in size)
    size = size * 2 if len(size) == 1 else size
    if len(size) != 2 or any(s < 1 for s in size):
        raise ValueError(f"size: expected an image size like 256 or 256x320 (height x width); found {size}")
    return size


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Everything a sweep needs.  See :func:`jaxretina.sweep.run` for the meaning of each key."""

    model: str
    data: str
    out: str
    methods: tuple[Spec, ...]
    targets: tuple[Spec, ...] = ()
    metrics: tuple[Spec, ...] = ()
    masks: str | None = None
    fov: str | None = None
    weights: str | None = None
    model_options: tuple[tuple[str, Any], ...] = ()
    batch: int = 8
    micro_batch: int = 1
    programs: str = "method"
    size: tuple[int, ...] | None = None
    preprocess: str | None = None
    dtype: str = "float32"
    split: str | None = None
    tfds_dir: str | None = None
    seed: int = 0
    progress: bool = True
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None

    def identity(self) -> dict[str, Any]:
        """The JSON-able keys that decide the results (everything but where and how fast)."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name in _RUNTIME_KEYS:
                continue
            v = getattr(self, f.name)
            if f.name in _OPTIONAL_KEYS and not v:
                continue   # absent from stores made before them: resuming those stays possible
            if f.name in ("methods", "targets", "metrics"):
                v = [s.text() for s in v]
            elif f.name == "model_options":
                v = dict(v)
            elif f.name in ("data", "weights", "tfds_dir", "masks", "fov") and v is not None and "://" not in v \
                    and "{" not in v:
                v = os.path.abspath(os.path.expanduser(v))
            out[f.name] = v
        return json.loads(json.dumps(out, default=list))


_MAX_CONFIG_BYTES = 1 << 20


def _loader():
    """PyYAML's safe loader without aliases: ``*anchor`` references let a few lines of YAML
    stand for billions of nodes ("billion laughs"), and a sweep config never needs them."""
    import yaml

    class NoAliases(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a sweep config",
                                                  event.start_mark)
            return super().compose_node(parent, index)

    return NoAliases


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A TOML (``.toml``) or YAML (``.yaml``/``.yml``) file's keys as a dict (YAML aliases and
    files over 1 MiB are refused)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: the config file is not a regular file (missing, a folder, a FIFO or a device)")
    with open(path, "rb") as fh:
        raw = fh.read(_MAX_CONFIG_BYTES + 1)
    if len(raw) > _MAX_CONFIG_BYTES:
        raise ValueError(f"{path}: a config file of more than {_MAX_CONFIG_BYTES >> 20} MiB; expected a few keys")
    if path.endswith(".toml"):
        import tomllib

        try:
            return tomllib.loads(raw.decode())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise ValueError(f"{path}: not valid TOML: {e}") from None
    if path.endswith((".yaml", ".yml")):
        import yaml

        try:
            loaded = yaml.load(raw, Loader=_loader()) or {}
        except (yaml.YAMLError, RecursionError) as e:
            raise ValueError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of keys at the top; found {type(loaded).__name__}")
        return loaded
    raise ValueError(f"{path}: config files are .toml, .yaml or .yml")


_ALIASES = {"method": "methods", "target": "targets", "metric": "metrics"}


def positive_int(v) -> bool:
    """A method's or metric's option value that is an integer ≥ 1 (not a bool)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def finite_number(v) -> bool:
    """A method's or metric's option value that is a finite int or float (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(math.isfinite(v))


def _of(*types):
    # isinstance that does not take True for an int
    return lambda v: isinstance(v, types) and not (isinstance(v, bool) and bool not in types)


def _count(minimum: int):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum


# Each key's check and what it expects, applied to the merged file and flags before anything
# else reads them (a config file is a stranger's: its values may be of any type).
_KEY_TYPES = {
    "model": (_of(str), "a model name (text)"),
    "data": (_of(str), "a folder or tfds:NAME (text)"),
    "out": (_of(str), "a folder path (text)"),
    "weights": (_of(str), "a weights file or checkpoint path (text)"),
    "masks": (_of(str), "a folder or a path template with {stem} (text)"),
    "fov": (_of(str), "a folder or a path template with {stem} (text)"),
    "model_options": (lambda v: isinstance(v, (Mapping, tuple)), "a table of model options"),
    "size": (lambda v: _count(1)(v) or isinstance(v, str) or (isinstance(v, (list, tuple)) and 1 <= len(v) <= 2
                                                             and all(_count(1)(x) for x in v)),
             "an image size: 256, \"256x320\" or [256, 320]"),
    "preprocess": (_of(str), "a preprocessing name (text)"),
    "dtype": (_of(str), f"one of {DTYPES}"),
    "programs": (lambda v: v in PROGRAMS, f"one of {PROGRAMS}"),
    "split": (_of(str), "a split name (text)"),
    "tfds_dir": (_of(str), "a folder path (text)"),
    "seed": (_count(0), "a non-negative integer"),
    "progress": (_of(bool), "true or false"),
    "coordinator": (_of(str), "HOST:PORT (text)"),
    "num_processes": (_count(1), "a positive integer"),
    "process_id": (_count(0), "a non-negative integer"),
    "dry_run": (_of(bool), "true or false"),
}


def sweep_config(file: str | os.PathLike | None = None, **keys: Any) -> SweepConfig:
    """A checked :class:`SweepConfig` from a config ``file`` and/or keyword keys (which win;
    ``None`` values are ignored, so unset flags do not erase the file's keys)."""
    merged: dict[str, Any] = {}
    for source in ([read_config_file(file)] if file else []) + [keys]:
        for k, v in source.items():
            k = _ALIASES.get(k.replace("-", "_"), k.replace("-", "_"))
            if v is not None and not (k in ("methods", "targets", "metrics") and v == []):
                merged[k] = v
    known = {f.name for f in dataclasses.fields(SweepConfig)}
    unknown = sorted(set(merged) - known)
    if unknown:
        raise ValueError(f"sweep: unknown configuration keys {unknown}; expected some of {sorted(known)}")
    for k, v in merged.items():
        check, expected = _KEY_TYPES.get(k, (None, ""))
        if check is not None and not check(v):
            raise ValueError(f"sweep: {k} must be {expected}; found {type(v).__name__} {v!r:.60}")
    missing = [k for k in ("model", "data", "out", "methods") if not merged.get(k)]
    if missing:
        raise ValueError(f"sweep: missing {missing} (flags --{' --'.join(missing)} or the config file)")
    for k in ("methods", "targets", "metrics"):
        v = merged.get(k, ())
        v = [v] if isinstance(v, (str, Mapping)) else v
        if not isinstance(v, (list, tuple)):
            raise ValueError(f"sweep: {k} must be a list of 'kind:key=value' texts or tables; found "
                             f"{type(v).__name__} {v!r:.60}")
        try:
            merged[k] = tuple(parse_spec(s, what=k[:-1]) for s in v)
        except TypeError as e:
            raise ValueError(f"sweep: {e}") from None
    names = [m.name for m in merged["methods"]]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"sweep: methods {dup} appear twice; give each a name= option (ig:steps=64,name=ig64)")
    odd = [n for n in names if ":" in n]
    if odd:
        raise ValueError(f"sweep: method names {odd} hold ':', which separates a map from its metric")
    kinds = [m.kind for m in merged.get("metrics", ())]
    dup = sorted({k for k in kinds if kinds.count(k) > 1})
    if dup:
        raise ValueError(f"sweep: metrics {dup} appear twice; each kind is scored once per map")
    opts = merged.get("model_options", {})
    merged["model_options"] = tuple(sorted(dict(opts).items())) if not isinstance(opts, tuple) else opts
    merged["size"] = _shape(merged.get("size"))
    if merged.get("dtype", "float32") not in DTYPES:
        raise ValueError(f"sweep: dtype must be one of {DTYPES}; found {merged['dtype']!r}")
    for key, default in (("batch", 8), ("micro_batch", 1)):
        value = merged.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"sweep: {key} must be a positive integer; found {value!r}")
    return SweepConfig(**merged)


