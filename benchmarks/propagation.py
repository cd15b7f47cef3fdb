"""Rule-based maps (LRP, DeepLIFT, guided backprop) against one plain gradient and the hook-based
anchors, side by side in one run.

    .venv/bin/python -m benchmarks.propagation            # every model
    .venv/bin/python -m benchmarks.propagation --models resnet50 --repeats 2

Same weights and inputs on both sides (:mod:`benchmarks.anchor_models`; the DS6 U-Net at
width 16 on a 64³ phantom patch).  Every case runs in its own process (its own memory peak and
XLA state): the first call (trace + compile + run) and the best of ``--repeats`` further calls,
with XLA's FLOP count of jaxretina's program beside each time.  Cases:

* jaxretina: the input gradient (the yardstick), ``explain.lrp`` with ``epsilon_plus_flat``
  and with ``epsilon`` (the same FLOPs as a gradient: what the mechanism itself costs),
  ``explain.deeplift`` (baseline 0) and ``explain.guided_backprop``; and the gradient, LRP and
  DeepLIFT vmapped over a batch of 4 (``*_x4``, seconds per map; a sweep's way: DeepLIFT's
  reference pass does not depend on the input, so the batch shares it);
* zennit 0.5.1 ``EpsilonPlusFlat`` (its ResNet canonizer for ResNet-50, none for DenseNet121,
  whose batch norms follow concatenations; its sequential merge elsewhere);
* Captum 0.9.0 ``LRP`` (its default ε rules) — it refuses models with layers it has no rule
  for (the residual sums of ResNet, DenseNet's concatenations, 3-D convolutions, DRIU's
  transposed convolutions): the table says so — and ``DeepLift`` (baseline 0);
* PyTorch's plain input gradient.
* GradientSHAP with 32 samples and 4 baselines: ``explain.gradient_shap`` (chunks of 8) against
  Captum's ``GradientShap`` (all samples in one batch: 0.9.0 has no batch-size option for it).

Writes ``benchmarks/results/propagation.json``.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

from benchmarks._memory import PeakSampler, rss_mb
from benchmarks._process import run_case, write_results
from benchmarks.costs import xla_flops

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("driu", "densenet121", "resnet50", "unet3d")
OURS = ("gradient", "lrp", "lrp_epsilon", "deeplift", "guided_backprop", "gradient_x4", "lrp_x4", "deeplift_x4",
        "gradient_shap")
BATCH = 4   # the *_x4 cases: one vmapped call on 4 inputs (a sweep's batch), time per map
THEIRS = ("torch_gradient", "zennit_lrp", "captum_lrp", "captum_deeplift", "captum_gradient_shap")
SHAP_SAMPLES, SHAP_BASELINES = 32, 4


class _Case:
    """One model's jaxretina side and PyTorch side."""

    def __init__(self, name: str):
        if name == "unet3d":
            from benchmarks.seed003_volumes import unet_pair
            from jaxretina import targets

            self.model, self.variables, self.torch_model, x = unet_pair(16)
            self.x = np.asarray(x, np.float32)
            self.target = targets.segmentation_sum()

            def forward(inp):
                out = self.torch_model(inp)
                return (out[0] if isinstance(out, (tuple, list)) else out).sum(dim=(1, 2, 3, 4))
            self.forward = forward
        else:
            from benchmarks.anchor_models import build

            pair = build(name)
            self.model, self.variables, self.target = pair.jax_model, pair.variables, pair.target
            self.torch_model, self.forward, self.x = pair.torch_model, pair.torch_forward, pair.x
        self.name = name

    def torch_input(self):
        import torch

        x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(self.x, -1, 0)))[None]
        return x.requires_grad_()


def _ours(case: _Case, method: str):
    """``(call, FLOPs)``; the FLOPs of the program with the parameters as arguments (as
    constants XLA would fold whatever depends on them alone, e.g. DeepLIFT's reference pass)."""
    import jax

    from jaxretina import explain, taps

    v, x, model, target = taps.params_only(case.variables), jax.numpy.asarray(case.x), case.model, case.target
    if method == "gradient":
        fn = explain.model_fn(model, v, target)
        return (lambda: explain.saliency(fn, x, abs=False)), xla_flops(
            lambda vv, z: jax.grad(explain.model_fn(model, vv, target))(z), v, x)
    if method == "gradient_shap":
        fn = explain.model_fn(model, v, target)
        bases = jax.numpy.stack([x * k / SHAP_BASELINES for k in range(SHAP_BASELINES)])
        return (lambda: explain.gradient_shap(fn, x, bases, key=jax.random.key(0), samples=SHAP_SAMPLES, chunk=8)), 0.0
    fns = {"gradient": lambda vv, z: jax.grad(explain.model_fn(model, vv, target))(z),
           "lrp": lambda vv, z: explain.lrp(model, vv, z, target, composite="epsilon_plus_flat"),
           "lrp_epsilon": lambda vv, z: explain.lrp(model, vv, z, target, composite="epsilon"),
           "deeplift": lambda vv, z: explain.deeplift(model, vv, z, target, baseline=0.0),
           "guided_backprop": lambda vv, z: explain.guided_backprop(model, vv, z, target)}
    if method.endswith("_x4"):
        one = fns[method[:-3]]
        xs = jax.numpy.stack([x * (1 + 0.05 * k) for k in range(BATCH)])
        fn = jax.jit(lambda vv, zs: jax.vmap(lambda z: one(vv, z))(zs))
        return (lambda: fn(v, xs)), xla_flops(fn, v, xs) / BATCH
    fn = fns[method]
    return (lambda: fn(v, x)), xla_flops(fn, v, x)


