"""Sweep throughput: examples/s of a whole ``jaxretina sweep`` (load, compute, write the store)
against the bare jitted compute of the same program on the same examples, with 1, 2 and 4
virtual CPU devices and with 1 and 2 processes (``jax.distributed``, gloo).

    python -m benchmarks.sweep [--size 256] [--steps 32] [--examples 8] [--batch 4]
                               [--out benchmarks/results/sweep.json]

Each case runs in its own interpreter (device count and ``jax.distributed`` are per process).
*bare*: the sweep's own compiled program over host arrays already decoded, blocking on each
batch, no store.  *sweep*: :func:`jaxretina.sweep.run` into a new store; its ``wall_s`` counts
from the first batch to the last write (programs are compiled before it starts, in both).
Virtual devices share this machine's cores, so more devices is not more compute here: the
figures measure the sharding's and the store's overhead, not a speed-up.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

from benchmarks._process import run_case, write_results

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(data: str, out: str, steps: int, batch: int, **extra):
    from jaxretina import sweep

    return sweep.sweep_config(model="driu", data=data, out=out, batch=batch, progress=False,
                              methods=[f"ig:steps={steps},chunk=8", "gradcam:layers=all"], **extra)


def case(data: str, out: str, steps: int, batch: int) -> dict:
    """Bare compute, then the sweep, in this process (its device count comes from XLA_FLAGS)."""
    import jax

    from jaxretina import sweep
    from jaxretina.sweep.runner import Runner

    cfg = _config(data, out, steps, batch)
    runner = Runner(cfg)
    for shape in runner.plan.groups:
        runner.program(shape)
    loaded = [runner.load_batch(b) for b in runner.plan.batches]
    jax.block_until_ready(runner.compute(runner.plan.batches[0], *loaded[0][:2]))   # warm
    t0 = time.perf_counter()
    for b, (raw, index, *_) in zip(runner.plan.batches, loaded):
        jax.block_until_ready(runner.compute(b, raw, index))
    bare = time.perf_counter() - t0
    n = sum(len(b.members) for b in runner.plan.batches)
    summary = sweep.run(cfg)
    wall = summary["this_run"]["wall_s"]
    return {"devices": len(runner.mesh.devices), "processes": 1, "examples": n, "bare_s": bare, "sweep_s": wall,
            "bare_examples_per_s": n / bare, "sweep_examples_per_s": n / wall, "overhead": wall / bare - 1,
            "compile_s": runner.compile_seconds}


def _two_processes(data: str, out: str, steps: int, batch: int) -> dict:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    code = ("import sys, json; from benchmarks.sweep import _config; from jaxretina import sweep; "
            f"cfg = _config({data!r}, {out!r}, {steps}, {batch}, coordinator='localhost:{port}', num_processes=2, "
            "process_id=int(sys.argv[1])); print(json.dumps(sweep.run(cfg)['this_run']))")
    env = {**os.environ, "PYTHONPATH": _ROOT, "JAX_PLATFORMS": "cpu"}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(k)], env=env, cwd=_ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k in range(2)]
    outs = [p.communicate() for p in procs]
    for p, (_, err) in zip(procs, outs):
        if p.returncode:
            raise RuntimeError(f"two-process sweep failed:\n{err[-3000:]}")
    import json

    run = json.loads(outs[0][0].strip().splitlines()[-1])
    return {"devices": 1, "processes": 2, "examples": run["examples"], "sweep_s": run["wall_s"],
            "sweep_examples_per_s": run["examples"] / run["wall_s"]}


def _images(folder: str, n: int, size: int) -> str:
    import numpy as np
    from PIL import Image
    from skimage import data

    os.makedirs(folder, exist_ok=True)
    retina = data.retina()
    rng = np.random.default_rng(0)
    for i in range(n):
        y, x = rng.integers(0, retina.shape[0] - 700, 2)
        Image.fromarray(retina[y:y + 700, x:x + 700]).resize((size, size)).save(os.path.join(folder, f"{i:03d}.png"))
    return folder


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--examples", type=int, default=8)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--out", default=os.path.join(_ROOT, "benchmarks", "results", "sweep.json"))
    args = p.parse_args(argv)
    work = tempfile.mkdtemp(prefix="jaxretina-bench-sweep-")
    data = _images(os.path.join(work, "images"), args.examples, args.size)
    rows = []
    for d in args.devices:
        flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={d}".strip()
        r = run_case("benchmarks.sweep", "case", data, os.path.join(work, f"d{d}.zarr"), args.steps, args.batch,
                     env={"XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"})
        rows.append(r)
        print(f"{d} device(s): bare {r['bare_examples_per_s']:.3f} ex/s, sweep {r['sweep_examples_per_s']:.3f} ex/s "
              f"(store and pipeline overhead {r['overhead']:+.1%}); compile {r['compile_s']:.1f} s", flush=True)
    r = _two_processes(data, os.path.join(work, "p2.zarr"), args.steps, args.batch)
    rows.append(r)
    print(f"2 processes x 1 device: sweep {r['sweep_examples_per_s']:.3f} ex/s")
    write_results(args.out, {"size": args.size, "steps": args.steps, "examples": args.examples, "batch": args.batch,
                             "methods": [f"ig:steps={args.steps},chunk=8", "gradcam:layers=all"], "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
