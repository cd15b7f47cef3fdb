"""Seed 002: DenseNet121, ResNet101 and VGG16 DR graders trained by one recipe (Table 1), and why
Grad-CAM on the last block misses small lesions.

Run (a generated fake dataset, with lesion masks, unless --data/--folder/--tfds-dir is given;
--quick: CI-sized):

    python experiments/seed002_densenet_gradcam.py --out runs/seed002 [--data ~/eyepacs] \
        [--weights densenet121=densenet121-a639ec97.pth --weights resnet101=resnet101-63fe2227.pth \
         --weights vgg16=vgg16-397923af.pth] [--networks densenet121,resnet101,vgg16] [--masks lesion_masks/]

As in the seed: ImageNet networks with a new 5-way classifier; the classifier and the last block
containing convolutions train (DenseNet121: the last three dense layers of block 4; ResNet101:
``layer4``; VGG16: block 5's convolutions and the classifier —
``train.SEED002_TRAINABLE_BY_MODEL``), the hyperparameters identical: Adam, learning rate 1e-4,
cross-entropy, batches drawn with per-grade oversampling weights w = [0.1, 1, 0.5, 3, 4] and
random rotations, flips, shifts, grayscale and colour jitter; a stratified 80/20 split;
sensitivity, specificity (referable split) and accuracy per network (the seed's Table 1,
``seed002_table1.md``); Grad-CAM of the predicted grade on each network's last block (7×7 at
224×224 for DenseNet121 and ResNet101, 14×14 for VGG16's last conv) upsampled to the input;
and, per image, how much of the image one CAM cell covers against the lesions' areas (masks:
--masks, PNGs named like the images; the fake dataset brings its own).  Writes PNG figures and
seed002.json (DenseNet121's record at the top level, every network's under ``networks``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_data_args, build_model, finish, open_sources, start  # noqa: E402

# network -> (model class in jaxretina.models, the last block Grad-CAM explains)
NETWORKS = {"densenet121": ("DenseNet121", "denseblock4"), "resnet101": ("ResNet101", "layer4"),
            "vgg16": ("VGG16", "features.29")}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_args(p)
    p.add_argument("--weights", action="append", default=[], metavar="[NETWORK=]PATH",
                   help="torchvision ImageNet .pth (the classifier is new) or an Orbax directory saved by this "
                        "script, per network (a bare path: densenet121); repeat for several")
    p.add_argument("--networks", default=",".join(NETWORKS), help=f"comma-separated, of {list(NETWORKS)}")
    p.add_argument("--masks", help="folder of lesion masks <image name>.png (nonzero = lesion)")
    p.add_argument("--train-steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32, help="the seed used 256")
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--size", type=int, default=224, help="network input (the seed: 224)")
    p.add_argument("--cams", type=int, default=8, help="images explained with Grad-CAM")
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    args = p.parse_args(argv)
    args.networks = [n.strip() for n in args.networks.split(",") if n.strip()]
    unknown = [n for n in args.networks if n not in NETWORKS]
    if unknown or not args.networks:
        p.error(f"--networks: expected some of {list(NETWORKS)}; found {args.networks}")
    weights = {}
    for item in args.weights:
        name, eq, path = item.partition("=")
        weights[name if eq else "densenet121"] = path if eq else item
    args.weights = weights
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
    from jaxretina import data

    out, timer, record = start(args, "002_292ae905e3c4168a")
    train_src, _, record["data"] = open_sources(args, eval_split=False)
    train_src, test_src = data.split(train_src, 0.8, seed=args.seed)       # the seed: 80 % / 20 %
    record["data"].update(train=len(train_src), test=len(test_src), evaluation="stratified 20 %",
                          train_grades=np.bincount(train_src.labels, minlength=5).tolist())
    networks = {name: run_network(name, args, out, timer, record["data"], train_src, test_src)
                for name in args.networks}
    record["networks"] = networks
    record.update(networks.get("densenet121", next(iter(networks.values()))))
    record["table1"] = {name: {"sensitivity": r["metrics"]["referable"]["sensitivity"],
                               "specificity": r["metrics"]["referable"]["specificity"],
                               "accuracy": r["metrics"]["accuracy"]} for name, r in networks.items()}
    lines = ["| network | sensitivity | specificity | accuracy |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {_pct(row['sensitivity'])} | {_pct(row['specificity'])} | {_pct(row['accuracy'])} |"
              for name, row in record["table1"].items()]
    (out / "seed002_table1.md").write_text("Table 1 (referable split; " + record["data"]["kind"] + ")\n\n"
                                           + "\n".join(lines) + "\n")
    finish(out, "seed002", record, timer)
    print("\n".join(lines))
    print(f"wrote {out / 'seed002.json'}, seed002_table1.md and figures; one CAM cell of "
          f"{next(iter(networks))} = {record['grad_cam']['cell_fraction']:.3%} of the image")
    return record


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.0f} %"


def run_network(name, args, out, timer, data_desc, train_src, test_src) -> dict:
    """Train, evaluate and explain one network by the seed's recipe; its part of the record."""
    import jax
    import jax.numpy as jnp
    import jaxretina
    from jaxretina import data, explain, metrics, models, preprocess, targets, train, viz

    cls, layer = NETWORKS[name]
    record = {}
    grader = getattr(models, cls)(num_classes=5, normalization=preprocess.imagenet_normalization(255.0))
    model, variables, record["model"] = build_model(name, grader, args, weights=args.weights.get(name))
    trainable = train.SEED002_TRAINABLE_BY_MODEL[name]
    trainer = train.Trainer(model, variables, trainable=trainable, learning_rate=args.learning_rate,
                            preprocess=train.resize_to(args.size), augment=train.augment_fundus, seed=args.seed)
    order = lambda start: data.weighted(train_src.labels, data.SEED002_WEIGHTS, args.batch_size,  # noqa: E731
                                        seed=args.seed, start=start)
    with timer(f"{name} train"):
        state, history = trainer.fit(train_src, order, steps=args.train_steps, size=args.size,
                                     progress=not args.quick, checkpoint_every=args.checkpoint_every,
                                     checkpoint_dir=None if args.quick else out / "checkpoints" / name)
    record["training"] = {"steps": len(history), "trainable": list(trainable),
                          "augmentation": "rotation, flips, translation, grayscale, brightness/contrast",
                          "sampling_weights": list(data.SEED002_WEIGHTS),
                          "first_losses": [h["loss"] for h in history[:5]],
                          "last_losses": [h["loss"] for h in history[-5:]]}
    variables = trainer.variables(state)
    if args.train_steps:
        tuned = out / "tuned" if name == "densenet121" else out / f"tuned_{name}"
        shutil.rmtree(tuned, ignore_errors=True)
        jaxretina.save(name, model, variables, tuned, extra={"seed": "002", "steps": len(history)})
    with timer(f"{name} evaluate"):
        ev = trainer.evaluate(state, test_src, batch_size=args.batch_size, size=args.size)
    record["metrics"] = metrics.report(ev["labels"], ev["probabilities"])

    # Grad-CAM of the predicted grade on the last block, a batch of images in one program
    pick = np.argsort(-ev["labels"], kind="stable")[: args.cams]         # the most severe grades first
    examples = [test_src[int(i)] for i in pick]
    xs = jnp.asarray(np.stack([data.square_resize(ex.image, args.size) for ex in examples]), jnp.float32)
    preds = ev["predictions"][pick]

    def cam_of(v, x, c):
        target = targets.Target(lambda out: out[c], "predicted grade logit")
        return explain.grad_cam(model, v, x, target, layers=layer, resize=False, relu=False,
                                normalize=False)[layer]

    with timer(f"{name} grad_cam"):   # the variables are an argument: data, not constants in the program
        raw = jax.jit(jax.vmap(cam_of, in_axes=(None, 0, 0)))(variables, xs, jnp.asarray(preds))  # (B, h, w)
    up = jax.image.resize(jax.nn.relu(raw), (raw.shape[0], args.size, args.size), method="linear")
    per_image, panels = [], []
    for ex, x, cam, cam_up, p in zip(examples, np.asarray(xs), np.asarray(raw), np.asarray(up), preds):
        mask = lesion_mask(args, data_desc, ex.name, (args.size, args.size))
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
        "layer": layer, "cam_shape": list(raw.shape[1:]), "input": [args.size, args.size],
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
    cols = ["input", f"{name} Grad-CAM {layer} ({raw.shape[1]}×{raw.shape[2]})"] + (["lesion mask"] if touched else [])
    fig = viz.image_grid(panels, col_titles=cols,
                         row_titles=[f"{ex.name} g{ex.label}→{p}" for ex, p in zip(examples, preds)])
    viz.save_figure(fig, out / ("seed002_grad_cam.png" if name == "densenet121" else f"seed002_grad_cam_{name}.png"))
    return record


if __name__ == "__main__":
    main()
