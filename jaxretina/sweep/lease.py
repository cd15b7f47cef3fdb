"""One writer per store: a lease that tells two unjoined sweeps apart.

Processes that joined one ``jax.distributed`` run share a store by design (each writes its own
batches).  Two runs that did *not* join — e.g. every task of a SLURM job started without a
coordinator, or the same command typed twice — would each compute the whole dataset and write
the same chunks: twice the work, silently.  So the first process of a run holds a lease in the
store, a Zarr group ``lease`` whose ``zarr.json`` it creates exclusively (``O_EXCL``, atomic on
local and NFSv3+ filesystems) with who holds it, and whose modification time it renews while it
works.  Another run that finds a live lease stops with an error naming the holder.

A lease is stale, and is taken over, when its holder is a process of this host that no longer
exists (a killed run: resuming it needs no wait), or when it has not been renewed for
``ttl`` seconds (a holder on another host that died).

Example::

    >>> lease = Lease("leased.zarr")
    >>> lease.acquire()          # raises StoreBusy naming the holder if another run is writing
    >>> Lease("leased.zarr").acquire()
    Traceback (most recent call last):
    jaxretina.sweep.lease.StoreBusy: sweep: another sweep is writing into leased.zarr (process ...) ...
    >>> lease.renew()            # at most every ttl / 10 s it touches the file (cheap: utime)
    >>> lease.release()
"""

from __future__ import annotations

import os
import socket
import time
import uuid

from jaxretina.sweep.store import LEASE_GROUP, group_document, read_group_attributes, replace_file

__all__ = ["Lease", "StoreBusy", "LEASE_TTL"]

LEASE_TTL = 300.0  # seconds without renewal after which another host's lease counts as dead


class StoreBusy(RuntimeError):
    """Another run, not joined with this one, holds the store's lease."""


def _alive_here(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class Lease:
    """The lease of the store at ``path`` (see the module docstring)."""

    def __init__(self, path: str, *, ttl: float = LEASE_TTL):
        self.dir = os.path.join(path, LEASE_GROUP)
        self.file = os.path.join(self.dir, "zarr.json")
        self.ttl = ttl
        self.run = uuid.uuid4().hex
        self.held = False
        self._renewed = 0.0

    def _document(self) -> bytes:
        holder = {"run": self.run, "host": socket.gethostname(), "pid": os.getpid(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        return group_document({"jaxretina_lease": holder})

    def holder(self) -> dict | None:
        """The current holder's record (``run``, ``host``, ``pid``, ``started``), or ``None``."""
        try:
            return read_group_attributes(self.file, 1 << 16)["jaxretina_lease"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return {}

    def _stale(self, holder: dict) -> bool:
        try:
            age = time.time() - os.stat(self.file).st_mtime
        except FileNotFoundError:
            return True
        if age > self.ttl:
            return True
        if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
            return not _alive_here(holder["pid"])
        return False

    def acquire(self) -> None:
        """Take the lease, or raise :class:`StoreBusy` naming the live holder."""
        os.makedirs(self.dir, exist_ok=True)
        try:
            fd = os.open(self.file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = self.holder() or {}
            if not self._stale(holder):
                who = (f"process {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
                       if holder else "a run whose lease is being written")
                raise StoreBusy(
                    f"sweep: another sweep is writing into {os.path.dirname(self.dir)} ({who}) and did not join this "
                    "one; run several processes as one sweep (--coordinator/--num-processes/--process-id, or "
                    "under SLURM/Open MPI), or wait for it to finish") from None
            replace_file(self.file, self._document(), self.run)   # a stale lease: taken over
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(self._document())
        if (self.holder() or {}).get("run") != self.run:
            raise StoreBusy(f"sweep: another sweep took the lease of {os.path.dirname(self.dir)} at the same time")
        self.held = True
        self._renewed = time.monotonic()

    def renew(self, *, force: bool = False) -> None:
        """Refresh the lease's time (at most every ttl / 10 s unless ``force``); raises
        :class:`StoreBusy` if another run took it over meanwhile."""
        if not self.held or (not force and time.monotonic() - self._renewed < self.ttl / 10):
            return
        if (self.holder() or {}).get("run") != self.run:
            self.held = False
            raise StoreBusy(f"sweep: lost the lease of {os.path.dirname(self.dir)} to another run "
                            f"({self.holder()}); stopping")
        os.utime(self.file)
        self._renewed = time.monotonic()

    def release(self) -> None:
        """Give the lease up (only if this run still holds it)."""
        if self.held and (self.holder() or {}).get("run") == self.run:
            os.remove(self.file)
            try:
                os.rmdir(self.dir)
            except OSError:
                pass
        self.held = False
