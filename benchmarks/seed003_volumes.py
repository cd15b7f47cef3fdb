"""Seed 003's attributions on a 64³ patch of the DS6 U-Net, jaxretina against the PyTorch route.

    python -m benchmarks.seed003_volumes [--widths 16 64] [--steps 32 64] [--repeats 1] \
        [--cases ig layerwise gradcam] [--out benchmarks/results/seed003.json]

Model: DS6's ``U_Net_DeepSup`` (tests/reference/ds6_torch.py, random weights and BatchNorm
statistics, eval mode) converted with ``converters.unet3d``; main output; one 64³ patch of the
vessel phantom; float32; CPU (the anchors on the GPU when PyTorch sees one).  Each case runs
in its own process; times are the best of ``repeats`` after a first call (jaxretina's first
call compiles), which is reported apart; peak resident memory over the case.

Cases (target: the summed vessel probability, ``targets.segmentation_sum()``, unless said):
* ``ig``: Captum ``IntegratedGradients`` (Gauss–Legendre, ``internal_batch_size`` = our chunk)
  vs ``explain.integrated_gradients`` (chunk from ``--chunk``), 32 and 64 steps;
* ``layerwise``: guided backprop of every block's ``Σ|A|`` — Captum ``GuidedBackprop`` once per
  layer (a forward that returns the hooked block's ``Σ|A|``) vs one
  ``explain.layerwise_guided_backprop`` (16 layers, one program);
* ``gradcam``: MONAI ``GradCAM`` (trilinear upsampling, ``class_idx=0``: its score is then the
  summed logit of the output channel) once per block vs one ``explain.grad_cam(layers=all)``
  with ``segmentation_sum(probability=False)``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

from benchmarks._memory import rss_mb
from benchmarks._process import run_case, write_results

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

SIZE = 64
BLOCKS = ("Conv1", "Conv2", "Conv3", "Conv4", "Conv5", "Up5", "Up_conv5", "Up4", "Up_conv4", "Conv_d4", "Up3",
          "Up_conv3", "Conv_d3", "Up2", "Up_conv2", "Conv")


def _pair(width: int):
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
    from benchmarks.anchors import _timed, _torch_device
    from jaxretina import explain, targets

    model, variables, ref, x = _pair(width)
    base = rss_mb()
    if contender == "jaxretina":
        xj = jnp.asarray(x)
        if case == "ig":
            f = explain.model_fn(model, variables, targets.segmentation_sum())
            call = lambda: jax.block_until_ready(explain.integrated_gradients(  # noqa: E731
                f, xj, baseline=0.0, steps=steps, chunk=chunk).values)
        elif case == "layerwise":
            call = lambda: jax.block_until_ready(  # noqa: E731
                explain.layerwise_guided_backprop(model, variables, xj, chunk=chunk)[0])
        else:
            target = targets.segmentation_sum(probability=False)

            def call():
                cams = explain.grad_cam(model, variables, xj, target, layers="all", relu=True, resize=True,
                                        normalize=True)
                return jax.block_until_ready(jnp.stack([cams[n] for n in BLOCKS]))
    else:
        import torch

        device = _torch_device()
        ref = ref.to(device)
        xt = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 0)[None])).to(device)
        ncdhw = lambda t: np.moveaxis(t.detach().cpu().numpy()[0], 0, -1)  # noqa: E731
        if case == "ig":
            from captum.attr import IntegratedGradients

            ig = IntegratedGradients(lambda inp: torch.sigmoid(ref(inp)[0]).sum(dim=(1, 2, 3, 4)))
            call = lambda: ncdhw(ig.attribute(xt, torch.zeros_like(xt), n_steps=steps,  # noqa: E731
                                              method="gausslegendre", internal_batch_size=chunk))
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
        else:
            from monai.visualize import GradCAM

            class Main(torch.nn.Module):
                def __init__(self, net):
                    super().__init__()
                    self.net = net

                def forward(self, inp):
                    return self.net(inp)[0]

            main = Main(ref)
            xt = xt.clone().requires_grad_(True)  # MONAI's full backward hooks fire only then

            def call():
                maps = [GradCAM(nn_module=main, target_layers=f"net.{n}")(xt, class_idx=0)[0, 0].detach().cpu().numpy()
                        for n in BLOCKS]
                return np.stack(maps)
    t0 = time.perf_counter()
    call()
    first = time.perf_counter() - t0
    _, best, peak, out = _timed(call, repeats, base)
    np.save(result, np.asarray(out, np.float32))
    return {"first_s": first, "best_s": best, "peak_mb": peak}


ANCHOR = {"ig": "captum", "layerwise": "captum", "gradcam": "monai"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--widths", type=int, nargs="+", default=[16, 64])
    p.add_argument("--steps", type=int, nargs="+", default=[32, 64])
    p.add_argument("--chunk", type=int, default=4, help="our chunk = Captum's internal_batch_size (IG); "
                                                       "layers per vmap (layer-wise)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--cases", nargs="+", default=["ig", "layerwise", "gradcam"], choices=list(ANCHOR))
    p.add_argument("--out", default=os.path.join(_ROOT, "benchmarks", "results", "seed003.json"))
    args = p.parse_args(argv)
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
