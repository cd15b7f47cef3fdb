"""Seed 001 (Li et al.): an Inception V3 DR grader explained with Integrated Gradients.

Run (a generated fake dataset unless --data/--folder/--tfds-dir is given; --quick: CI-sized):

    python experiments/seed001_integrated_gradients.py --out runs/seed001 \
        [--data ~/eyepacs] [--weights inception_v3_google-0cc3c7bd.pth | tuned_orbax_dir] [--train-steps 1395]

What it does, as in the seed:
1. preprocessing: retina diameter from the middle row, blur, rescale to 256×256, subtract a
   heavy blur, half-gray outside 90 % of the retina (jaxretina.preprocess.seed001_input);
2. Inception V3 with two added fully connected layers and a 5-way softmax; only those train
   (Adam, cross-entropy, 50/6.25/12.5/6.25/25 % class-balanced batches, learning rate 0.001 /
   0.0002 / 0.00005 for 550 / 350 / 495 batches — scaled to --train-steps);
3. accuracy, sensitivity, specificity (referable split) and quadratic kappa on held-out images;
4. IG with the half-gray baseline towards grades 0, 2 and 4 at once (Fig. b);
5. attribution to the neurons of the last convolution before the Inception blocks, the top-k
   positive and negative neurons' pixel maps in one program, their resultant active regions (Fig. a);
6. IG counterfactuals of a true-1 / predicted-0 image and the gradient step, and the linearity
   study of the fully connected units over an exponential grid of c.
Writes PNG figures (green = positive, red = negative) and seed001.json.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_data_args, build_model, finish, open_sources, pick_examples, start  # noqa: E402


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_args(p)
    p.add_argument("--weights", help="torchvision inception_v3 .pth (ImageNet trunk; the head is new) or an "
                                     "Orbax directory saved by this script (skips nothing: use --train-steps 0)")
    p.add_argument("--train-steps", type=int, default=1395, help="mini-batches (the seed: 550 + 350 + 495)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--checkpoint-every", type=int, default=100, help="Orbax checkpoint interval (resumes)")
    p.add_argument("--size", type=int, default=256, help="network input (the seed: 256)")
    p.add_argument("--load-size", type=int, default=512, help="host-side square size before preprocessing")
    p.add_argument("--steps", type=int, default=50, help="IG steps (the seed's uniform Riemann sum)")
    p.add_argument("--rule", default="riemann_right")
    p.add_argument("--chunk", default="8", help="IG steps per compiled chunk, or 'all'")
    p.add_argument("--layer", default="Conv2d_4a_3x3", help="layer of the neuron study (last conv before blocks)")
    p.add_argument("--top-k", type=int, default=8)
    p.add_argument("--linearity-layer", default="head.fc2")
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    args = p.parse_args(argv)
    if args.quick:
        args.train_steps, args.batch_size, args.size, args.load_size = 4, 8, 80, 96
        args.steps, args.top_k, args.chunk, args.fake_per_class = 4, 2, "all", 3
    args.chunk = args.chunk if args.chunk == "all" else int(args.chunk)
    return args


def seed_schedule(steps: int):
    from jaxretina import train

    values, lengths = train.SEED001_SCHEDULE
    total = sum(lengths)
    scaled = [max(1, round(n * steps / total)) for n in lengths]
    return train.piecewise_constant(values, scaled), {"values": values, "lengths": scaled}


def signed_panel(image, attribution):
    from jaxretina import viz

    return viz.signed_overlay(np.clip(image, 0, 255).astype(np.uint8), np.asarray(attribution).sum(-1))


def main(argv=None):
    args = parse(argv)
    import jax
    import jax.numpy as jnp
    import jaxretina
    from jaxretina import data, explain, metrics, models, preprocess, targets, train, viz

    out, timer, record = start(args, "001_5e38d902eb5571cb")
    train_src, eval_src, record["data"] = open_sources(args)
    record["data"].update(train=len(train_src), evaluation=len(eval_src),
                          train_grades=np.bincount(train_src.labels, minlength=5).tolist())
    grader = models.InceptionV3(num_classes=5, head="seed001", normalization=preprocess.imagenet_normalization(255.0))
    model, variables, record["model"] = build_model("inception_v3", grader, args)
    prep = jax.jit(lambda images: preprocess.seed001_input(images, size=args.size))

    # -- fine-tuning ------------------------------------------------------------------------------
    schedule, record["schedule"] = seed_schedule(max(args.train_steps, 1))
    trainer = train.Trainer(model, variables, trainable=train.SEED001_TRAINABLE, learning_rate=schedule,
                            preprocess=prep, seed=args.seed)
    order = lambda start: data.class_balanced(train_src.labels, data.SEED001_FRACTIONS, args.batch_size,  # noqa: E731
                                              seed=args.seed, start=start)
    with timer("train"):
        state, history = trainer.fit(train_src, order, steps=args.train_steps, size=args.load_size,
                                     progress=not args.quick, checkpoint_every=args.checkpoint_every,
                                     checkpoint_dir=None if args.quick else out / "checkpoints")
    record["training"] = {"steps": len(history), "first_losses": [h["loss"] for h in history[:5]],
                          "last_losses": [h["loss"] for h in history[-5:]],
                          "images_per_s_median": float(np.median([h["images_per_s"] for h in history])) if history else None}
    variables = trainer.variables(state)
    if args.train_steps:
        shutil.rmtree(out / "tuned", ignore_errors=True)
        jaxretina.save("inception_v3", model, variables, out / "tuned", extra={"seed": "001", "steps": len(history)})

    with timer("evaluate"):
        ev = trainer.evaluate(state, eval_src, batch_size=args.batch_size, size=args.load_size)
    record["metrics"] = metrics.report(ev["labels"], ev["probabilities"])

    # -- examples -----------------------------------------------------------------------------------
    roles = pick_examples(ev["labels"], ev["predictions"],
                          {"stage4": (4, 4), "stage2": (2, 2), "true1_pred0": (1, 0)})
    raw = {r: eval_src[i] for r, i in roles.items()}
    xs = {r: prep(jnp.asarray(data.square_resize(ex.image, args.load_size))[None])[0] for r, ex in raw.items()}
    f_prob = lambda c: explain.model_fn(model, variables, targets.class_probability(c))  # noqa: E731
    # the evaluation's own probabilities (same resize, same program; no batch-of-one compile)
    record["examples"] = {r: {"name": raw[r].name, "grade": raw[r].label,
                              "probabilities": np.asarray(ev["probabilities"][i]).round(4).tolist()}
                          for r, i in roles.items()}
    base = preprocess.HALF_GRAY

    # Fig. b: IG towards grades 0, 2, 4 for each example, all classes in one program
    classes = (0, 2, 4)
    panels, completeness = [], {}
    with timer("class_ig"):
        for r, x in xs.items():
            ig = explain.class_integrated_gradients(model, variables, x, classes, baseline=base, steps=args.steps,
                                                    rule=args.rule, chunk=args.chunk)
            completeness[r] = {f"grade{c}": {"sum": float(ig.values[i].sum()), "delta": float(ig.delta[i])}
                               for i, c in enumerate(classes)}
            panels.append([np.asarray(data.square_resize(raw[r].image, args.size)), np.asarray(x)]
                          + [signed_panel(x, ig.values[i]) for i in range(len(classes))])
    record["class_ig"] = {"classes": classes, "baseline": base, "steps": args.steps, "rule": args.rule,
                          "per_example": completeness}
    titles = ["original", "preprocessed"] + [f"IG grade {c}" for c in classes]
    fig = viz.image_grid(panels, row_titles=list(xs), col_titles=titles)
    viz.save_figure(fig, out / "seed001_class_ig.png")

    # Fig. a: neurons of the last convolution before the blocks, towards grade 4
    with timer("neuron_study"):
        study = explain.neuron_study(model, variables, xs["stage4"], args.layer, targets.class_probability(4),
                                     baseline=base, k=args.top_k, steps=args.steps, rule=args.rule, chunk=args.chunk)
    lay = np.asarray(study.layer.values).reshape(-1)
    record["neuron_study"] = {
        "layer": args.layer, "layer_shape": list(study.layer.values.shape), "target": "probability of grade 4",
        "layer_attribution_sum": float(lay.sum()), "layer_delta": float(study.layer.delta),
        "positive": {"indices": np.asarray(study.positive).tolist(), "attributions": lay[np.asarray(study.positive)].tolist()},
        "negative": {"indices": np.asarray(study.negative).tolist(), "attributions": lay[np.asarray(study.negative)].tolist()},
        "neuron_deltas": np.asarray(study.neuron_maps.delta).tolist(),
    }
    x4 = xs["stage4"]
    fig = viz.image_grid([[np.asarray(data.square_resize(raw["stage4"].image, args.size)), np.asarray(x4)],
                          [signed_panel(x4, study.positive_region), signed_panel(x4, study.negative_region)]],
                         row_titles=["input", f"top-{args.top_k} neurons"],
                         col_titles=["original / positive", "preprocessed / negative"])
    viz.save_figure(fig, out / "seed001_resultant_regions.png")

    # Counterfactuals of the true-1 image (towards grade 1)
    x1 = xs["true1_pred0"]
    with timer("counterfactuals"):
        ig1 = explain.integrated_gradients(f_prob(1), x1, baseline=base, steps=args.steps, rule=args.rule,
                                           chunk=args.chunk)
        scale = float(jnp.abs(ig1.values).max()) or 1.0
        cs = np.array([8.0, 32.0, 128.0]) / scale           # largest pixel move 8, 32, 128 levels
        cf = explain.ig_counterfactual(x1, base, ig1.values, cs)
        grad = explain.saliency(f_prob(1), x1, abs=False)      # ∂F/∂x, jitted
        gs = np.array([8.0, 32.0, 128.0]) / (float(jnp.abs(grad).max()) or 1.0)
        gcf = explain.gradient_counterfactual(f_prob(1), x1, gs)
        probs = jax.jit(lambda v, zs: jax.nn.softmax(model.apply(v, zs), axis=-1))
        p_ig, p_grad = np.asarray(probs(variables, cf)), np.asarray(probs(variables, gcf))
    p0 = record["examples"]["true1_pred0"]["probabilities"]
    record["counterfactuals"] = {
        "example": raw["true1_pred0"].name, "target": "grade 1", "probability_before": p0[1],
        "ig": {"c": cs.tolist(), "max_pixel_change": [8, 32, 128], "probability_grade1": p_ig[:, 1].tolist(),
               "predicted": p_ig.argmax(1).tolist()},
        "gradient": {"c": gs.tolist(), "max_pixel_change": [8, 32, 128], "probability_grade1": p_grad[:, 1].tolist(),
                     "predicted": p_grad.argmax(1).tolist()},
    }
    to8 = lambda z: np.clip(np.asarray(z), 0, 255).astype(np.uint8)  # noqa: E731
    fig = viz.image_grid([[to8(x1)] + [to8(z) for z in cf], [to8(x1)] + [to8(z) for z in gcf]],
                         row_titles=["IG counterfactual", "gradient step"],
                         col_titles=["input", "max Δ 8", "max Δ 32", "max Δ 128"])
    viz.save_figure(fig, out / "seed001_counterfactuals.png")

    # Linearity of the fully connected units over an exponential grid of c (one program)
    with timer("linearity"):
        grid = explain.exponential_grid(1.0, 255.0, 3 if args.quick else 6) / (float(jnp.abs(grad).max()) or 1.0)
        lin = explain.linearity_study(model, variables, x1, args.linearity_layer, targets.class_probability(1), grid,
                                      baseline=base, steps=args.steps, rule=args.rule)
    attributions = np.asarray(lin.attributions)
    mean_grad = np.asarray(lin.mean_gradients)
    top = np.argsort(-np.abs(attributions[-1]))[:16]
    record["linearity"] = {
        "layer": args.linearity_layer, "c": np.asarray(lin.c).tolist(), "outputs": np.asarray(lin.outputs).tolist(),
        "attribution_l1": np.abs(attributions).sum(1).tolist(), "deltas": np.asarray(lin.deltas).tolist(),
        "top_units": top.tolist(), "top_attributions": attributions[:, top].tolist(),
        "top_mean_gradients": mean_grad[:, top].tolist(),
    }
    fig = viz.unit_squares(attributions[:, top], row_labels=[f"c={c:.3g}" for c in np.asarray(lin.c)],
                           col_labels=[str(u) for u in top], title=f"{args.linearity_layer}: attribution per unit")
    viz.save_figure(fig, out / "seed001_linearity.png")

    finish(out, "seed001", record, timer)
    print(f"wrote {out / 'seed001.json'} and figures; metrics: accuracy {record['metrics']['accuracy']}, "
          f"kappa {record['metrics']['quadratic_weighted_kappa']}")
    return record


if __name__ == "__main__":
    main()
