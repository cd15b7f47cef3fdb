"""Evaluation metrics against their cost floor and against Quantus 0.6.0, side by side in one run:

* ``deletion`` — DenseNet121 (random weights, 224²), ``--images`` random images with random maps
  of the images' shape (every value its own feature: no ties), a deletion curve of 96 steps of
  1568 values (Quantus requires a step that divides 224²; 96 · 1568 = 224² · 3):
  - jaxretina: :func:`jaxretina.evaluate.perturbation_curve` per image (97 passes, chunks of 25);
  - floor: the same forward passes in the same chunks, without building any input;
  - Quantus ``PixelFlipping(features_in_step=1568)`` on the same torchvision weights, images and
    maps (96 passes an image, the batch of images at once).
* ``localisation`` — pointing game, relevance mass, relevance rank, top-k and AUROC over
  ``--maps`` random 224² maps with rectangular masks: jaxretina's jit(vmap) of all five against
  the five Quantus metrics.
* ``mprt`` — cascading model parameter randomisation of DenseNet121 over all its 242 parameter
  layers (every convolution, batch norm and the classifier, top down), ``--mprt-images`` images
  at ``--mprt-size``², |gradient| maps, Spearman similarity: 243 explanations an image on both
  sides — :func:`jaxretina.evaluate.parameter_randomisation` (every randomised model built in
  the program from the variables and a key, ``MPRT_CHUNK`` at a time, each explaining the images
  in one batched call: ``batch=True``) against Quantus' ``MPRT``
  (a deep copy of the PyTorch model, one more layer's ``reset_parameters`` per step, Captum-free
  autograd saliency as its ``explain_func``).  Different random draws: the numbers are not
  compared, the work is the same.

* ``sweep_deletion`` — deletion inside a sweep: ``jaxretina sweep``'s compute (DenseNet121,
  random weights, ``--sweep-images`` fake fundus images at 128², batches of 4, saliency) with
  ``--metric deletion:steps=32,chunk=11`` (``sweep``) and without it (``sweep_plain``); their
  difference is the metric's cost, set against ``floor``: the same 33 forward passes per map in
  the same (batch × chunk) shapes, inputs prebuilt.

``torch_floor`` rows: the anchor's model calls alone in PyTorch (deletion: the batch of images
through the network once per step, no grad; MPRT: the 243 saliency maps of the unrandomised
network, no copies) — what Quantus could not go below, so ``quantus / torch_floor`` bounds the
speed-up any implementation of equal work can reach over it on this machine from removing
Quantus' overhead alone.

Each side in its own process: first call (compile included), best of ``--repeats``, peak
resident memory above the process's start, FLOPs of the model calls (XLA's count for one
forward pass times the passes).  Writes ``benchmarks/results/evaluation.json``.

    .venv/bin/python -m benchmarks.evaluation [--images 8] [--maps 256] [--sweep-images 8] [--repeats 1]
                                              [--cases deletion,localisation,mprt,sweep_deletion]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings

import numpy as np

from benchmarks._process import run_case, write_results

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS, STEP_VALUES, CHUNK = 96, 1568, 25
SWEEP_STEPS, SWEEP_CHUNK, SWEEP_SIZE, SWEEP_BATCH = 32, 11, 128, 4   # the sweep case: 33 passes = 3 chunks
MPRT_CHUNK = 1    # one randomised model per call: batching models batches their weights (3: 0.86×, 11: 0.81×)


def _images(n):
    rng = np.random.default_rng(0)
    return rng.normal(0, 1, (n, 224, 224, 3)).astype(np.float32), rng.random((n, 224, 224, 3)).astype(np.float32)


def _maps_and_masks(n):
    rng = np.random.default_rng(1)
    maps = rng.random((n, 224, 224)).astype(np.float32)
    masks = np.zeros((n, 224, 224), bool)
    for i in range(n):
        r, c = rng.integers(0, 160, 2)
        masks[i, r:r + 40, c:c + 48] = True
    return maps, masks


def _deletion(side, n, repeats, result):
    from benchmarks._memory import rss_mb
    from benchmarks.anchor_models import CLASS, build
    from benchmarks.anchors import first_and_best
    from benchmarks.costs import forward_flops

    pair = build("densenet121")
    xs, maps = _images(n)
    base = rss_mb()
    if side == "torch_floor":   # Quantus' forward passes alone: every step, the batch of images
        import torch

        torch.set_grad_enabled(False)
        x_nchw = torch.from_numpy(np.ascontiguousarray(xs.transpose(0, 3, 1, 2)))

        def run():
            out = [pair.torch_model(x_nchw) for _ in range(STEPS)]
            return out[-1].numpy()
    elif side == "quantus":
        import torch
        import quantus

        torch.set_grad_enabled(False)
        metric = quantus.PixelFlipping(features_in_step=STEP_VALUES, perturb_baseline=0.0, abs=False, normalise=False,
                                       disable_warnings=True, display_progressbar=False)
        x_nchw = np.ascontiguousarray(xs.transpose(0, 3, 1, 2))

        def run():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return np.asarray(metric(model=pair.torch_model, x_batch=x_nchw, y_batch=np.full(n, CLASS),
                                         a_batch=np.ascontiguousarray(maps.transpose(0, 3, 1, 2)), channel_first=True,
                                         softmax=False, device="cpu"))
    else:
        import jax

        from jaxretina import evaluate, explain, taps

        f = explain.model_fn(pair.jax_model, taps.params_only(pair.variables), pair.target)
        xj, mj = jax.numpy.asarray(xs), jax.numpy.asarray(maps)
        if side == "jaxretina":
            def run():
                return np.stack([np.asarray(evaluate.perturbation_curve(f, xj[i], mj[i], steps=STEPS, chunk=CHUNK)
                                            .scores[1:]) for i in range(n)])
        else:   # the floor: the same forward passes, inputs already built
            batched = jax.jit(jax.vmap(f))
            sizes = [min(CHUNK, STEPS + 1 - start) for start in range(0, STEPS + 1, CHUNK)]
            blocks = {k: jax.numpy.broadcast_to(xj[0], (k,) + xj.shape[1:]) for k in set(sizes)}

            def run():
                out = [batched(blocks[k]) for _ in range(n) for k in sizes]
                return np.asarray(jax.block_until_ready(out[-1]))
    timing = first_and_best(run, repeats, base, result)
    passes = n * (STEPS if side in ("quantus", "torch_floor") else STEPS + 1)
    return {"case": "deletion", "side": side, **timing, "passes": passes,
            "gflops": forward_flops(pair.jax_model, pair.variables, pair.target, xs[0]) * passes / 1e9}


def _localisation(side, n, repeats, result):
    from benchmarks._memory import rss_mb
    from benchmarks.anchors import first_and_best

    maps, masks = _maps_and_masks(n)
    base = rss_mb()
    if side == "quantus":
        import quantus

        common = dict(abs=False, normalise=False, disable_warnings=True, display_progressbar=False)
        metrics = [quantus.PointingGame(**common), quantus.RelevanceMassAccuracy(**common),
                   quantus.RelevanceRankAccuracy(**common), quantus.TopKIntersection(k=1000, **common),
                   quantus.AUC(**common)]
        x = np.zeros((n, 1, 224, 224), np.float32)

        def run():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return np.stack([np.asarray(m(model=None, x_batch=x, y_batch=np.zeros(n, int), a_batch=maps[:, None],
                                              s_batch=masks[:, None].astype(np.float32), channel_first=True),
                                            np.float32) for m in metrics], axis=1)
    else:
        import jax

        from jaxretina import evaluate

        every = jax.jit(jax.vmap(lambda a, s: jax.numpy.stack([
            evaluate.pointing_game(a, s), evaluate.relevance_mass(a, s), evaluate.relevance_rank(a, s),
            evaluate.top_k_intersection(a, s, k=1000), evaluate.localisation_auroc(a, s)])))
        mj, sj = jax.numpy.asarray(maps), jax.numpy.asarray(masks)

        def run():
            return np.asarray(every(mj, sj))
    return {"case": "localisation", "side": side, **first_and_best(run, repeats, base, result), "maps": n}


def _abs_saliency(model, target, variables, x):
    from jaxretina import explain

    return explain.saliency(explain.model_fn(model, variables, target), x)


def _mprt(side, n, repeats, result, size=64):
    from benchmarks._memory import rss_mb
    from benchmarks.anchor_models import CLASS, build
    from benchmarks.anchors import first_and_best

    pair = build("densenet121")
    xs = np.random.default_rng(2).normal(0, 1, (n, size, size, 3)).astype(np.float32)
    base = rss_mb()
    if side in ("quantus", "torch_floor"):
        import torch
        import quantus

        net = pair.torch_model

        def saliency(model, inputs, targets, **kwargs):
            z = torch.tensor(np.asarray(inputs), dtype=torch.float32, requires_grad=True)
            out = model(z)
            out[torch.arange(len(z)), torch.as_tensor(np.asarray(targets))].sum().backward()
            return z.grad.abs().numpy()

        metric = quantus.MPRT(layer_order="top_down", abs=True, normalise=False, disable_warnings=True,
                              display_progressbar=False)
        x_nchw = np.ascontiguousarray(xs.transpose(0, 3, 1, 2))

        def run():
            if side == "torch_floor":   # the 243 explanations alone: no copies, no re-initialisation
                return np.stack([saliency(net, x_nchw, np.full(n, CLASS)) for _ in range(243)])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scores = metric(model=net, x_batch=x_nchw, y_batch=np.full(n, CLASS), a_batch=None,
                                explain_func=saliency, channel_first=True, softmax=False, device="cpu")
            return np.asarray([list(v) for v in scores.values()], np.float64)
    else:
        import functools

        import jax

        from jaxretina import evaluate, taps

        variables = taps.params_only(pair.variables)
        explainer = functools.partial(_abs_saliency, pair.jax_model, pair.target)
        layers = evaluate.parameter_layers(pair.jax_model, variables, xs[0])
        key = jax.random.key(0)

        def run():   # as Quantus: each randomised model explains the images in one batched call
            return np.asarray(evaluate.parameter_randomisation(
                explainer, variables, jax.numpy.asarray(xs), layers=layers, key=key, chunk=MPRT_CHUNK, batch=True))
    timing = first_and_best(run, repeats, base, result)
    out = {"case": "mprt", "side": side, **timing, "images": n, "size": size, "explanations": n * 243}
    if side == "jaxretina":   # the work: 243 saliency maps (a forward and a backward pass) an image
        from benchmarks.costs import xla_flops

        one = xla_flops(explainer, variables, jax.numpy.asarray(xs[0]))
        out["gflops"] = one * n * 243 / 1e9
    return out


def _sweep_deletion(side, n, repeats, result):
    """Deletion inside a sweep: the sweep's compute with and without the metric, and the
    metric's forward passes alone (the same batch × chunk shapes, inputs prebuilt)."""
    import jax

    from benchmarks._memory import rss_mb
    from benchmarks.anchors import first_and_best
    from benchmarks.costs import forward_flops
    from jaxretina import data, explain, models, sweep, targets
    from jaxretina.sweep.runner import Runner

    model = models.DenseNet121(num_classes=5)
    variables = models.random_variables(model, (1, SWEEP_SIZE, SWEEP_SIZE, 3))
    sizes = [min(SWEEP_CHUNK, SWEEP_STEPS + 1 - s) for s in range(0, SWEEP_STEPS + 1, SWEEP_CHUNK)]
    batches = -(-n // SWEEP_BATCH)
    base = rss_mb()
    work = None   # the sweep sides' fake dataset, removed at the end
    if side == "floor":
        f = explain.model_fn(model, variables, targets.class_logit(0))
        passes = jax.jit(jax.vmap(jax.vmap(f)))     # (batch, chunk) perturbed inputs -> scores
        noise = np.random.default_rng(3).normal(0, 1, (SWEEP_BATCH, 1, SWEEP_SIZE, SWEEP_SIZE, 3)).astype(np.float32)
        blocks = {k: jax.numpy.asarray(np.broadcast_to(noise, (SWEEP_BATCH, k) + noise.shape[2:])) for k in set(sizes)}

        def run():
            out = [passes(blocks[k]) for _ in range(batches) for k in sizes]
            return np.asarray(jax.block_until_ready(out[-1]))
    else:
        work = tempfile.TemporaryDirectory(prefix="jaxretina-bench-deletion-")
        folder = work.name
        counts = tuple(n // 5 + (i < n % 5) for i in range(5))
        root = data.make_fake_dataset(folder, per_class=counts, test_per_class=0, size=SWEEP_SIZE)
        metrics = [f"deletion:steps={SWEEP_STEPS},chunk={SWEEP_CHUNK}"] if side == "sweep" else []
        cfg = sweep.sweep_config(model="densenet121", model_options={"num_classes": 5}, data=str(root / "folder" / "images"),
                                 out=os.path.join(folder, "store.zarr"), size=SWEEP_SIZE, batch=SWEEP_BATCH,
                                 progress=False, methods=["saliency"], metrics=metrics)
        runner = Runner(cfg)
        for shape in runner.plan.groups:
            runner.program(shape)                       # compiled ahead, as the sweep does
        loaded = [runner.load_batch(b) for b in runner.plan.batches]

        def run():   # every batch dispatched, then waited for: no host round-trip between them
            calls = [runner.compute(b, raw, index) for b, (raw, index, *_) in zip(runner.plan.batches, loaded)]
            jax.block_until_ready(calls)
            return np.asarray([len(calls)])
    timing = first_and_best(run, repeats, base, result)
    if work is not None:
        work.cleanup()
    out = {"case": "sweep_deletion", "side": side, **timing, "images": n, "size": SWEEP_SIZE, "steps": SWEEP_STEPS}
    if side != "sweep_plain":
        count = batches * SWEEP_BATCH * (SWEEP_STEPS + 1)
        x = np.zeros((SWEEP_SIZE, SWEEP_SIZE, 3), np.float32)
        out.update(passes=count, gflops=forward_flops(model, variables, targets.class_logit(0), x) * count / 1e9)
    return out


def case(kind: str, side: str, n: int, repeats: int, result: str) -> dict:
    """One case in this process."""
    cases = {"deletion": _deletion, "localisation": _localisation, "mprt": _mprt, "sweep_deletion": _sweep_deletion}
    return cases[kind](side, n, repeats, result)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--maps", type=int, default=256)
    p.add_argument("--mprt-images", type=int, default=4)
    p.add_argument("--sweep-images", type=int, default=8)
    p.add_argument("--cases", default="deletion,localisation,mprt,sweep_deletion", help="comma-separated; rows of the others kept")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", default=os.path.join(_ROOT, "benchmarks", "results", "evaluation.json"))
    args = p.parse_args(argv)
    wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
    rows = []
    if os.path.exists(args.out):   # keep the rows of the cases not run now
        import json

        with open(args.out) as fh:
            rows = [r for r in json.load(fh).get("rows", []) if r.get("case") not in wanted]
    with tempfile.TemporaryDirectory() as folder:
        for kind, sides, n in (("deletion", ("jaxretina", "floor", "quantus", "torch_floor"), args.images),
                               ("localisation", ("jaxretina", "quantus"), args.maps),
                               ("mprt", ("jaxretina", "quantus", "torch_floor"), args.mprt_images),
                               ("sweep_deletion", ("sweep", "sweep_plain", "floor"), args.sweep_images)):
            if kind not in wanted:
                continue
            results = {}
            for side in sides:
                path = os.path.join(folder, f"{kind}-{side}.npy")
                r = run_case("benchmarks.evaluation", "case", kind, side, n, args.repeats, path)
                r["result"] = path
                results[side] = r
                print(f"{kind:12s} {side:10s} first {r['first_s']:8.2f} s  best {r['best_s']:8.2f} s  "
                      f"peak {r['peak_mb']:7.0f} MB" + (f"  {r['gflops']:8.0f} GFLOP" if "gflops" in r else ""),
                      flush=True)
            if kind == "sweep_deletion":   # the metric's share of the sweep against its forward passes
                metric_s = results["sweep"]["best_s"] - results["sweep_plain"]["best_s"]
                results["sweep"].update(metric_s=metric_s, ratio_to_forward_passes=metric_s / results["floor"]["best_s"])
                print(f"{kind:12s} the metric in the sweep {metric_s:.2f} s: "
                      f"{results['sweep']['ratio_to_forward_passes']:.2f}× its forward passes", flush=True)
                rows += [{k: v for k, v in r.items() if k != "result"} for r in results.values()]
                continue
            ours, theirs = results["jaxretina"], results["quantus"]
            ours["speedup_vs_quantus"] = theirs["best_s"] / ours["best_s"]
            a, b = np.load(ours["result"]), np.load(theirs["result"])
            same_draws = kind != "mprt"
            ours["max_abs_diff"] = float(np.nanmax(np.abs(a - b))) if same_draws and a.shape == b.shape else None
            if "floor" in results:
                ours["ratio_to_forward_passes"] = ours["best_s"] / results["floor"]["best_s"]
            if "torch_floor" in results:   # how much of Quantus' time its model calls take
                theirs["ratio_to_torch_model_calls"] = theirs["best_s"] / results["torch_floor"]["best_s"]
                print(f"{kind:12s} Quantus {theirs['ratio_to_torch_model_calls']:.2f}× its PyTorch model calls alone",
                      flush=True)
            print(f"{kind:12s} jaxretina {ours['speedup_vs_quantus']:.2f}× Quantus"
                  + (f", {ours['ratio_to_forward_passes']:.2f}× its forward passes" if "floor" in results else "")
                  + f"; max |Δ| {ours['max_abs_diff']}", flush=True)
            for r in results.values():
                r.pop("result")
                rows.append(r)
    write_results(args.out, {"rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
