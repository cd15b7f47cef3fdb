"""The CAM family against pytorch-grad-cam 1.5.7, side by side in one run (ResNet-50, 224²,
the random weights of :mod:`benchmarks.anchor_models`).

* **every layer, every variant**: HiResCAM, LayerCAM, XGradCAM, EigenCAM of the 18 spatial
  layers — jaxretina in one call (one forward and one backward pass for all layers) against
  pytorch-grad-cam called once per layer, as its users do;
* **AblationCAM** at the last block (``layer4.2``, 2048 channels) — jaxretina runs only the
  tail per channel (the channels are vmapped over the layer's replacement tap, chunks of 64);
  pytorch-grad-cam reruns the whole network per channel (its batch of 32).

Every case in its own process: first call (compile), best of ``--repeats``, peak resident
memory, and XLA's FLOP count of jaxretina's program where it has one.  Writes
``benchmarks/results/cams.json``.

    .venv/bin/python -m benchmarks.cams [--repeats 1] [--cases ablation]
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

from benchmarks._process import run_case, write_results

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = {"hires_cam": "HiResCAM", "layer_cam": "LayerCAM", "xgrad_cam": "XGradCAM", "eigen_cam": "EigenCAM"}
ABLATION_LAYER = "layer4.2"
CASES = ("all_layers", "ablation")


def case(kind: str, side: str, repeats: int, result: str) -> dict:
    """One case in this process."""
    import time

    from benchmarks._memory import PeakSampler, rss_mb
    from benchmarks.anchor_models import build

    pair = build("resnet50")
    base = rss_mb()
    if side == "jaxretina":
        import jax

        from jaxretina import explain, taps

        v, x = taps.params_only(pair.variables), jax.numpy.asarray(pair.x)
        if kind == "all_layers":
            def call():
                return {m: getattr(explain, m)(pair.jax_model, v, x, pair.target, layers=list(pair.layers),
                                               normalize=True) for m in VARIANTS}
        else:
            def call():
                return explain.ablation_cam(pair.jax_model, v, x, pair.target, layers=[ABLATION_LAYER], chunk=64,
                                            normalize=True)
    else:
        import torch

        import pytorch_grad_cam as pgc

        xt = torch.from_numpy(np.ascontiguousarray(pair.x.transpose(2, 0, 1)[None]))
        if kind == "all_layers":
            def call():
                out = {}
                for m, cls in VARIANTS.items():
                    for name, module in pair.layers.items():   # one call per layer
                        with getattr(pgc, cls)(model=pair.torch_model, target_layers=[module]) as cam:
                            out[f"{m}/{name}"] = cam(input_tensor=xt, targets=[pair.cam_target])[0]
                return out
        else:
            module = pair.layers[ABLATION_LAYER]

            def call():
                with pgc.AblationCAM(model=pair.torch_model, target_layers=[module]) as cam:
                    return cam(input_tensor=xt, targets=[pair.cam_target])[0]
    with PeakSampler() as mem:
        t0 = time.perf_counter()
        out = call()
        _ready(out)
        first = time.perf_counter() - t0
        best = float("inf")
        for _ in range(max(repeats, 1)):
            t0 = time.perf_counter()
            _ready(call())
            best = min(best, time.perf_counter() - t0)
    leaves = [np.asarray(a) for a in _leaves(out)]
    np.save(result, np.concatenate([a.ravel() for a in leaves]).astype(np.float32))
    return {"case": kind, "side": side, "first_s": first, "best_s": best, "peak_mb": mem.peak - base,
            "layers": len(pair.layers)}


def _leaves(out):
    if isinstance(out, dict):
        return [leaf for k in sorted(out) for leaf in _leaves(out[k])]
    return [out]


def _ready(out):
    import jax

    jax.block_until_ready([a for a in _leaves(out) if hasattr(a, "block_until_ready")])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    p.add_argument("--repeats", type=int, default=1)   # pytorch-grad-cam's AblationCAM takes minutes a call
    p.add_argument("--out", default=os.path.join(_ROOT, "benchmarks", "results", "cams.json"))
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for kind in args.cases:
            pair = []
            for side in ("jaxretina", "pytorch_grad_cam"):
                r = run_case("benchmarks.cams", "case", kind, side, args.repeats, os.path.join(folder, f"{kind}-{side}.npy"))
                rows.append(r)
                pair.append(r)
                print(f"{kind:11s} {side:17s} first {r['first_s']:8.2f} s  best {r['best_s']:8.3f} s  "
                      f"peak {r['peak_mb']:7.0f} MB", flush=True)
            ours, theirs = pair
            ours["speedup"] = theirs["best_s"] / ours["best_s"]
            a, b = (np.load(os.path.join(folder, f"{kind}-{s}.npy")) for s in ("jaxretina", "pytorch_grad_cam"))
            ours["max_abs_diff"] = float(np.abs(a - b).max()) if a.shape == b.shape else None
            print(f"{kind:11s} jaxretina is {ours['speedup']:.1f}× pytorch-grad-cam; max |Δ| {ours['max_abs_diff']}")
    write_results(args.out, {"rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
