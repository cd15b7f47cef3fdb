"""Perturbation methods against their anchors, side by side in one run, equal work on both sides
(the same number of forward passes), each anchor at the batch sizes it offers:

* ``occlusion_3d`` — DS6 U-Net (width 16) on a 64³ volume, MONAI 1.6.1 ``OcclusionSensitivity``
  (gaussian mode, mask 32, overlap 0.5: 27 boxes; ``n_batch`` 9 and 27) against
  :func:`jaxretina.explain.occlusion_sensitivity` (chunks of 1: on the 2-core CPU 7.9 s against
  8.8 s with chunks of 3, 8.9 s with 9 and 11.5 s with 27);
* ``occlusion_2d`` — ResNet-50, 224², Captum 0.9.0 ``Occlusion`` (window 32, stride 16: 169
  windows; ``perturbations_per_eval`` 16 and 64) against :func:`~jaxretina.explain.occlusion`
  (chunks of 8);
* ``rise`` — ResNet-50 at 112², 4000 masks of 7 cells: TorchRay 1.0.0.2 ``rise`` given the same
  masks (``batch_size`` 32 and 128) against :func:`~jaxretina.explain.rise` (chunks of 16);
* ``scorecam`` — ResNet-50, 224², ScoreCAM at ``layer4.2`` (2048 channels): pytorch-grad-cam
  1.5.7 (``batch_size`` 16 and 64) against :func:`~jaxretina.explain.score_cam` (chunks of 32).

Every case in its own process: first call (compile included), best of ``--repeats``, peak
resident memory above the process's start, and the work in FLOPs — XLA's count for one forward
pass of jaxretina's model times the passes (both sides run the same passes).  Writes
``benchmarks/results/perturbation.json`` (rows of cases not run this time are kept).

    .venv/bin/python -m benchmarks.perturbation [--cases rise scorecam] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

import numpy as np

from benchmarks._process import run_case, write_results
from benchmarks.costs import forward_flops

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = ("occlusion_3d", "occlusion_2d", "rise", "scorecam")
ANCHOR_BATCHES = {"occlusion_3d": (9, 27), "occlusion_2d": (16, 64), "rise": (32, 128), "scorecam": (16, 64)}
ANCHOR = {"occlusion_3d": "monai", "occlusion_2d": "captum", "rise": "torchray", "scorecam": "pytorch_grad_cam"}
OCC3D = dict(mask_size=32, overlap=0.5)
OCC2D = dict(window=32, stride=16)
RISE = dict(masks=4000, cells=7, size=112)
SCORE_LAYER = "layer4.2"


def _setup(kind: str):
    """``(jax model, variables, target, torch module, torch forward, x, forward passes)``."""
    if kind == "occlusion_3d":
        from benchmarks.seed003_volumes import unet_pair
        from jaxretina import targets
        from jaxretina.models import spec

        model, variables, torch_model, x = unet_pair(16)
        return spec.for_explaining(model), variables, targets.segmentation_sum(), torch_model, None, \
            np.asarray(x, np.float32), 27
    from benchmarks.anchor_models import build

    pair = build("resnet50")
    x = pair.x
    if kind == "rise":
        x = np.asarray(x[::2, ::2])   # 112²
    passes = {"occlusion_2d": 13 * 13 + 1, "rise": RISE["masks"], "scorecam": 2048 + 1}[kind]
    return pair.jax_model, pair.variables, pair.target, pair.torch_model, pair, x, passes


def _rise_masks(x):
    import jax

    from jaxretina import explain

    return explain.rise_masks(jax.random.key(0), RISE["masks"], x.shape[:2], cells=RISE["cells"])


def _ours(kind, model, variables, target, x):
    import jax

    from jaxretina import explain, taps

    v, xj = taps.params_only(variables), jax.numpy.asarray(x)
    f = explain.model_fn(model, v, target)
    if kind == "occlusion_3d":
        return lambda: explain.occlusion_sensitivity(f, xj, mode="gaussian", chunk=1, **OCC3D)
    if kind == "occlusion_2d":
        return lambda: explain.occlusion(f, xj, window=OCC2D["window"], strides=OCC2D["stride"], chunk=8)
    if kind == "rise":
        sig = explain.model_fn(model, v, lambda out: jax.nn.sigmoid(target(out)))   # TorchRay's sigmoid scores
        return lambda: explain.rise(sig, xj, key=jax.random.key(0), masks=RISE["masks"], cells=RISE["cells"], chunk=16)
    return lambda: explain.score_cam(model, v, xj, target, layers=[SCORE_LAYER], chunk=32, normalize=True)[SCORE_LAYER]


def _theirs(kind, torch_model, pair, x, batch):
    import torch

    net = torch_model.eval()
    xt = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 0)))[None]
    if kind == "occlusion_3d":
        import warnings

        from monai.visualize import OcclusionSensitivity

        warnings.filterwarnings("ignore", message="Using a non-tuple sequence")

        class Score(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = net

            def forward(self, t):
                out = self.net(t)
                out = out[0] if isinstance(out, (tuple, list)) else out
                return torch.sigmoid(out).flatten(1).sum(1, keepdim=True)

        occ = OcclusionSensitivity(Score(), mode="gaussian", n_batch=batch, verbose=False, activate=False, **OCC3D)
        return lambda: occ(xt)[0][0, 0]
    if kind == "occlusion_2d":
        from captum.attr import Occlusion

        occ = Occlusion(pair.torch_forward)
        w, s = OCC2D["window"], OCC2D["stride"]
        return lambda: occ.attribute(xt, sliding_window_shapes=(3, w, w), strides=(3, s, s), baselines=0.0,
                                     perturbations_per_eval=batch)[0].permute(1, 2, 0)
    if kind == "rise":
        from torchray.attribution.rise import rise

        masks = torch.from_numpy(np.asarray(_rise_masks(x)))[:, None]
        from benchmarks.anchor_models import CLASS

        return lambda: rise(net, xt, filter_masks=masks, num_masks=RISE["masks"], batch_size=batch)[0, CLASS]
    import pytorch_grad_cam as pgc

    module = pair.layers[SCORE_LAYER]

    def call():
        with pgc.ScoreCAM(model=net, target_layers=[module]) as cam:
            cam.batch_size = batch
            return cam(input_tensor=xt, targets=[pair.cam_target])[0]
    return call


def case(kind: str, side: str, batch: int, repeats: int, result: str) -> dict:
    """One case in this process."""
    from benchmarks._memory import rss_mb
    from benchmarks.anchors import first_and_best

    model, variables, target, torch_model, pair, x, passes = _setup(kind)
    base = rss_mb()
    if side == "jaxretina":
        import jax

        call = _ours(kind, model, variables, target, x)

        def run():
            return np.asarray(jax.block_until_ready(call()))
    else:
        import torch

        torch.set_grad_enabled(kind == "scorecam")   # pytorch-grad-cam takes gradients itself
        call = _theirs(kind, torch_model, pair, x, batch)

        def run():
            out = call()
            return out.detach().numpy() if hasattr(out, "detach") else np.asarray(out)
    timing = first_and_best(run, repeats, base, result)
    return {"case": kind, "side": side, "batch": batch, **timing, "passes": passes,
            "gflops": forward_flops(model, variables, target, x) * passes / 1e9}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", default=os.path.join(_ROOT, "benchmarks", "results", "perturbation.json"))
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for kind in args.cases:
            sides = [("jaxretina", 0)] + [(ANCHOR[kind], b) for b in ANCHOR_BATCHES[kind]]
            results = []
            for side, batch in sides:
                path = os.path.join(folder, f"{kind}-{side}-{batch}.npy")
                r = run_case("benchmarks.perturbation", "case", kind, side, batch, args.repeats, path)
                r["result"] = path
                results.append(r)
                print(f"{kind:12s} {side:16s} batch {batch:3d}  first {r['first_s']:8.2f} s  best {r['best_s']:8.2f} s"
                      f"  peak {r['peak_mb']:7.0f} MB  {r['gflops']:8.0f} GFLOP", flush=True)
            ours, anchors = results[0], results[1:]
            best = min(anchors, key=lambda r: r["best_s"])
            a, b = np.load(ours["result"]), np.load(best["result"])
            ours["speedup_vs_best_anchor"] = best["best_s"] / ours["best_s"]
            ours["peak_ratio_vs_best_anchor"] = ours["peak_mb"] / max(best["peak_mb"], 1.0)
            ours["max_abs_diff"] = float(np.abs(a - b).max()) if a.shape == b.shape else None
            ours["max_abs"] = float(np.abs(b).max())
            print(f"{kind:12s} jaxretina {ours['speedup_vs_best_anchor']:.2f}× the anchor at its best batch "
                  f"({best['batch']}), peak memory {ours['peak_ratio_vs_best_anchor']:.2f}×; max |Δ| "
                  f"{ours['max_abs_diff']} of {ours['max_abs']:.3g}", flush=True)
            for r in results:
                r.pop("result")
            rows.extend(results)
    if os.path.exists(args.out):   # keep the rows of the cases not run this time
        with open(args.out) as fh:
            kept = [r for r in json.load(fh).get("rows", []) if r.get("case") not in args.cases]
        rows = kept + rows
    rows.sort(key=lambda r: CASES.index(r["case"]) if r.get("case") in CASES else len(CASES))
    write_results(args.out, {"rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
