"""jaxretina against the anchors users run today — Captum and pytorch-grad-cam — side by side.

    .venv/bin/python -m benchmarks               # the full matrix (needs the test extra)
    .venv/bin/python -m benchmarks --quick       # steps 16, Gauss-Legendre only
    make bench

Same weights and inputs on both sides (:mod:`benchmarks.anchor_models`).  Every case runs in
its own process (peak resident memory is its own, sampled every millisecond — compilation
included — over what the imports left); the contenders alternate case by case.  A case reports its first call (for
jaxretina: trace + compile + run, compile time apart) and the best of ``--repeats`` further
calls.  Results are saved and compared across processes: max absolute and relative difference
of the anchor's result and jaxretina's.

* Integrated Gradients: Captum ``IntegratedGradients.attribute`` (``internal_batch_size`` 1, 8
  and ``steps``; the best is the anchor's figure) against ``explain.integrated_gradients``
  (chunk 4, 16, ``"all"`` and the default), same rule (Captum ``gausslegendre`` ↔
  ``gausslegendre``; Captum ``riemann_trapezoid`` ↔ ``captum_trapezoid``), baseline 0.
  Achieved FLOP/s of both from XLA's cost analysis of one IG step (forward + input gradient).
* Grad-CAM on every layer: pytorch-grad-cam ``GradCAM`` called once per layer (as its users
  do), against one ``explain.grad_cam(layers="all", relu=True, resize=True, normalize=True)``.
* Time to a completeness error of 1 %: Captum's defaults (50 Gauss-Legendre steps, one batch)
  against ``integrated_gradients(steps="auto", tol=0.01)``, with the steps it used.
* XLA CPU options: the same IG program (16 Gauss-Legendre steps, chunk 8) under XLA's own
  defaults, jaxretina's (jaxretina/xla_defaults.py) and jaxretina's plus oneDNN; ratios against XLA's.
* The machine's matmul rate (4096² float32, JAX and PyTorch) as the FLOP/s yardstick.

Writes ``benchmarks/results/anchors.json`` with the device kinds, so accelerator figures can be
added with the same command.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np

from benchmarks._memory import PeakSampler, rss_mb
from benchmarks._process import run_case, write_results
from benchmarks.costs import xla_flops

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _timed(call, repeats, base=None, warm=None):
    """(first seconds, best seconds, peak MB over ``base`` (default: now), result) of ``call``:
    ``warm()`` (default: ``call()``) timed as the first call, then ``repeats`` more calls."""
    base = rss_mb() if base is None else base
    with PeakSampler() as mem:
        t0 = time.perf_counter()
        result = (warm or call)()
        first = time.perf_counter() - t0
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            result = call()
            best = min(best, time.perf_counter() - t0)
    return first, best, mem.peak - base, result


def first_and_best(call, repeats, base, result_path, warm=None) -> dict:
    """``warm()`` (default: ``call()``) timed apart — jaxretina's compiles, PyTorch's first
    allocations — then ``max(repeats, 1)`` timed calls; peak resident memory over ``base``
    across all of them.  A cheaper ``warm`` (e.g. IG with two chunks of steps: the same compiled
    chunk program) keeps long cases to one measured run.  Saves the last result for the
    cross-process comparison.  ``{"first_s", "best_s", "peak_mb"}``."""
    first, best, peak, out = _timed(call, max(repeats, 1), base, warm)
    np.save(result_path, np.asarray(out, np.float32))
    return {"first_s": first, "best_s": best, "peak_mb": peak}


def _worker(spec: dict) -> dict:
    """One case, in this process."""
    import jax

    import jaxretina  # noqa: F401 - XLA defaults before the backend starts
    from benchmarks.anchor_models import CLASS, build

    if spec["case"] == "matmul":
        return _matmul()
    pair = build(spec["model"])
    jax.devices()
    out: dict = {"device": jax.devices()[0].device_kind}
    if spec["contender"] == "jaxretina":
        out.update(_ours(spec, pair))
        return out
    pair.torch_model.to(torch_device())
    out["torch_device"] = str(torch_device())
    if spec["contender"] == "captum":
        out.update(_captum(spec, pair, CLASS))
    else:
        out.update(_pytorch_grad_cam(spec, pair))
    return out


def _ours(spec, pair):
    import jax
    import jax.numpy as jnp

    from jaxretina import explain
    from jaxretina.timing import Stopwatch

    x = jnp.asarray(pair.x)
    base = rss_mb()  # before the first (compiling) call, whose buffers XLA keeps for the rest
    extra = {}
    if spec["case"] == "ig_tol":
        f = explain.model_fn(pair.jax_model, pair.variables, pair.target)

        def call():
            ig = explain.integrated_gradients(f, x, baseline=0.0, steps="auto", tol=spec["tol"])
            extra.update(steps_used=ig.steps, rel_delta=abs(float(ig.delta)) / abs(float(ig.values.sum() - ig.delta)))
            return jax.block_until_ready(ig.values)

        flops = 0.0
    elif spec["case"] == "ig":
        f = explain.model_fn(pair.jax_model, pair.variables, pair.target)
        chunk = spec["chunk"]

        def call():
            return jax.block_until_ready(explain.integrated_gradients(
                f, x, baseline=0.0, steps=spec["steps"], rule=spec["rule"], chunk=chunk).values)

        flops = xla_flops(jax.grad(f), x) * spec["steps"]
    else:
        def call():
            cams = explain.grad_cam(pair.jax_model, pair.variables, x, pair.target, layers="all",
                                    relu=True, resize=True, normalize=True)
            return jax.block_until_ready(jnp.stack(list(cams.values())))

        flops = 0.0
    with PeakSampler() as first_mem, Stopwatch() as sw:
        call()
    first, best, peak, result = _timed(call, spec["repeats"], base)
    peak = max(peak, first_mem.peak - base)
    np.save(spec["result"], np.asarray(result))
    return {"first_s": sw.wall, "compile_s": sw.compile, "best_s": best, "peak_mb": peak,
            "flops": flops, **extra}


def torch_device():
    """The anchors' device: the GPU when PyTorch sees one (so accelerator runs compare like with
    like), else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _nchw(x):
    import torch

    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None])).to(torch_device())


