"""Seed 001's attributions, jaxretina against Captum, side by side on the same weights.

    python -m benchmarks.seed001_attribution [--steps 16] [--repeats 1] [--out benchmarks/results/seed001.json]

Model: the seed's grader — torchvision Inception V3 trunk (random weights, random BatchNorm
statistics) with two fully connected layers and 5 logits — at 256×256 on 0..255 pixels
(ImageNet normalisation inside), half-gray baseline, softmax probabilities, float32, CPU
(Captum on the GPU when PyTorch sees one).  Each case runs in its own process; times are the
best of ``repeats`` after a first (compiling) call, which is reported apart.

Cases:
* ``classes``: IG towards grades 0, 2, 4 — Captum ``IntegratedGradients`` once per class vs
  ``explain.class_integrated_gradients`` (one program, one forward and 3 backward passes per
  step) and vs three ``explain.integrated_gradients`` calls;
* ``neurons``: IG of 8 neurons of ``Conv2d_4a_3x3`` with respect to the pixels — Captum
  ``NeuronIntegratedGradients`` once per neuron vs ``explain.neuron_integrated_gradients``;
* ``layer``: IG to ``Conv2d_4a_3x3``'s neurons — Captum ``LayerIntegratedGradients`` vs
  ``explain.layer_integrated_gradients``.
Every Captum call uses ``internal_batch_size`` = our chunk (8) and the same rule.
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

SIZE, CLASSES, LAYER, CHUNK, RULE = 256, (0, 2, 4), "Conv2d_4a_3x3", 8, "gausslegendre"
NEURONS = (0, 1000, 50000, 200000, 345700, 400000, 555555, 691000)  # flat indices into (60, 60, 192) at 256²


def _pair():
    import torch

    from converters.inception import from_state_dict
    from jaxretina import preprocess
    from tests.reference.inception_torch import Seed001

    ref = Seed001(hidden=(1024, 512)).eval()
    state = {k.removeprefix("trunk."): v.detach().numpy().copy() for k, v in ref.state_dict().items()}
    model, variables, _ = from_state_dict(state, "benchmark")
    model = model.clone(normalization=preprocess.imagenet_normalization(255.0))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    x = np.random.default_rng(0).uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32)
    return model, variables, ref, (lambda inp: torch.softmax(ref((inp - mean) / std), dim=1)), x


def _worker(case: str, contender: str, steps: int, repeats: int, result: str) -> dict:
    import jax
    import jax.numpy as jnp

    import jaxretina  # noqa: F401 - XLA defaults before the backend starts
    from benchmarks.anchors import first_and_best
    from jaxretina import explain, preprocess, targets

    model, variables, ref, probs, x = _pair()
    base = rss_mb()
    gray = preprocess.HALF_GRAY
    if contender == "captum":
        import torch
        from captum import attr

        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))
        bt = torch.full_like(xt, gray)
        hwc = lambda t: t.detach().numpy()[0].transpose(1, 2, 0)  # noqa: E731
        if case == "classes":
            ig = attr.IntegratedGradients(probs)
            call = lambda: np.stack([hwc(ig.attribute(xt, bt, target=c, n_steps=steps, method=RULE,  # noqa: E731
                                                      internal_batch_size=CHUNK)) for c in CLASSES])
        elif case == "neurons":
            nig = attr.NeuronIntegratedGradients(lambda inp: probs(inp), ref.trunk.Conv2d_4a_3x3)
            from jaxretina import taps

            shape = tuple(taps.layer_shapes(model, None, (1, SIZE, SIZE, 3))[LAYER].shape[1:])   # (60, 60, 192)

            def call():
                out = []
                for n in NEURONS:
                    h, w, c = np.unravel_index(n, shape)
                    out.append(hwc(nig.attribute(xt, neuron_selector=(int(c), int(h), int(w)), baselines=bt,
                                                 n_steps=steps, method=RULE, internal_batch_size=CHUNK)))
                return np.stack(out)
        else:
            lig = attr.LayerIntegratedGradients(probs, ref.trunk.Conv2d_4a_3x3)
            call = lambda: hwc(lig.attribute(xt, bt, target=4, n_steps=steps, method=RULE,  # noqa: E731
                                             internal_batch_size=CHUNK))
    else:
        xj = jnp.asarray(x)
        if case == "classes" and contender == "jaxretina":
            call = lambda: jax.block_until_ready(explain.class_integrated_gradients(  # noqa: E731
                model, variables, xj, CLASSES, baseline=gray, steps=steps, rule=RULE, chunk=CHUNK).values)
        elif case == "classes":
            fs = [explain.model_fn(model, variables, targets.class_probability(c)) for c in CLASSES]
            call = lambda: jax.block_until_ready(jnp.stack([explain.integrated_gradients(  # noqa: E731
                f, xj, baseline=gray, steps=steps, rule=RULE, chunk=CHUNK).values for f in fs]))
        elif case == "neurons":
            call = lambda: jax.block_until_ready(explain.neuron_integrated_gradients(  # noqa: E731
                model, variables, xj, LAYER, jnp.asarray(NEURONS), baseline=gray, steps=steps, rule=RULE,
                chunk=CHUNK).values)
        else:
            call = lambda: jax.block_until_ready(explain.layer_integrated_gradients(  # noqa: E731
                model, variables, xj, LAYER, targets.class_probability(4), baseline=gray, steps=steps, rule=RULE,
                chunk=CHUNK).values)
    return first_and_best(call, repeats, base, result)


CONTENDERS = {"classes": ("captum", "jaxretina", "jaxretina-separate"), "neurons": ("captum", "jaxretina"),
              "layer": ("captum", "jaxretina")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--cases", nargs="+", default=list(CONTENDERS), choices=list(CONTENDERS))
    p.add_argument("--out", default=os.path.join(_ROOT, "benchmarks", "results", "seed001.json"))
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            results = {}
            for who in CONTENDERS[case]:
                path = os.path.join(tmp, f"{case}-{who}.npy")
                r = run_case("benchmarks.seed001_attribution", "_worker", case, who, args.steps, args.repeats, path)
                results[who] = (r, np.load(path))
            cap_r, cap_v = results["captum"]
            for who, (r, v) in results.items():
                row = {"case": case, "contender": who, "steps": args.steps, **r}
                if who != "captum":
                    row["vs_captum"] = cap_r["best_s"] / r["best_s"]
                    row["max_rel_diff"] = float(np.abs(v - cap_v).max() / (np.abs(cap_v).max() or 1.0))
                rows.append(row)
                print(f"{case:8s} {who:18s} best {r['best_s']:7.2f} s  first {r['first_s']:7.2f} s  "
                      f"peak {r['peak_mb']:7.0f} MB" + (f"  {row['vs_captum']:.2f}x Captum, max rel diff "
                                                        f"{row['max_rel_diff']:.1e}" if who != "captum" else ""),
                      flush=True)
    write_results(args.out, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
