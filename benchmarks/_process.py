"""Run one benchmark case in a fresh Python process and return the JSON it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys

__all__ = ["run_case", "write_results"]

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_case(module: str, function: str, *args, env: dict | None = None) -> dict:
    """``module.function(*args)`` in a new interpreter (its own memory peak, its own XLA
    state); the function returns a JSON-serialisable dict, printed as the last line.
    ``env``: variables set (value ``None``: removed) for that interpreter only."""
    call = f"{function}({', '.join(repr(a) for a in args)})"
    code = f"import json; from {module} import {function}; print(json.dumps({call}))"
    merged = {**os.environ, "PYTHONPATH": _ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for key, value in (env or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=merged, cwd=_ROOT)
    if out.returncode:
        raise RuntimeError(f"{module}.{call} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_results(path: str, obj) -> str:
    """Write a benchmark's JSON (creating folders), say where, return the path."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as fh:
        json.dump(obj, fh, indent=1)
    print(f"wrote {path}")
    return path