def _captum(spec, pair, cls):
    import torch
    from captum.attr import IntegratedGradients

    x = _nchw(pair.x).requires_grad_(True)
    ig = IntegratedGradients(pair.torch_forward)
    if spec["case"] == "ig_tol":
        # Captum's defaults (50 Gauss-Legendre steps, one batch), or — when those miss the
        # tolerance — Captum told the steps jaxretina's adaptive rule found (batches of 1,
        # its fastest): what a user who knew the answer in advance would pay.
        extra = {}
        kw = {} if "steps" not in spec else {"n_steps": spec["steps"], "internal_batch_size": 1}

        def call_default():
            attr, delta = ig.attribute(x, baselines=torch.zeros_like(x), return_convergence_delta=True, **kw)
            span = abs(float(attr.sum()) - float(delta))
            extra.update(steps_used=spec.get("steps", 50), rel_delta=abs(float(delta)) / span)
            return attr.detach()[0].cpu().numpy().transpose(1, 2, 0)

        first, best, peak, result = _timed(call_default, spec["repeats"])
        np.save(spec["result"], result)
        return {"first_s": first, "compile_s": 0.0, "best_s": best, "peak_mb": peak, **extra}
    method = {"gausslegendre": "gausslegendre", "captum_trapezoid": "riemann_trapezoid"}[spec["rule"]]

    def call():
        attr = ig.attribute(x, baselines=torch.zeros_like(x), n_steps=spec["steps"], method=method,
                            internal_batch_size=spec["ibs"])
        return attr.detach()[0].cpu().numpy().transpose(1, 2, 0)

    first, best, peak, result = _timed(call, spec["repeats"])
    np.save(spec["result"], result)
    return {"first_s": first, "compile_s": 0.0, "best_s": best, "peak_mb": peak}


