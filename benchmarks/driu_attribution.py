"""DRIU attribution speed and memory: all-layer Grad-CAM and IG over sizes, steps, chunks, XLA options.

Command (from the repository root, after ``make test`` or ``make demo`` created .venv)::

    .venv/bin/python -m benchmarks.driu_attribution            # full matrix (about 15 min on 2 cores)
    .venv/bin/python -m benchmarks.driu_attribution --quick    # 256×256 only (about 3 min)
    .venv/bin/python -m benchmarks.driu_attribution --chunking # host loop vs lax.map vs scans

Each case runs in its own process, so that its peak resident memory is its own and XLA options
(read once per process) can differ between cases.  A case reports the first call (trace +
compile + run, with compile time taken from JAX's own compile events) and the best of
``--repeats`` further calls.  The table compares jaxretina's default XLA CPU options
(jaxretina/xla_defaults.py) with XLA's own defaults (``JAXRETINA_XLA_DEFAULTS=0``) on the same case.
Results go to ``benchmarks/results/driu_attribution.json`` with the device kind, so figures
from GPUs/TPUs can be added with the same command.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

from benchmarks._process import run_case, write_results


def _case(spec: dict) -> dict:
    """Run one case in this process and return its measurements."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxretina  # noqa: F401  (applies or skips the XLA defaults first)
    from jaxretina import explain, targets
    from jaxretina.models import DRIU
    from jaxretina.timing import Stopwatch

    h, w = spec["size"]
    model = DRIU()
    x = jnp.asarray(np.random.default_rng(0).normal(0, 50, (h, w, 3)), jnp.float32)
    variables = model.init(jax.random.key(0), x[None])
    target = targets.segmentation_sum()
    if spec["method"] == "gradcam":
        def call():
            return explain.grad_cam(model, variables, x, target, layers="all", relu=False)
    elif spec.get("impl", "loop") == "loop":
        f = explain.model_fn(model, variables, target)
        chunk = spec["chunk"]  # an int, or "all" for every step in one vmap

        def call():
            return explain.integrated_gradients(f, x, baseline=0.0, steps=spec["steps"],
                                                rule="gausslegendre", chunk=chunk)
    else:
        call = _alternative_chunking(model, variables, target, x, spec)

    with Stopwatch() as first:
        jax.block_until_ready(call())
    runs = []
    for _ in range(spec["repeats"]):
        t0 = time.perf_counter()
        jax.block_until_ready(call())
        runs.append(time.perf_counter() - t0)
    device = jax.devices()[0]
    return {
        **spec,
        "first_call_s": first.wall,
        "compile_s": first.compile,
        "run_s": min(runs),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "device": f"{device.platform}:{device.device_kind}",
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def _alternative_chunking(model, variables, target, x, spec):
    """The same IG chunked inside one program: ``lax.map(batch_size=chunk)`` or an unrolled
    ``lax.scan`` over chunks — the alternatives to jaxretina's host loop over a jitted chunk."""
    import jax
    import jax.numpy as jnp

    from jaxretina.explain import model_fn, quadrature
    from jaxretina.explain.core import split_fn
    from jaxretina.explain.gradients import IGTerm, finish_ig

    fn, data = split_fn(model_fn(model, variables, target))
    term = IGTerm(fn)
    alphas, weights = (a.astype("float32") for a in quadrature("gausslegendre", spec["steps"]))
    chunk = spec["chunk"]
    baseline = jnp.zeros_like(x)

    @jax.jit
    def ig(data, x, b, alphas, weights):
        consts = (data, x, b)
        if spec["impl"] == "lax_map":
            grads = jax.lax.map(lambda node: term(consts, node), (alphas, weights), batch_size=chunk)
            return finish_ig(fn, data, x, b, grads.sum(0))
        nodes = (alphas.reshape(-1, chunk), weights.reshape(-1, chunk))

        def body(acc, node):
            return acc + jax.vmap(term, in_axes=(None, 0))(consts, node).sum(0), None

        total, _ = jax.lax.scan(body, jnp.zeros_like(x), nodes, unroll=spec["impl"] == "scan_unrolled")
        return finish_ig(fn, data, x, b, total)

    return lambda: ig(data, x, baseline, alphas, weights)


def _chunking_matrix() -> list[dict]:
    return [{"method": "ig", "size": (256, 256), "steps": 16, "chunk": 8, "impl": impl}
            for impl in ("loop", "lax_map", "scan_unrolled", "scan")]


def _matrix(quick: bool) -> list[dict]:
    sizes = [(256, 256)] if quick else [(256, 256), (584, 565)]
    cases = []
    for size in sizes:
        big = size != (256, 256)
        cases.append({"method": "gradcam", "size": size})
        for steps in (16, 64):
            if quick and steps == 64:
                continue
            chunks = [4, 8] if big else [4, 8, 16] + (["all"] if steps == 16 else [])
            for chunk in chunks:
                cases.append({"method": "ig", "size": size, "steps": steps, "chunk": chunk})
    return cases


def _run_in_subprocess(spec: dict, xla_defaults: bool) -> dict:
    try:
        return run_case("benchmarks.driu_attribution", "_case", spec,
                        env={"JAXRETINA_XLA_DEFAULTS": "1" if xla_defaults else "0"})
    except RuntimeError as err:
        return {**spec, "error": str(err).strip().splitlines()[-1]}


def _label(r: dict) -> str:
    size = "x".join(map(str, r["size"]))
    if r["method"] == "gradcam":
        return f"Grad-CAM all layers {size}"
    impl = f" [{r['impl']}]" if "impl" in r else ""
    return f"IG {r['steps']} steps chunk {r['chunk']} {size}{impl}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256x256 and 16 steps only")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--compare-xla", choices=["all", "small", "none"], default="small",
                        help="also run cases under XLA's own defaults: all, 256x256 only (default), none")
    parser.add_argument("--out", default="benchmarks/results/driu_attribution.json")
    parser.add_argument("--chunking", action="store_true",
                        help="compare chunk implementations instead (host loop, lax.map, scans)")
    args = parser.parse_args(argv)

    rows = []
    header = f"{'case':44s} {'first s':>8s} {'compile s':>9s} {'run s':>8s} {'peak GB':>8s}"
    if args.compare_xla != "none":
        header += f" {'XLA-default run s':>18s} {'speed-up':>9s} {'peak GB':>8s}"
    print(header, flush=True)
    for spec in _chunking_matrix() if args.chunking else _matrix(args.quick):
        spec = {**spec, "repeats": args.repeats}
        # Alternate the two configurations case by case so drift hits both alike.
        ours = _run_in_subprocess(spec, True)
        compare = args.compare_xla == "all" or (args.compare_xla == "small" and spec["size"] == (256, 256))
        theirs = _run_in_subprocess(spec, False) if compare else None
        rows.append({"jaxretina_defaults": ours, "xla_defaults": theirs})
        if "error" in ours:
            print(f"{_label(spec):44s} error: {ours['error']}", flush=True)
            continue
        line = (f"{_label(ours):44s} {ours['first_call_s']:8.2f} {ours['compile_s']:9.2f} "
                f"{ours['run_s']:8.2f} {ours['peak_rss_gb']:8.2f}")
        if theirs is not None:
            if "error" in theirs:
                line += f" error: {theirs['error']}"
            else:
                line += (f" {theirs['run_s']:18.2f} {theirs['run_s'] / ours['run_s']:8.2f}x "
                         f"{theirs['peak_rss_gb']:8.2f}")
        print(line, flush=True)
    write_results(args.out, {"cases": rows, "python": sys.version.split()[0]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
