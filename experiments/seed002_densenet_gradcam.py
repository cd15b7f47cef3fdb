"""Seed 002: a DenseNet121 DR grader and why Grad-CAM on its last dense block misses small lesions.

Run (a generated fake dataset, with lesion masks, unless --data/--folder/--tfds-dir is given;
--quick: CI-sized):

    python experiments/seed002_densenet_gradcam.py --out runs/seed002 \
        [--data ~/eyepacs] [--weights densenet121-a639ec97.pth | tuned_orbax_dir] [--masks lesion_masks/]

As in the seed: ImageNet DenseNet121 with a new 5-way classifier; the classifier and the last
three dense layers of block 4 train (Adam, learning rate 1e-4, cross-entropy), batches drawn with
per-grade oversampling weights w = [0.1, 1, 0.5, 3, 4] and random rotations, flips, shifts,
grayscale and colour jitter; a stratified 80/20 split; sensitivity,
specificity (referable split) and accuracy; Grad-CAM of the predicted grade on the last dense
block (7×7 at 224×224) upsampled to the input; and, per image, how much of the image one CAM
cell covers against the lesions' areas (masks: --masks, PNGs named like the images; the fake
dataset brings its own).  Writes PNG figures and seed002.json.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_data_args, build_model, finish, open_sources, start  # noqa: E402

LAYER = "denseblock4"


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_args(p)
    p.add_argument("--weights", help="torchvision densenet121 .pth (ImageNet; the classifier is new) or an Orbax "
                                     "directory saved by this script")
    p.add_argument("--masks", help="folder of lesion masks <image name>.png (nonzero = lesion)")
    p.add_argument("--train-steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32, help="the seed used 256")
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--size", type=int, default=224, help="network input (the seed: 224)")
    p.add_argument("--cams", type=int, default=8, help="images explained with Grad-CAM")
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    args = p.parse_args(argv)
    if args.quick:
        args.train_steps, args.batch_size, args.size, args.cams, args.fake_per_class = 4, 8, 96, 4, 4
        args.learning_rate = 1e-3
    return args


def lesion_mask(args, data_desc, name, shape_hw):
    """The image's lesion mask at the network's input geometry, or None."""
    from PIL import Image
    from jaxretina import data

    folder = Path(args.masks) if args.masks else (
        Path(data_desc["path"]) / "masks" if data_desc["kind"] == "generated fake dataset" else None)
    if folder is None:
        return None
    path = next((p for p in (folder / f"{name}.png", folder / f"{name}.tif") if p.exists()), None)
    if path is None:
        return None
    mask = np.asarray(Image.open(path).convert("L")) > 0
    square = data.square_resize(np.repeat(mask[..., None].astype(np.uint8) * 255, 3, -1), shape_hw[0])
    return square[..., 0] > 127


def main(argv=None):
    args = parse(argv)
    import jax
    import jax.numpy as jnp
    import jaxretina
    from jaxretina import data, explain, metrics, models, preprocess, targets, train, viz

    out, timer, record = start(args, "002_292ae905e3c4168a")
    train_src, _, record["data"] = open_sources(args, eval_split=False)
    train_src, test_src = data.split(train_src, 0.8, seed=args.seed)       # the seed: 80 % / 20 %
    record["data"].update(train=len(train_src), test=len(test_src), evaluation="stratified 20 %",
                          train_grades=np.bincount(train_src.labels, minlength=5).tolist())
    grader = models.DenseNet121(num_classes=5, normalization=preprocess.imagenet_normalization(255.0))
    model, variables, record["model"] = build_model("densenet121", grader, args)

    trainer = train.Trainer(model, variables, trainable=train.SEED002_TRAINABLE, learning_rate=args.learning_rate,
                            preprocess=train.resize_to(args.size), augment=train.augment_fundus, seed=args.seed)
    order = lambda start: data.weighted(train_src.labels, data.SEED002_WEIGHTS, args.batch_size,  # noqa: E731
                                        seed=args.seed, start=start)
    with timer("train"):
        state, history = trainer.fit(train_src, order, steps=args.train_steps, size=args.size,
                                     progress=not args.quick, checkpoint_every=args.checkpoint_every,
                                     checkpoint_dir=None if args.quick else out / "checkpoints")
    record["training"] = {"steps": len(history), "trainable": list(train.SEED002_TRAINABLE),
                          "augmentation": "rotation, flips, translation, grayscale, brightness/contrast",
                          "sampling_weights": list(data.SEED002_WEIGHTS),
                          "first_losses": [h["loss"] for h in history[:5]],
                          "last_losses": [h["loss"] for h in history[-5:]]}
    variables = trainer.variables(state)
    if args.train_steps:
        shutil.rmtree(out / "tuned", ignore_errors=True)
        jaxretina.save("densenet121", model, variables, out / "tuned", extra={"seed": "002", "steps": len(history)})
    with timer("evaluate"):
        ev = trainer.evaluate(state, test_src, batch_size=args.batch_size, size=args.size)
    record["metrics"] = metrics.report(ev["labels"], ev["probabilities"])

    # Grad-CAM of the predicted grade on the last dense block, a batch of images in one program
    pick = np.argsort(-ev["labels"], kind="stable")[: args.cams]         # the most severe grades first
    examples = [test_src[int(i)] for i in pick]
    xs = jnp.asarray(np.stack([data.square_resize(ex.image, args.size) for ex in examples]), jnp.float32)
    preds = ev["predictions"][pick]

    def cam_of(x, c):
        target = targets.Target(lambda out: out[c], "predicted grade logit")
        return explain.grad_cam(model, variables, x, target, layers=LAYER, resize=False, relu=False,
                                normalize=False)[LAYER]

    with timer("grad_cam"):
        raw = jax.jit(jax.vmap(cam_of))(xs, jnp.asarray(preds))                  # (B, h, w) signed
    up = jax.image.resize(jax.nn.relu(raw), (raw.shape[0], args.size, args.size), method="linear")
    per_image, panels = [], []
    for ex, x, cam, cam_up, p in zip(examples, np.asarray(xs), np.asarray(raw), np.asarray(up), preds):
        mask = lesion_mask(args, record["data"], ex.name, (args.size, args.size))
        cov = explain.cam_coverage(x.shape, cam, lesion_mask=mask)
        per_image.append({"name": ex.name, "grade": ex.label, "predicted": int(p), **cov._asdict()})
        row = [x.astype(np.uint8), viz.overlay(x.astype(np.uint8), cam_up)]
        if mask is not None:
            outline = x.astype(np.uint8).copy()
            outline[mask] = (255, 255, 0)
            row.append(outline)
        panels.append(row)
    touched = [r for r in per_image if r["lesions"]]
    record["grad_cam"] = {
        "layer": LAYER, "cam_shape": list(raw.shape[1:]), "input": [args.size, args.size],
        "cell_pixels": per_image[0]["cell_shape"] if per_image else None,
        "cell_fraction": per_image[0]["cell_fraction"] if per_image else None,
        "images": per_image,
        "summary": None if not touched else {
            "images_with_lesions": len(touched),
            "median_lesion_area_over_cell": float(np.median([r["median_lesion_over_cell"] for r in touched])),
            "mean_cam_mass_in_lesions": float(np.mean([r["cam_mass_in_lesions"] for r in touched])),
            "mean_lesion_fraction (chance level)": float(np.mean([r["lesion_fraction"] for r in touched])),
            "peak_in_lesion_rate": float(np.mean([r["peak_in_lesion"] for r in touched])),
        },
    }
    cols = ["input", f"Grad-CAM {LAYER} ({raw.shape[1]}×{raw.shape[2]})"] + (["lesion mask"] if touched else [])
    fig = viz.image_grid(panels, col_titles=cols,
                         row_titles=[f"{ex.name} g{ex.label}→{p}" for ex, p in zip(examples, preds)])
    viz.save_figure(fig, out / "seed002_grad_cam.png")

    finish(out, "seed002", record, timer)
    print(f"wrote {out / 'seed002.json'} and figures; accuracy {record['metrics']['accuracy']}, one CAM cell = "
          f"{record['grad_cam']['cell_fraction']:.3%} of the image")
    return record


if __name__ == "__main__":
    main()