def _pytorch_grad_cam(spec, pair):
    from pytorch_grad_cam import GradCAM

    x = _nchw(pair.x)

    def call():
        maps = []
        for module in pair.layers.values():  # one call per layer, as its users do
            with GradCAM(model=pair.torch_model, target_layers=[module]) as cam:
                maps.append(cam(input_tensor=x, targets=[pair.cam_target])[0])
        return np.stack(maps)

    first, best, peak, result = _timed(call, spec["repeats"])
    np.save(spec["result"], result)
    return {"first_s": first, "compile_s": 0.0, "best_s": best, "peak_mb": peak, "layers": len(pair.layers)}


def _matmul(n: int = 4096) -> dict:
    import jax
    import jax.numpy as jnp
    import torch

    a = np.random.default_rng(0).normal(size=(n, n)).astype(np.float32)
    ja = jnp.asarray(a)
    mm = jax.jit(lambda u: u @ u)
    jax.block_until_ready(mm(ja))
    ta = torch.from_numpy(a)
    rates = {}
    for name, call in (("jax", lambda: jax.block_until_ready(mm(ja))), ("torch", lambda: ta @ ta)):
        best = min(_time_once(call) for _ in range(3))
        rates[name] = 2 * n**3 / best
    return {"matmul_flops_per_s": rates}


def _time_once(call):
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


# XLA CPU configurations compared on one IG program (``spec["xla"]``): XLA's own defaults
# (jaxretina's switched off), jaxretina's (jaxretina/xla_defaults.py), and jaxretina's plus oneDNN.
XLA_CONFIGS = {
    "xla-defaults": {"JAXRETINA_XLA_DEFAULTS": "0"},
    "jaxretina": {},
    "jaxretina+onednn": {"XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_use_onednn=true").strip()},
}


def _run(spec: dict) -> dict:
    return run_case("benchmarks.anchors", "_worker", spec, env=XLA_CONFIGS[spec.get("xla", "jaxretina")])


def _plan(quick: bool, models: list[str], folder: str, repeats: int) -> list[list[dict]]:
    """Groups of specs; within a group the anchor and jaxretina cases alternate."""
    groups = []
    steps_list = (16,) if quick else (16, 64)
    rules = ("gausslegendre",) if quick else ("gausslegendre", "captum_trapezoid")
    n = 0

    def spec(**kw):
        nonlocal n
        n += 1
        return {"repeats": repeats, "result": os.path.join(folder, f"r{n}.npy"), **kw}

    for model in models:
        for steps in steps_list:
            for rule in rules:
                anchors = [spec(case="ig", model=model, contender="captum", rule=rule, steps=steps, ibs=b)
                           for b in sorted({1, 8, steps})]
                ours = [spec(case="ig", model=model, contender="jaxretina", rule=rule, steps=steps, chunk=c)
                        for c in ([8] if quick else [4, 8, 16, "all"])]
                groups.append([s for pair in zip(anchors + [None] * len(ours), ours + [None] * len(anchors))
                               for s in pair if s is not None])
        groups.append([spec(case="ig", model=model, contender="jaxretina", rule="gausslegendre", steps=16, chunk=8,
                            xla=name, baseline=name == "xla-defaults") for name in XLA_CONFIGS])
        groups.append([spec(case="ig_tol", model=model, contender="captum", tol=0.01),
                       spec(case="ig_tol", model=model, contender="jaxretina", tol=0.01)])
        groups.append([spec(case="gradcam", model=model, contender="pytorch-grad-cam"),
                       spec(case="gradcam", model=model, contender="jaxretina")])
    return groups


def _told_steps(results: list, folder: str) -> list:
    """For a time-to-tolerance group whose Captum-defaults run missed the tolerance: Captum
    again with the steps jaxretina settled on (a run that reaches it, for the comparison)."""
    by = {s["contender"]: (s, r) for s, r in results if s["case"] == "ig_tol"}
    if set(by) != {"captum", "jaxretina"} or "steps" in by["captum"][0]:
        return []
    (c_spec, c_res), (_, ours) = by["captum"], by["jaxretina"]
    if c_res["rel_delta"] <= c_spec["tol"]:
        return []
    spec = {**c_spec, "steps": ours["steps_used"], "result": os.path.join(folder, "told_steps.npy")}
    return [(spec, _run(spec))]


