"""The model-parameter-randomisation sanity check (Adebayo et al. 2018) on a DR grader and a vessel
segmenter: re-initialise the layers from the output down, one step at a time, and watch how much
each method's map still resembles the original.  A method whose map survives the randomisation
of the whole network explains the architecture or the image, not the trained model.

Run (random weights unless given; --quick: CI-sized):

    python experiments/randomisation_study.py --out runs/randomisation \
        [--densenet-weights densenet121.pth] [--driu-weights DRIU_DRIVE.caffemodel] [--size 224]

DenseNet121 (fake fundus images) is randomised by blocks — classifier, norm5, dense block 4,
transition 3, … the stem — and DRIU (scikit-image's retina) layer by layer, both cascading from
the top.  Methods: saliency, gradient × input, guided backprop, integrated gradients, SmoothGrad
and Grad-CAM of the last spatial layer, each map summed over its channels.  Similarities at each
step (:func:`jaxretina.evaluate.parameter_randomisation`, every randomised model built inside
one compiled program per method): Spearman's rank correlation of the absolute maps (Adebayo's
"ABS" curves), SSIM of the maps scaled to [0, 1] and the HOG similarity (the Pearson correlation
of their histograms of oriented gradients, :func:`jaxretina.evaluate.hog_similarity`); the efficient-MPRT score
(:func:`jaxretina.evaluate.efficient_randomisation`) of each method.  Writes
``randomisation.json`` (per model and method: the mean and spread of each similarity at each
step), ``randomisation_curves.png`` (Adebayo's figure: similarity against the cascade) and
``randomisation_maps_<model>.png`` (one image's maps as the cascade proceeds).
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, start  # noqa: E402

METHODS = ("saliency", "gradient_x_input", "guided_backprop", "integrated_gradients", "smoothgrad", "grad_cam")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--densenet-weights", help="a DenseNet121 grader's weights (default: random)")
    p.add_argument("--driu-weights", help="DRIU weights, .caffemodel or converted (default: its own init)")
    p.add_argument("--size", type=int, default=128, help="DenseNet input side")
    p.add_argument("--driu-size", type=int, default=96, help="DRIU input side (a crop of skimage's retina)")
    p.add_argument("--images", type=int, default=3, help="images per model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    args = p.parse_args(argv)
    args.methods = args.driu_methods = METHODS
    if args.quick:   # two methods on the grader, one on DRIU's top three layers
        args.size, args.driu_size, args.images = 32, 32, 1
        args.methods, args.driu_methods = ("saliency", "grad_cam"), ("saliency",)
    return args


def _spatial(m):
    import jax.numpy as jnp

    m = jnp.asarray(m)
    return m.sum(-1) if m.ndim == 3 else m


def explainer(model, target, layer, method, sigma, variables, x):
    """Method ``method``'s map of ``x`` under ``variables`` (spatial, channels summed); ``sigma``:
    SmoothGrad's noise (15 % of the input's range)."""
    import jax

    from jaxretina import explain

    f = explain.model_fn(model, variables, target)
    if method == "saliency":
        return _spatial(explain.saliency(f, x))
    if method == "gradient_x_input":
        return _spatial(explain.gradient_x_input(f, x))
    if method == "guided_backprop":
        return _spatial(explain.guided_backprop(model, variables, x, target))
    if method == "integrated_gradients":
        return _spatial(explain.integrated_gradients(f, x, baseline=0.0, steps=8, chunk=8).values)
    if method == "smoothgrad":
        grad = jax.tree_util.Partial(explain.saliency, f)
        return _spatial(explain.smoothgrad(grad, x, key=jax.random.key(7), samples=8, sigma=sigma, chunk=8))
    return explain.grad_cam(model, variables, x, target, layers=[layer])[layer]


def similarity(a, b):
    """(Spearman of |a| and |b|, SSIM and HOG similarity of a and b each scaled to [0, 1])."""
    import jax.numpy as jnp

    from jaxretina import evaluate

    def unit(m):
        return (m - m.min()) / jnp.maximum(m.max() - m.min(), 1e-12)

    return (evaluate.spearman(jnp.abs(a), jnp.abs(b)), evaluate.ssim(unit(a), unit(b), data_range=1.0),
            evaluate.hog_similarity(unit(a), unit(b)))


def densenet_groups(layers):
    """DenseNet121's parameter layers grouped as the cascade randomises them, bottom-up."""
    order, groups = [], {}
    for path in layers:
        parts = path.split("/")
        name = parts[1] if parts[0] == "features" and len(parts) > 1 else parts[0]
        name = "stem" if name in ("conv0", "norm0") else name
        if name not in groups:
            order.append(name)
            groups[name] = []
        groups[name].append(path)
    return order, [tuple(groups[n]) for n in order]