def _theirs(case: _Case, method: str):
    import torch

    net = case.torch_model.eval()
    if method == "torch_gradient":
        def call():
            x = case.torch_input()
            case.forward(x).sum().backward()
            return x.grad
        return call
    if method == "captum_deeplift":
        from captum.attr import DeepLift

        dl = DeepLift(_scalar(net, case.forward))
        return lambda: dl.attribute(case.torch_input(), baselines=0.0, target=0)
    if method == "captum_gradient_shap":
        from captum.attr import GradientShap

        gs = GradientShap(_scalar(net, case.forward))
        x0 = case.torch_input().detach()
        bases = torch.cat([x0 * k / SHAP_BASELINES for k in range(SHAP_BASELINES)])
        return lambda: gs.attribute(case.torch_input(), baselines=bases, n_samples=SHAP_SAMPLES, target=0)
    if method == "captum_lrp":
        from captum.attr import LRP

        lrp = LRP(net)
        target = None if case.name in ("driu", "unet3d") else 1
        return lambda: lrp.attribute(case.torch_input(), target=target)
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    # zennit merges a batch norm into the convolution before it; DenseNet's follow
    # concatenations (its sequential merge would pair the wrong layers): no canonizer there
    canonizers = {"resnet50": [ResNetCanonizer()], "densenet121": []}.get(case.name, [VGGCanonizer()])
    composite = EpsilonPlusFlat(canonizers=canonizers)

    def call():
        with Gradient(model=_scalar(net, case.forward), composite=composite) as attributor:
            return attributor(case.torch_input(), torch.ones(1, 1))[1]
    return call


def _scalar(net, forward):
    """``net`` (a submodule, so hook libraries find its layers) returning ``forward``'s one
    score per example as ``(N, 1)``."""
    import torch

    class Scalar(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return forward(x)[:, None]

    return Scalar().eval()


def case(model: str, method: str, repeats: int, result: str) -> dict:
    """One (model, method) in this process: first call, best of ``repeats``, peak MB, FLOPs."""
    import jax

    c = _Case(model)
    base = rss_mb()
    flops = 0.0
    try:
        if method in OURS:
            call, flops = _ours(c, method)
        else:
            call = _theirs(c, method)
    except Exception as e:   # noqa: BLE001 - an anchor that refuses the model is a result
        return {"model": model, "method": method, "error": f"{type(e).__name__}: {str(e)[:160]}"}
    try:
        with PeakSampler() as mem:
            import time

            t0 = time.perf_counter()
            out = call()
            jax.block_until_ready(out) if method in OURS else None
            first = time.perf_counter() - t0
            best = float("inf")
            for _ in range(max(repeats, 1)):
                t0 = time.perf_counter()
                out = call()
                jax.block_until_ready(out) if method in OURS else None
                best = min(best, time.perf_counter() - t0)
    except Exception as e:   # noqa: BLE001
        return {"model": model, "method": method, "error": f"{type(e).__name__}: {str(e)[:160]}"}
    if method.endswith("_x4"):   # seconds per map; the first map
        best, out = best / BATCH, out[0]
    arr = out.detach().numpy()[0] if hasattr(out, "detach") else np.asarray(out)
    np.save(result, np.asarray(arr, np.float32))
    return {"model": model, "method": method, "first_s": first, "best_s": best, "peak_mb": mem.peak - base,
            "flops": flops}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--methods", nargs="+", default=[*OURS, *THEIRS], choices=[*OURS, *THEIRS])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=os.path.join(_ROOT, "benchmarks", "results", "propagation.json"))
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for model in args.models:
            for method in args.methods:
                r = run_case("benchmarks.propagation", "case", model, method, args.repeats,
                             os.path.join(folder, f"{model}-{method}.npy"))
                rows.append(r)
                print(_row(r), flush=True)
            for r in rows:
                yardstick = "gradient_x4" if r["method"].endswith("_x4") else "gradient"
                grad = next((g for g in rows if g["model"] == model and g["method"] == yardstick), None)
                if r["model"] == model and "best_s" in r and grad and "best_s" in grad:
                    r["vs_gradient"] = r["best_s"] / grad["best_s"]
    write_results(args.out, {"rows": rows})
    print(table(rows))
    return 0


def _row(r: dict) -> str:
    if "error" in r:
        return f"{r['model']:12s} {r['method']:16s} refused: {r['error']}"
    fl = f"{r['flops'] / 1e9:7.1f} GFLOP" if r.get("flops") else " " * 12
    return (f"{r['model']:12s} {r['method']:16s} first {r['first_s']:7.2f} s  best {r['best_s']:7.3f} s  "
            f"peak {r['peak_mb']:7.0f} MB  {fl}")


def table(rows: list[dict]) -> str:
    """A markdown table: one row per model, best seconds per method (× the gradient)."""
    methods = (*OURS, *THEIRS)
    lines = ["| model | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for model in dict.fromkeys(r["model"] for r in rows):
        cells = []
        for m in methods:
            r = next((r for r in rows if r["model"] == model and r["method"] == m), None)
            if r is None:
                cells.append("")
            elif "error" in r:
                cells.append("refuses")
            else:
                cells.append(f"{r['best_s']:.3f} s ({r.get('vs_gradient', float('nan')):.2f}×)")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