def _diff(a_path: str, b_path: str) -> tuple[float, float]:
    a, b = np.load(a_path).astype(np.float64), np.load(b_path).astype(np.float64)
    d = np.abs(a - b).max()
    return float(d), float(d / max(np.abs(a).max(), 1e-30))


def _label(s: dict) -> str:
    if s["case"] == "gradcam":
        return f"{s['model']} Grad-CAM every layer, {s['contender']}"
    if s["case"] == "ig_tol":
        how = "default 50 GL steps" if s["contender"] == "captum" else f"steps='auto' tol={s['tol']}"
        if s["contender"] == "captum" and "steps" in s:
            how = f"told jaxretina's {s['steps']} GL steps, ibs 1"
        return f"{s['model']} IG to 1% completeness, {s['contender']} {how}"
    knob = f"ibs {s['ibs']}" if s["contender"] == "captum" else f"chunk {s['chunk']}"
    if "xla" in s:
        knob += f", XLA options: {s['xla']}"
    return f"{s['model']} IG {s['steps']} {s['rule']}, {s['contender']} {knob}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="steps 16, Gauss-Legendre, jaxretina chunk 8")
    parser.add_argument("--models", nargs="+", default=["driu", "densenet121", "resnet50"],
                        choices=["driu", "densenet121", "resnet50"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=os.path.join(_ROOT, "benchmarks", "results", "anchors.json"))
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        machine = _run({"case": "matmul"})
        for group in _plan(args.quick, args.models, folder, args.repeats):
            results = [(s, _run(s)) for s in group]
            results += _told_steps(results, folder)
            anchors = [(s, r) for s, r in results if s["contender"] != "jaxretina" or s.get("baseline")]
            reached = [a for a in anchors if a[0]["case"] == "ig_tol" and a[1]["rel_delta"] <= a[0]["tol"]]
            best_anchor = min(reached or anchors, key=lambda sr: sr[1]["best_s"])
            for s, r in results:
                row = {k: v for k, v in s.items() if k != "result"} | r | {"label": _label(s)}
                if (s, r) not in anchors:
                    row["anchor_best_s"] = best_anchor[1]["best_s"]
                    row["speedup"] = best_anchor[1]["best_s"] / r["best_s"]
                    row["max_abs_diff"], row["max_rel_diff"] = _diff(best_anchor[0]["result"], s["result"])
                if r.get("flops") or s["case"] == "ig":
                    flops = next((x[1]["flops"] for x in results if x[1].get("flops")), 0.0)
                    row["gflops_per_s"] = flops / r["best_s"] / 1e9 if flops else None
                rows.append(row)
                _print_row(row)
    record = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), **machine},
              "device": rows[0].get("device") if rows else None, "rows": rows}
    jm = machine["matmul_flops_per_s"]
    print(f"matmul 4096² float32: JAX {jm['jax'] / 1e9:.0f} GFLOP/s, PyTorch {jm['torch'] / 1e9:.0f} GFLOP/s")
    write_results(args.out, record)
    return 0


def _print_row(r: dict) -> None:
    extra = ""
    if "speedup" in r:
        extra = (f"  {r['speedup']:5.2f}× vs best anchor {r['anchor_best_s']:.2f} s; "
                 f"diff max abs {r['max_abs_diff']:.2e} rel {r['max_rel_diff']:.2e}")
    flops = f" {r['gflops_per_s']:6.1f} GFLOP/s" if r.get("gflops_per_s") else ""
    if "steps_used" in r:
        flops += f" steps {r['steps_used']} |delta| {100 * r['rel_delta']:.3f}%"
    print(f"{r['label']:62s} first {r['first_s']:7.2f} s (compile {r['compile_s']:5.2f}) best {r['best_s']:7.2f} s"
          f" peak {r['peak_mb'] / 1024:5.2f} GB{flops}{extra}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
