"""Seed 003's attributions on a 64³ patch of the DS6 U-Net, jaxretina against the PyTorch route.

    python -m benchmarks.seed003_volumes [--widths 16 64] [--steps 32 64] [--repeats 1] \
        [--cases ig layerwise gradcam] [--out benchmarks/results/seed003.json]

Model: DS6's ``U_Net_DeepSup`` (tests/reference/ds6_torch.py, random weights and BatchNorm
statistics, eval mode) converted with ``converters.unet3d``; main output; one 64³ patch of the
vessel phantom; float32; CPU (the anchors on the GPU when PyTorch sees one).  Each case runs
in its own process; times are the best of ``repeats`` after a first call (jaxretina's first
call compiles), which is reported apart — for IG the first call is two chunks of steps (the same
compiled program; Captum likewise), for Captum's layer-wise GBP one layer; peak resident memory
over the case.

Cases (target: the summed vessel probability, ``targets.segmentation_sum()``, unless said):
* ``ig``: Captum ``IntegratedGradients`` (Gauss–Legendre, ``internal_batch_size`` = our chunk)
  vs ``explain.integrated_gradients`` (chunk from ``--chunk``), 32 and 64 steps;
* ``layerwise``: guided backprop of every block's ``Σ|A|`` — Captum ``GuidedBackprop`` once per
  layer (a forward that returns the hooked block's ``Σ|A|``) vs one
  ``explain.layerwise_guided_backprop`` (16 layers, one program);
* ``gradcam``: MONAI ``GradCAM`` (trilinear upsampling, ``class_idx=0``: its score is then the
  summed logit of the output channel) once per block — the 14 blocks on the main output's path,
  one ``GradCAM`` object each, built once — vs one ``explain.grad_cam`` of those 14 layers with
  ``segmentation_sum(probability=False)``.  MONAI's default post-processing maps a CAM's
  (min, max) to (1, 0) — high attribution dark — so its maps are compared as ``1 − map``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

from benchmarks._memory import rss_mb
from benchmarks._process import run_case, write_results

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

SIZE = 64
BLOCKS = ("Conv1", "Conv2", "Conv3", "Conv4", "Conv5", "Up5", "Up_conv5", "Up4", "Up_conv4", "Conv_d4", "Up3",
          "Up_conv3", "Conv_d3", "Up2", "Up_conv2", "Conv")
# Grad-CAM of the main output: the deep-supervision heads do not reach it (no gradient; MONAI's
# hooks on them never fire), so they are left out of that case.
CAM_BLOCKS = tuple(n for n in BLOCKS if n not in ("Conv_d3", "Conv_d4"))


def unet_pair(width: int):
    import torch

    from converters.unet3d import from_state_dict
    from jaxretina import data
    from tests.reference.densenet_torch import randomize
    from tests.reference.ds6_torch import UNetDeepSup

    torch.manual_seed(0)
    ref = randomize(UNetDeepSup(width), seed=1, mean_std=0.2, bias_std=0.1).eval()
    state = {k: v.detach().numpy().copy() for k, v in ref.state_dict().items()}
    model, variables, _ = from_state_dict(state, "benchmark", deep_supervision=False)
    x = data.vessel_phantom((SIZE,) * 3, seed=0).volume
    return model, variables, ref, x


def _worker(case: str, contender: str, width: int, steps: int, chunk: int, repeats: int, result: str) -> dict:
    import jax
    import jax.numpy as jnp

    import jaxretina  # noqa: F401 - XLA defaults before the backend starts
    from benchmarks.anchors import first_and_best, torch_device
    from jaxretina import explain, targets

    model, variables, ref, x = unet_pair(width)
    base = rss_mb()
    warm = None  # a cheaper first call where the same program (or PyTorch's same kernels) suffices
    if contender == "jaxretina":
        xj = jnp.asarray(x)
        if case == "ig":
            f = explain.model_fn(model, variables, targets.segmentation_sum())
            run = lambda n: jax.block_until_ready(explain.integrated_gradients(  # noqa: E731
                f, xj, baseline=0.0, steps=n, chunk=chunk).values)
            call, warm = (lambda: run(steps)), (lambda: run(2 * chunk))  # two chunks: the same program
        elif case == "layerwise":
            call = lambda: jax.block_until_ready(  # noqa: E731
                explain.layerwise_guided_backprop(model, variables, xj, chunk=chunk)[0])
        else:
            target = targets.segmentation_sum(probability=False)

            def call():
                cams = explain.grad_cam(model, variables, xj, target, layers=list(CAM_BLOCKS), relu=True,
                                        resize=True, normalize=True)
                return jax.block_until_ready(jnp.stack([cams[n] for n in CAM_BLOCKS]))
    else:
        import torch

        device = torch_device()
        ref = ref.to(device)
        xt = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 0)[None])).to(device)
        ncdhw = lambda t: np.moveaxis(t.detach().cpu().numpy()[0], 0, -1)  # noqa: E731
        if case == "ig":
            from captum.attr import IntegratedGradients

            ig = IntegratedGradients(lambda inp: torch.sigmoid(ref(inp)[0]).sum(dim=(1, 2, 3, 4)))
            run = lambda n: ncdhw(ig.attribute(xt, torch.zeros_like(xt), n_steps=n,  # noqa: E731
                                               method="gausslegendre", internal_batch_size=chunk))
            call, warm = (lambda: run(steps)), (lambda: run(2 * chunk))
        elif case == "layerwise":
            from captum.attr import GuidedBackprop

            class LayerSum(torch.nn.Module):
                def __init__(self, net, block):
                    super().__init__()
                    self.net, self.block, self.value = net, block, None
                    block.register_forward_hook(lambda m, i, o: setattr(self, "value", o))

                def forward(self, inp):
                    self.net(inp)
                    return self.value.abs().sum(dim=(1, 2, 3, 4))

            wrapped = [LayerSum(ref, getattr(ref, n)) for n in BLOCKS]
            call = lambda: np.stack([ncdhw(GuidedBackprop(w).attribute(xt)) for w in wrapped])  # noqa: E731
            warm = lambda: GuidedBackprop(wrapped[0]).attribute(xt)  # noqa: E731
        else:
            from monai.visualize import GradCAM

            from tests.reference.ds6_torch import MainOutput

            main = MainOutput(ref).eval()  # MONAI restores the wrapper's mode after each call: keep it eval
            xt = xt.clone().requires_grad_(True)  # MONAI's full backward hooks fire only then
            cams = [GradCAM(nn_module=main, target_layers=f"net.{n}") for n in CAM_BLOCKS]  # hooks once

            def flip(m):  # MONAI's default normaliser maps (min, max) to (1, 0); ours to (0, 1)
                return 1.0 - m if m.max() > m.min() else m

            def call():
                return np.stack([flip(cam(xt, class_idx=0)[0, 0].detach().cpu().numpy()) for cam in cams])
    return first_and_best(call, repeats, base, result, warm)


ANCHOR = {"ig": "captum", "layerwise": "captum", "gradcam": "monai"}
LABEL = {"ig": "IG {steps} GL steps, chunk {chunk}", "layerwise": f"layer-wise GBP, {len(BLOCKS)} layers",
         "gradcam": f"Grad-CAM, {len(CAM_BLOCKS)} blocks"}


def table(rows: list[dict], chunk: int = 4) -> str:
    """The README's markdown table from the JSON rows (anchor and jaxretina side by side)."""
    out = ["| width | case | PyTorch route | jaxretina (first call) | ratio | peak MB (theirs / ours) | max rel diff |",
           "|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["contender"] != "jaxretina":
            continue
        a = next(q for q in rows if (q["case"], q["width"], q["steps"]) == (r["case"], r["width"], r["steps"])
                 and q["contender"] == ANCHOR[r["case"]])
        out.append(f"| {r['width']} | {LABEL[r['case']].format(steps=r['steps'], chunk=chunk)} | "
                   f"{a['best_s']:.2f} s ({a['contender']}) | {r['best_s']:.2f} s ({r['first_s']:.1f} s) | "
                   f"**{r['speedup']:.2f}×** | {a['peak_mb']:.0f} / {r['peak_mb']:.0f} | {r['max_rel_diff']:.1e} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--widths", type=int, nargs="+", default=[16, 64])
    p.add_argument("--steps", type=int, nargs="+", default=[32, 64])
    p.add_argument("--chunk", type=int, default=4, help="our chunk = Captum's internal_batch_size (IG); "
                                                       "layers per vmap (layer-wise)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--cases", nargs="+", default=["ig", "layerwise", "gradcam"], choices=list(ANCHOR))
    p.add_argument("--out", default=os.path.join(_ROOT, "benchmarks", "results", "seed003.json"))
    p.add_argument("--table", action="store_true", help="print the markdown table of --out and stop")
    args = p.parse_args(argv)
    if args.table:
        import json

        with open(args.out) as fh:
            print(table(json.load(fh), args.chunk))
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for width in args.widths:
            for case in args.cases:
                for steps in (args.steps if case == "ig" else [0]):
                    results = {}
                    for who in (ANCHOR[case], "jaxretina"):
                        path = os.path.join(tmp, f"{width}-{case}-{steps}-{who}.npy")
                        r = run_case("benchmarks.seed003_volumes", "_worker", case, who, width, steps, args.chunk,
                                     args.repeats, path)
                        results[who] = (r, np.load(path))
                    a_r, a_v = results[ANCHOR[case]]
                    for who, (r, v) in results.items():
                        row = {"case": case, "width": width, "steps": steps, "contender": who, **r}
                        if who == "jaxretina":
                            row["speedup"] = a_r["best_s"] / r["best_s"]
                            row["max_rel_diff"] = float(np.abs(v - a_v).max() / (np.abs(a_v).max() or 1.0))
                        rows.append(row)
                        print(f"w{width:<3d} {case:9s} {steps or '':>3} {who:9s} best {r['best_s']:8.2f} s  first "
                              f"{r['first_s']:8.2f} s  peak {r['peak_mb']:7.0f} MB" +
                              (f"  {row['speedup']:.2f}x, max rel diff {row['max_rel_diff']:.1e}"
                               if who == "jaxretina" else ""), flush=True)
                    write_results(args.out, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
