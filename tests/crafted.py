"""Hand-written pickles and checkpoint files for the hostile-input tests.

A crafted checkpoint says what ``torch.save`` never would (a negative stride, a BUILD on an
allowed global, a storage shared a million times); torch cannot write it, so these helpers
emit the pickle opcodes themselves (protocol 2, https://docs.python.org/3/library/pickle.html
and ``pickletools``), and the zip / legacy containers around them.
"""

from __future__ import annotations

import io
import pathlib
import struct
import subprocess
import sys
import textwrap
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def glob(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


def text(value: str) -> bytes:
    raw = value.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def integer(n: int) -> bytes:
    if -(2**31) <= n < 2**31:
        return b"J" + struct.pack("<i", n)
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw  # LONG1


def tup(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def call(fn: bytes, *args: bytes) -> bytes:
    return fn + tup(*args) + b"R"


def mapping(pairs: dict[str, bytes]) -> bytes:
    return b"}(" + b"".join(text(k) + v for k, v in pairs.items()) + b"u"


def storage(key: str, numel: int, kind: str = "FloatStorage", legacy: bool = False) -> bytes:
    fields = [text("storage"), glob("torch", kind), text(key), text("cpu"), integer(numel)]
    if legacy:
        fields.append(b"N")  # no view
    return tup(*fields) + b"Q"  # BINPERSID


def tensor(storage_pickle: bytes, offset: int, size: tuple, stride: tuple) -> bytes:
    return call(glob("torch._utils", "_rebuild_tensor_v2"), storage_pickle, integer(offset),
                tup(*map(integer, size)), tup(*map(integer, stride)), b"\x89",
                call(glob("collections", "OrderedDict")))


def program(body: bytes) -> bytes:
    """A whole pickle: protocol 2, ``body`` (which leaves one object on the stack), STOP."""
    return b"\x80\x02" + body + b"."


def zip_checkpoint(path, pickle_body: bytes, storages: dict[str, bytes], *,
                   compress: int = zipfile.ZIP_STORED) -> None:
    """A torch zip checkpoint: ``archive/data.pkl`` plus one member per storage key."""
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        zf.writestr("archive/data.pkl", program(pickle_body))
        zf.writestr("archive/byteorder", "little")
        for key, raw in storages.items():
            zf.writestr(f"archive/data/{key}", raw)
        zf.writestr("archive/version", "3\n")


def legacy_checkpoint(path, pickle_body: bytes, storages: dict[str, tuple[int, bytes]]) -> None:
    """A pre-1.6 ``torch.save`` stream: magic, protocol, sys_info, the object, the storage keys,
    then per key an int64 element count and the raw elements."""
    out = io.BytesIO()
    out.write(program(integer(LEGACY_MAGIC)))
    out.write(program(integer(1001)))
    out.write(program(mapping({"little_endian": b"\x88"})))
    out.write(program(pickle_body))
    out.write(program(b"(" + b"".join(text(k) for k in storages) + b"l"))
    for count, raw in storages.values():
        out.write(struct.pack("<q", count) + raw)
    with open(path, "wb") as fh:
        fh.write(out.getvalue())


def patch_zip_size(path, member: str, claimed: int) -> None:
    """Make the central directory claim ``claimed`` uncompressed bytes for ``member``."""
    with open(path, "rb") as fh:
        data = bytearray(fh.read())
    name = member.encode()
    pos = data.find(b"PK\x01\x02")
    while pos >= 0:
        name_len = struct.unpack("<H", data[pos + 28 : pos + 30])[0]
        if data[pos + 46 : pos + 46 + name_len] == name:
            data[pos + 24 : pos + 28] = struct.pack("<I", claimed)
            break
        pos = data.find(b"PK\x01\x02", pos + 4)
    else:
        raise AssertionError(f"{member} not in {path}")
    with open(path, "wb") as fh:
        fh.write(bytes(data))


def run_limited(code: str, *, memory_mb: int = 1024, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python with its address space capped at ``memory_mb`` and a time
    limit: a reader that tries a giant allocation fails there (MemoryError) instead of taking
    the test machine down, and a hang is a ``TimeoutExpired``."""
    prelude = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, ({memory_mb} << 20, {memory_mb} << 20))
    """)
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