def _inputs(kind, n, size, seed):
    from PIL import Image
    from skimage import data as skdata

    from jaxretina import data, preprocess

    rng = np.random.default_rng(seed)
    if kind == "densenet":
        raws = [data.fake_fundus(4 - g % 5, rng, size, size) for g in range(n)]
        return [np.asarray(preprocess.imagenet_normalize(r)) for r in raws]
    retina = skdata.retina()
    raws = []
    for _ in range(n):
        y, x = rng.integers(300, 1000, 2)
        raws.append(np.asarray(Image.fromarray(retina[y:y + 3 * size, x:x + 3 * size]).resize((size, size))))
    return [np.asarray(preprocess.driu_caffe_input(r)) for r in raws]


def study(name, model, variables, target, xs, groups, step_names, out, timer, seed, methods=METHODS):
    import jax
    import jax.numpy as jnp

    from jaxretina import evaluate, taps, viz

    layer = taps.spatial_layer_names(model, (1, *xs[0].shape))[-1]
    groups = [tuple(g) if isinstance(g, (list, tuple)) else (g,) for g in groups]
    key = jax.random.key(seed)
    record = {"steps": step_names, "grad_cam_layer": layer, "methods": {}}
    shown = {}
    sigma = 0.15 * float(np.ptp(xs[0]))
    batch = jnp.asarray(np.stack(xs))   # every randomised model explains all the images in one call
    for method in methods:
        phi = functools.partial(explainer, model, target, layer, method, sigma)   # one object: one compile
        with timer(f"{name} {method}"):
            sims = evaluate.parameter_randomisation(phi, variables, batch, layers=groups, key=key,
                                                    similarity=similarity, chunk=1, batch=True)
            rho, ssim, hog = (np.asarray(s) for s in sims)   # each (images, steps)
            empr = np.asarray(evaluate.efficient_randomisation(phi, variables, batch, layers=groups, key=key,
                                                               batch=True)).tolist()
        record["methods"][method] = {
            "spearman_abs": {"mean": rho.mean(0).tolist(), "std": rho.std(0).tolist()},
            "ssim": {"mean": ssim.mean(0).tolist(), "std": ssim.std(0).tolist()},
            "hog": {"mean": hog.mean(0).tolist(), "std": hog.std(0).tolist()},
            "efficient_mprt": {"mean": float(np.mean(empr)), "per_image": empr},
        }
        # one image's maps along the cascade: the original, then after each of up to 4 steps
        picks = sorted({0, len(groups) // 3, 2 * len(groups) // 3, len(groups) - 1})
        top_down = [p for g in reversed(groups) for p in g]
        group_of = [k for k, g in enumerate(reversed(groups)) for _ in g]
        at_step = jax.jit(lambda v, x, chosen: phi(evaluate.reinitialised(v, top_down, key, chosen), x))
        row = [np.asarray(at_step(variables, jnp.asarray(xs[0]), jnp.zeros(len(top_down), bool)))]
        for step in picks:
            chosen = jnp.asarray([k <= step for k in group_of])
            row.append(np.asarray(at_step(variables, jnp.asarray(xs[0]), chosen)))
        shown[method] = (row, ["original"] + [f"to {step_names[s]}" for s in picks])
    fig = viz.image_grid([[viz.heatmap_rgb(np.abs(m), cmap="magma") for m in row] for row, _ in shown.values()],
                         row_titles=list(shown), col_titles=next(iter(shown.values()))[1],
                         title=f"{name}: maps as the layers are re-initialised from the top")
    viz.save_figure(fig, out / f"randomisation_maps_{name}.png", dpi=80)
    return record


def _figure(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxretina import viz

    titles = {"spearman_abs": "Spearman of |maps|", "ssim": "SSIM", "hog": "HOG similarity"}
    fig, axes = plt.subplots(len(results), len(titles), figsize=(16, 3.6 * len(results)), squeeze=False)
    for row, (name, rec) in zip(axes, results.items()):
        for ax, what in zip(row, titles):
            for method, r in rec["methods"].items():   # the original model first: similarity 1
                mean = np.concatenate([[1.0], r[what]["mean"]])
                std = np.concatenate([[0.0], r[what]["std"]])
                ax.plot(range(len(mean)), mean, marker="o", ms=3, label=method)
                ax.fill_between(range(len(mean)), mean - std, mean + std, alpha=0.15)
            ax.set_xticks(range(len(rec["steps"]) + 1), ["original"] + rec["steps"], rotation=60, ha="right",
                          fontsize=7)
            ax.set_ylim(-1.02, 1.05)
            ax.axhline(0, color="gray", lw=0.5)
            ax.set_title(f"{name}: {titles[what]} vs the original", fontsize=9)
        row[0].legend(fontsize=7)
    fig.tight_layout()
    viz.save_figure(fig, path, dpi=90)


def main(argv=None) -> Path:
    args = parse_args(argv)
    import jaxretina
    from jaxretina import evaluate, models, targets

    out, timer, record = start(args, "randomisation_study")
    results = {}
    grader = models.DenseNet121(num_classes=5) if not args.quick else models.DenseNet(
        num_classes=5, growth_rate=8, block_config=(2, 2), num_init_features=16, bn_size=2)
    if args.densenet_weights:
        grader, g_vars = jaxretina.load("densenet121", args.densenet_weights)
    else:
        g_vars = models.random_variables(grader, (1, args.size, args.size, 3), seed=args.seed)
    xs = _inputs("densenet", args.images, args.size, args.seed)
    layers = evaluate.parameter_layers(grader, g_vars, xs[0])
    names, groups = densenet_groups(layers)
    results["densenet121"] = study("densenet121", grader, g_vars, targets.top_class(), xs, groups,
                                   names[::-1], out, timer, args.seed, args.methods)
    results["densenet121"]["weights"] = args.densenet_weights or "random initialisation"

    driu = models.DRIU()
    if args.driu_weights:
        driu, d_vars = jaxretina.load("driu", args.driu_weights)
    else:
        d_vars = models.random_variables(driu, (1, args.driu_size, args.driu_size, 3), seed=args.seed)
    xs = _inputs("driu", args.images, args.driu_size, args.seed)
    layers = evaluate.parameter_layers(driu, d_vars, xs[0])[-3 if args.quick else 0:]
    results["driu"] = study("driu", driu, d_vars, targets.segmentation_sum(), xs, layers, layers[::-1], out,
                            timer, args.seed, args.driu_methods)
    results["driu"]["weights"] = args.driu_weights or "random initialisation"
    record["results"] = results
    _figure(results, out / "randomisation_curves.png")
    path = finish(out, "randomisation", record, timer)
    for name, rec in results.items():
        last = {m: round(r["spearman_abs"]["mean"][-1], 3) for m, r in rec["methods"].items()}
        print(f"{name}: Spearman of |map| after randomising every layer: {last}")
    print(f"wrote {path}, randomisation_curves.png, randomisation_maps_*.png")
    return path


if __name__ == "__main__":
    main()
