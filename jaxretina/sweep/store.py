"""The sweep's on-disk store (Zarr v3) and the API to read it back.

Layout of ``STORE`` (every array's example axis is the dataset's listing order)::

    zarr.json            attributes["jaxretina"]: configuration, versions, model and weights,
                         methods, targets, groups of input shapes, array list, summary
    names    (N,)        str  example names (relative paths / TFDS names)
    status   (N,)        uint8, one chunk per example: 0 pending, 1 done, 2 failed
    info     (N,)        str, one chunk per example: JSON {sha256, shape, reason, batch, process}
    scalars  (N, S)      float64, one chunk per example (names in the "scalars" attribute):
                         each target's ``score``, IG's ``<method>.delta``, ``seconds`` (the
                         example's share of its batch's wall time), NaN until done
    maps/<method>[/<layer>]  (N, *shape)  float16 | float32, one chunk per example

An example's chunks are written in the order maps → scalars → info → status, each chunk
atomically (Zarr's local store writes a temporary file and renames it), so ``status == 1``
means every chunk of the example is complete; a killed run leaves at most unreferenced
temporary files, which the next run removes.  Inputs of several shapes are stored in arrays
of the largest shape, zero-padded; the array attribute ``shapes`` gives each input shape's
map shape and :meth:`SweepStore.example` crops to it.

Example::

    >>> _ = sweep.run(model="driu", data="images/", out="out.zarr", methods=["ig:steps=4"], batch=2, progress=False)
    >>> store = sweep.open_store("out.zarr")
    >>> store.names[:3], store.status_counts()
    (['img0.png', 'img1.png'], {'done': 2, 'failed': 0, 'pending': 0})
    >>> {k: v.shape for k, v in store.example(0).items()}          # {"ig": (H, W, 3), ...}
    {'ig': (32, 32, 3)}
    >>> store.scalars()["ig.delta"].shape                           # (N,)
    (2,)
    >>> store.failed()                                              # [(index, name, reason), ...]
    []
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["SweepStore", "open_store", "store_state", "PENDING", "DONE", "FAILED", "shape_key", "group_document",
           "read_group_attributes", "replace_file"]

PENDING, DONE, FAILED = 0, 1, 2
ATTR = "jaxretina"
CREATING = "jaxretina_creating"   # the root's attribute while jaxretina creates the store
LEASE_GROUP = "lease"             # see jaxretina.sweep.lease


def shape_key(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


def group_document(attributes: dict) -> bytes:
    """The ``zarr.json`` of a Zarr v3 group with these attributes (the store's small side groups
    — the lease, the decoding lists — are written by hand: one file each, no Zarr call)."""
    return json.dumps({"zarr_format": 3, "node_type": "group", "attributes": attributes}, indent=1).encode()


def read_group_attributes(file: str, limit: int) -> Any:
    """The attributes of the group document ``file`` (read up to ``limit`` bytes); raises
    ``OSError``, ``ValueError``, ``KeyError`` or ``TypeError`` for a missing or malformed one."""
    with open(file, "rb") as fh:
        return json.loads(fh.read(limit))["attributes"]


def replace_file(path: str, data: bytes, tag: str) -> None:
    """Write ``path`` atomically: a temporary ``path.<tag>.partial`` renamed over it (a killed
    writer leaves only the temporary file, which :func:`remove_partials` removes)."""
    tmp = f"{path}.{tag}.partial"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _zarr():
    import zarr

    return zarr


def store_state(path: str) -> tuple[str, dict | None]:
    """What is at ``path``, read without changing anything: ``("absent", None)`` (nothing, an
    empty folder, or only a lease), ``("sweep", meta)`` (a jaxretina store), ``("creating",
    None)`` (a creation of ours that was interrupted: safe to redo), ``("file", None)`` or
    ``("foreign", None)`` (anything else — another Zarr group, a folder of other files)."""
    if not os.path.lexists(path):
        return "absent", None
    if not os.path.isdir(path) or os.path.islink(path):
        return "file", None
    entries = set(os.listdir(path))
    if entries <= {LEASE_GROUP}:
        return "absent", None
    try:
        with open(os.path.join(path, "zarr.json"), "rb") as fh:
            doc = json.loads(fh.read(1 << 26))
        attrs = doc.get("attributes") or {}
        if doc.get("node_type") != "group" or not isinstance(attrs, dict):
            return "foreign", None
    except (OSError, ValueError, AttributeError, RecursionError):
        return "foreign", None
    if isinstance(attrs.get(ATTR), dict):
        return "sweep", attrs[ATTR]
    if CREATING in attrs:
        return "creating", None
    return "foreign", None


def clear_interrupted(path: str) -> None:
    """Remove an interrupted creation's arrays (only for ``store_state(path)[0] == "creating"``;
    the lease stays)."""
    import shutil

    if store_state(path)[0] != "creating":
        raise ValueError(f"{path}: not an interrupted jaxretina store creation; nothing removed")
    for entry in os.listdir(path):
        if entry == LEASE_GROUP:
            continue
        full = os.path.join(path, entry)
        shutil.rmtree(full) if os.path.isdir(full) and not os.path.islink(full) else os.remove(full)


def create_store(path: str, *, meta: dict, names: Sequence[str], maps: dict[str, dict], scalar_names: Sequence[str],
                 dtype: str) -> None:
    """Create the store's arrays (all chunks unwritten) in an absent or empty folder.  ``maps``:
    name -> {"shape": the largest map shape, "shapes": {input shape key: map shape}}.

    The group is created marked as a creation in progress (attribute ``jaxretina_creating``),
    so that an interrupted creation is told apart from someone else's Zarr group; the marker
    is replaced by the metadata last."""
    zarr = _zarr()
    n = len(names)
    root = zarr.create_group(path, zarr_format=3, overwrite=False,
                             attributes={CREATING: {"pid": os.getpid(), "host": socket.gethostname()}})
    listing = root.create_array("names", shape=(n,), chunks=(max(1, min(n, 4096)),), dtype=str)
    listing[:] = np.asarray(names, dtype=object)
    root.create_array("status", shape=(n,), chunks=(1,), dtype="uint8", fill_value=PENDING)
    root.create_array("info", shape=(n,), chunks=(1,), dtype=str)
    sc = root.create_array("scalars", shape=(n, len(scalar_names)), chunks=(1, max(1, len(scalar_names))),
                           dtype="float64", fill_value=np.nan)
    sc.attrs["names"] = list(scalar_names)
    for name, spec in maps.items():
        arr = root.create_array(f"maps/{name}", shape=(n, *spec["shape"]), chunks=(1, *spec["shape"]), dtype=dtype,
                                fill_value=0)
        arr.attrs["shapes"] = spec["shapes"]
    root.attrs.put({ATTR: meta})   # last, replacing the marker: a finished creation


def remove_partials(path: str) -> int:
    """Delete the temporary files a killed writer left (``*.partial``); returns how many."""
    count = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            if f.endswith(".partial"):
                os.remove(os.path.join(dirpath, f))
                count += 1
    return count


class StoreWriter:
    """Writes examples into an existing store (each process only its own examples)."""

    def __init__(self, path: str):
        zarr = _zarr()
        self.root = zarr.open_group(path, mode="r+")
        meta = self.root.attrs[ATTR]
        self.maps = {name: self.root[f"maps/{name}"] for name in [*meta["maps"], *meta.get("curves", [])]}
        self.scalar_names = list(self.root["scalars"].attrs["names"])

    def done(self, i: int, maps: dict[str, np.ndarray], scalars: dict[str, float], info: dict) -> None:
        for name, arr in self.maps.items():
            m = np.asarray(maps[name])
            if m.shape != arr.shape[1:]:
                full = np.zeros(arr.shape[1:], arr.dtype)
                full[tuple(slice(0, s) for s in m.shape)] = m
                m = full
            arr[i] = m
        self.root["scalars"][i] = np.asarray([scalars.get(k, np.nan) for k in self.scalar_names], np.float64)
        self._finish(i, info, DONE)

    def failed(self, i: int, info: dict) -> None:
        self._finish(i, info, FAILED)

    def _finish(self, i, info, status):
        self.root["info"][i] = json.dumps(info, sort_keys=True)
        self.root["status"][i] = status

    def status(self) -> np.ndarray:
        return np.asarray(self.root["status"][:])


class SweepStore:
    """A sweep's results, read-only.  ``meta`` is the recorded configuration and summary."""

    def __init__(self, path: str | os.PathLike):
        zarr = _zarr()
        self.path = os.fspath(path)
        if not os.path.exists(os.path.join(self.path, "zarr.json")):
            raise FileNotFoundError(f"open_store: no Zarr store at {self.path}")
        self.root = zarr.open_group(self.path, mode="r")
        if ATTR not in self.root.attrs:
            raise ValueError(f"open_store: {self.path} is a Zarr store but not a jaxretina sweep (no "
                             f"'{ATTR}' attribute; its creation may have been interrupted)")
        self.meta: dict = dict(self.root.attrs[ATTR])
        self.names: list[str] = [str(s) for s in self.root["names"][:]]
        self.map_names: list[str] = list(self.meta["maps"])
        self.curve_names: list[str] = list(self.meta.get("curves", []))   # metric curves, <map>:<metric>
        self.scalar_names: list[str] = list(self.root["scalars"].attrs["names"])

    def __len__(self) -> int:
        return len(self.names)

    def status(self) -> np.ndarray:
        """(N,) uint8: 0 pending, 1 done, 2 failed."""
        return np.asarray(self.root["status"][:])

    def status_counts(self) -> dict[str, int]:
        s = self.status()
        return {"done": int((s == DONE).sum()), "failed": int((s == FAILED).sum()),
                "pending": int((s == PENDING).sum())}

    def info(self, i: int) -> dict:
        text = str(np.asarray(self.root["info"][int(i)]).item())
        return json.loads(text) if text else {}

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"{name!r} is not an example of {self.path}") from None

    def example(self, i: int | str, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """The maps of example ``i`` (index or name), cropped to its own shape; ``names`` may
        also name its metric curves (:attr:`curve_names`)."""
        i = self.index(i) if isinstance(i, str) else int(i)
        status = int(np.asarray(self.root["status"][i]))
        if status != DONE:
            why = self.info(i).get("reason", "") if status == FAILED else ""
            raise ValueError(f"example {i} ({self.names[i]}) is {['pending', 'done', 'failed'][status]}"
                             + (f": {why}" if why else ""))
        key = shape_key(self.info(i)["shape"])
        out = {}
        for name in names or self.map_names:
            if name not in self.map_names and name not in self.curve_names:
                raise KeyError(f"no map {name!r} in {self.path}; it has {self.map_names + self.curve_names}")
            arr = self.root[f"maps/{name}"]
            shape = arr.attrs["shapes"][key]
            out[name] = np.asarray(arr[(i, *(slice(0, s) for s in shape))])
        return out

    def scalars(self) -> dict[str, np.ndarray]:
        """``{name: (N,) float64}``; NaN where an example is not done."""
        table = np.asarray(self.root["scalars"][:])
        return {name: table[:, k] for k, name in enumerate(self.scalar_names)}

    def failed(self) -> list[tuple[int, str, str]]:
        """``(index, name, reason)`` of every failed example."""
        failed = np.flatnonzero(self.status() == FAILED)
        return [(int(i), self.names[i], self.info(i).get("reason", "")) for i in failed]


def open_store(path: str | os.PathLike) -> SweepStore:
    """Open a sweep's store for reading (see :class:`SweepStore`)."""
    return SweepStore(path)


def read_meta(path: str) -> dict[str, Any] | None:
    """The recorded attributes of an existing jaxretina store, or ``None`` when there is none."""
    state, meta = store_state(path)
    return dict(meta) if state == "sweep" else None


def write_summary(path: str, summary: dict) -> None:
    root = _zarr().open_group(path, mode="r+")
    meta = dict(root.attrs[ATTR])
    meta["summary"] = summary
    root.attrs[ATTR] = meta
