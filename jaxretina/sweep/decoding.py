"""Crash-safe decoding: a file that kills its decoder stops a sweep once, not at every resume.

Image and volume decoders are C libraries; a crafted file can crash one (a segfault), and the
kernel's out-of-memory killer ends a process without a Python exception.  Such a file would
stop the sweep again at every resume.  So each process keeps, in the store, the examples it is
decoding at this moment — ``STORE/decoding/p<process>/zarr.json`` (a Zarr group whose attribute
``jaxretina_decoding`` lists them; each write a temporary file and a rename).  The next run
reads what the previous one left there and decodes those examples first in a child process
(:func:`probe`, ``python -m jaxretina.sweep.decoding``): an example that kills the child too is
recorded as failed with the signal (``decoding it crashed the reader (SIGSEGV) ...``) and
never decoded in the sweep's process again; one that loads — the earlier stop was a coincidence:
Ctrl-C, a SIGKILL, a power cut — is computed as usual.

Example::

    >>> journal = DecodeJournal("journal.zarr", process=0)
    >>> with journal.decoding(3):
    ...     sorted(leftover("journal.zarr"))      # what a crash at this moment would leave
    [3]
    >>> sorted(leftover("journal.zarr"))
    []
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from typing import Iterator

from jaxretina.sweep.store import group_document, read_group_attributes, replace_file

__all__ = ["DecodeJournal", "NO_JOURNAL", "leftover", "forget_processes", "probe", "PROBE_TIMEOUT", "GROUP"]

GROUP = "decoding"
_ATTR = "jaxretina_decoding"
PROBE_TIMEOUT = 600.0   # seconds a child may take to decode one example
_MAX_DOC = 1 << 22      # a journal lists a batch's examples: anything larger is not ours


class DecodeJournal:
    """The examples process ``process`` is decoding, kept in the store at ``path``."""

    def __init__(self, path: str | os.PathLike, *, process: int):
        self.dir = os.path.join(os.fspath(path), GROUP, f"p{int(process)}")
        self.file = os.path.join(self.dir, "zarr.json")
        self._now: set[int] = set()
        self._lock = threading.Lock()

    def _save(self) -> None:
        if not os.path.isdir(self.dir):
            os.makedirs(self.dir, exist_ok=True)
            parent = os.path.join(os.path.dirname(self.dir), "zarr.json")
            if not os.path.exists(parent):
                replace_file(parent, group_document({}), uuid.uuid4().hex)
        replace_file(self.file, group_document({_ATTR: {"examples": sorted(self._now), "pid": os.getpid()}}),
                     uuid.uuid4().hex)

    def reset(self) -> None:
        """An empty list: what an earlier run of this process left is forgotten (read it with
        :func:`leftover` first)."""
        with self._lock:
            self._now.clear()
            self._save()

    @contextlib.contextmanager
    def decoding(self, i: int) -> Iterator[None]:
        """Lists example ``i`` in the store while the block runs (thread-safe)."""
        with self._lock:
            self._now.add(int(i))
            self._save()
        try:
            yield
        finally:
            with self._lock:
                self._now.discard(int(i))
                self._save()


class _NoJournal:
    """For runs without a store (:func:`jaxretina.sweep.dry_run`)."""

    @contextlib.contextmanager
    def decoding(self, i: int) -> Iterator[None]:
        yield


NO_JOURNAL = _NoJournal()


def leftover(path: str | os.PathLike) -> set[int]:
    """The examples that any process of an earlier run of the store at ``path`` was decoding
    when it stopped (read them before this run's processes start decoding)."""
    root = os.path.join(os.fspath(path), GROUP)
    found: set[int] = set()
    try:
        entries = os.listdir(root)
    except OSError:
        return found
    for entry in entries:
        try:
            examples = read_group_attributes(os.path.join(root, entry, "zarr.json"), _MAX_DOC)[_ATTR]["examples"]
        except (OSError, ValueError, KeyError, TypeError):
            continue   # not a journal (or a torn one): nothing to suspect
        found.update(int(i) for i in examples if isinstance(i, int) and not isinstance(i, bool) and i >= 0)
    return found


def forget_processes(path: str | os.PathLike, processes: int) -> None:
    """Remove the lists of processes ``>= processes`` (an earlier run had more of them)."""
    import shutil

    root = os.path.join(os.fspath(path), GROUP)
    for entry in os.listdir(root) if os.path.isdir(root) else ():
        if entry.startswith("p") and entry[1:].isdigit() and int(entry[1:]) >= processes:
            shutil.rmtree(os.path.join(root, entry), ignore_errors=True)


def probe(kind: str, root: str, name: str, shape: tuple[int, ...] | None, size: tuple[int, ...] | None, *,
          timeout: float = PROBE_TIMEOUT) -> str | None:
    """Decode one example of a folder of ``kind`` ``"images"`` or ``"volumes"`` in a child
    process, as :meth:`jaxretina.sweep.inputs.Inputs.load` would.  Returns why the example
    must be recorded as failed — the child was killed by a signal, ended abnormally or took
    more than ``timeout`` seconds — or ``None`` (it decoded, or failed with an ordinary
    :class:`~jaxretina.sweep.inputs.BadInput` that decoding it here will raise again)."""
    spec = json.dumps({"kind": kind, "root": root, "name": name, "shape": shape, "size": size})
    try:
        proc = subprocess.run([sys.executable, "-m", "jaxretina.sweep.decoding"], input=spec.encode(),
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return (f"decoding it took over {timeout:.0f} s in a separate process (the previous run stopped while "
                "decoding it); skipped")
    if proc.returncode in (0, 3):
        return None
    if proc.returncode < 0:
        try:
            how = signal.Signals(-proc.returncode).name
        except ValueError:
            how = f"signal {-proc.returncode}"
        return (f"decoding it crashed the reader ({how}) in a separate process, and the previous run stopped while "
                "decoding it; skipped")
    tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
    return (f"decoding it ended a separate process with exit code {proc.returncode} ({tail[0][:200]}), and the "
            "previous run stopped while decoding it; skipped")


def _child() -> int:
    from jaxretina.sweep.inputs import BadInput, Inputs, Item

    spec = json.loads(sys.stdin.buffer.read(1 << 20))
    shape = tuple(spec["shape"]) if spec["shape"] else None
    size = tuple(spec["size"]) if spec["size"] else None
    inputs = Inputs(spec["kind"], spec["root"], [Item(spec["name"], shape, None)], size)
    try:
        inputs.load(0)
    except BadInput:
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(_child())
