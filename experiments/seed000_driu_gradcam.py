"""Seed 000: DRIU retrained on DRIVE, signed Grad-CAM of every layer, and the layer-scaling intervention.

Run (a generated fake DRIVE tree plus scikit-image's retina unless --drive/--tfds-dir is given;
--quick: CI-sized):

    python experiments/seed000_driu_gradcam.py --out runs/seed000 \
        [--drive ~/DRIVE] [--weights DRIU_DRIVE.caffemodel | retrained_orbax_dir] [--train-steps 20000]

As in the seed: DRIVE images preprocessed (green channel, Gaussian σ = 1 radius 2, × FOV mask,
min–max normalised and inverted, illumination equalised); DRIU (from the Caffe weights when
given) retrained end to end with BCE and Adam, one image per step, lr 1e-6 decaying; masked
mIoU (vessel and background IoU averaged, inside the FOV mask eroded by one pixel) with
accuracy, sensitivity, specificity and AUC on the test split; signed Grad-CAM of every layer
for Σ vessel probability (green positive, red negative); then each of the maps the fuse layer
reads (conv1_2_16, upsample2, upsample4, upsample8) multiplied by c over a grid, every test
image, one compiled program — the table and plot of mean mIoU against c (the seed: 0.7502
unchanged, 0.7674 with upsample2 raised).  Writes PNG figures and seed000.json.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import build_model, finish, start, write_json  # noqa: E402

FUSED = ("conv1_2_16", "upsample2", "upsample4", "upsample8")
GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_drive_args(p)
    p.add_argument("--weights", help="DRIU Caffe weights (.caffemodel) or an Orbax directory saved by this script")
    p.add_argument("--train-steps", type=int, default=20000, help="the seed: 20 000 iterations of one image")
    p.add_argument("--learning-rate", type=float, default=1e-6, help="initial rate; decays to a tenth")
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--region", choices=("image", "fov"), default="image", help="pixels in the BCE loss")
    p.add_argument("--scales", type=float, nargs="+", default=list(GRID), help="the grid of c")
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    args = p.parse_args(argv)
    if args.quick:
        args.train_steps, args.learning_rate, args.scales = 3, 1e-4, [0.5, 1.0, 2.0]
    return args


def add_drive_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data (default: a generated fake DRIVE tree)")
    g.add_argument("--drive", help="a DRIVE folder (training/ and test/ with images, 1st_manual, mask)")
    g.add_argument("--tfds-dir", help="TFDS data_dir of the 'drive' builder (prepared from --drive if needed)")
    g.add_argument("--fake-size", type=int, nargs=2, default=(72, 64), help="fake tree: image height, width")
    p.add_argument("--out", default="runs/seed000", help="output folder (figures, JSON)")
    p.add_argument("--seed", type=int, default=0)


def open_drive(args) -> tuple[object, object, dict]:
    """``(train, test, description)`` DRIVE sources."""
    from jaxretina import data

    if args.tfds_dir:
        return (data.drive_tfds(args.tfds_dir, "train", manual_dir=args.drive),
                data.drive_tfds(args.tfds_dir, "test", manual_dir=args.drive),
                {"kind": "tfds drive", "path": args.tfds_dir})
    if args.drive:
        return data.drive_folder(args.drive, "training"), data.drive_folder(args.drive, "test"), {
            "kind": "DRIVE folder", "path": str(Path(args.drive).expanduser().resolve())}
    root = Path(args.out) / "fake_drive"
    if not (root / "test" / "mask").is_dir():
        data.make_fake_drive(root, n_train=4, n_test=3, height=args.fake_size[0], width=args.fake_size[1],
                             seed=args.seed)
    return data.drive_folder(root, "training"), data.drive_folder(root, "test"), {
        "kind": "generated fake DRIVE tree", "path": str(root.resolve()),
        "note": "synthetic images; the numbers say nothing about real vessel segmentation"}


def bundled_retina(shape_hw):
    """scikit-image's retina photograph at ``shape_hw`` with its field-of-view mask (non-black)."""
    from skimage import data as skdata, transform

    rgb = (transform.resize(skdata.retina(), shape_hw, anti_aliasing=True) * 255).astype(np.uint8)
    return rgb, rgb.mean(-1) > 15


def main(argv=None):
    args = parse(argv)
    import jax
    import jax.numpy as jnp
    import jaxretina
    from jaxretina import explain, intervention, models, preprocess, targets, train, viz

    out, timer, record = start(args, "000_e83c154d44814419")
    train_src, test_src, record["data"] = open_drive(args)
    record["data"].update(train=len(train_src), test=len(test_src))
    model, variables, record["model"] = build_model("driu", models.DRIU(), args, own_init=True)
    shape = test_src[0].image.shape[:2]
    record["preprocessing"] = {"steps": ["green", "gaussian sigma=1 radius=2", "x FOV mask", "min-max, 1 - I",
                                         f"I + M - mean_w(I), w={preprocess.SEED000_WINDOW}, M=128/255"],
                               "driu_input": "255 * I_eq in 3 channels minus the DRIU Caffe mean"}

    # ---- retraining: BCE, Adam, one image per step ------------------------------------------
    trainer = train.SegmentationTrainer(
        model, variables, region=args.region, seed=args.seed,
        learning_rate=train.seed000_schedule(max(args.train_steps, 1), learning_rate=args.learning_rate))
    from jaxretina import data

    order = lambda s: data.shuffled(len(train_src), 1, seed=args.seed, start=s)  # noqa: E731
    with timer("train"):
        state, history = trainer.fit(train_src, order, steps=args.train_steps, progress=not args.quick,
                                     checkpoint_every=args.checkpoint_every,
                                     checkpoint_dir=None if args.quick else out / "checkpoints")
    variables = trainer.variables(state)
    record["training"] = {"steps": len(history), "loss": "BCE", "region": args.region,
                          "learning_rate": args.learning_rate, "first_losses": [h["loss"] for h in history[:5]],
                          "last_losses": [h["loss"] for h in history[-5:]]}
    if args.train_steps:
        shutil.rmtree(out / "retrained", ignore_errors=True)
        jaxretina.save("driu", model, variables, out / "retrained", extra={"seed": "000", "steps": len(history)})

    with timer("evaluate"):
        ev = trainer.evaluate(state, test_src)
    record["metrics"] = ev["report"]

    # ---- signed Grad-CAM of every layer, Σ vessel probability --------------------------------
    target = targets.segmentation_sum()

    def cam(x):  # every layer from one forward and one backward pass (compiled once per shape)
        return explain.grad_cam(model, variables, x, target, relu=False)

    panels = {}
    ex = test_src[0]
    retina, retina_mask = bundled_retina(shape)
    with timer("grad_cam"):
        for label, (rgb, mask) in (("test image " + ex.name, (ex.image, ex.mask)),
                                   ("skimage retina", (retina, retina_mask))):
            cams = {k: np.asarray(v) for k, v in cam(preprocess.seed000_driu_input(rgb, mask)).items()}
            panels[label] = cams
            fig = viz.layer_grid(cams, image=rgb, signed=True, title=f"signed Grad-CAM per layer — {label}")
            viz.save_figure(fig, out / f"seed000_grad_cam_{'test' if label.startswith('test') else 'retina'}.png")
    first = panels["test image " + ex.name]
    record["grad_cam"] = {
        "target": target.description, "layers": list(first),
        "positive_share_on_vessels": {  # how much of each layer's positive CAM mass lies on labelled vessels
            k: float(np.maximum(v, 0)[ex.vessels].sum() / max(np.maximum(v, 0).sum(), 1e-12))
            for k, v in first.items()},
        "vessel_fraction": float(ex.vessels.mean())}

    # ---- the intervention: scale one fused map by c, every test image, one program ----------
    images, vessels, masks = test_src.arrays()
    xs = preprocess.seed000_driu_input(images, masks)
    with timer("intervention"):
        sweep = intervention.scaling_sweep(model, variables, xs, vessels, masks, FUSED, args.scales)
    edit_diff = float(jnp.abs(intervention.scale_layer(model, variables, xs[:1], "upsample2", 1.5)
                              - model.apply(intervention.fuse_weight_edit(model, variables, "upsample2", 1.5),
                                            xs[:1])).max())
    record["intervention"] = {"c": list(map(float, sweep.cs)), "layers": list(FUSED),
                              "baseline_mean_miou": float(sweep.baseline.mean()), "mean_miou": sweep.table(),
                              "best": {k: {"c": c, "mean_miou": m} for k, (c, m) in sweep.best().items()},
                              "functional_vs_weight_edit_max_abs_diff": edit_diff,
                              "seed_reported": {"unchanged": 0.7502, "upsample2_raised": 0.7674}}
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for i, name in enumerate(sweep.layers):
        ax.plot(sweep.cs, sweep.miou[i].mean(-1), marker="o", label=name)
    ax.axhline(sweep.baseline.mean(), color="gray", ls="--", lw=1, label="unchanged")
    ax.set_xlabel("c (feature map × c before the fuse layer)")
    ax.set_ylabel("mean masked mIoU")
    ax.legend(fontsize=8)
    fig.tight_layout()
    viz.save_figure(fig, out / "seed000_intervention.png")
    write_json(out / "seed000_intervention_table.json", sweep.table())

    finish(out, "seed000", record, timer)
    print(f"wrote {out / 'seed000.json'} and figures; mean mIoU {record['metrics']['mean_miou']:.4f}, best "
          + ", ".join(f"{k} c={v['c']}: {v['mean_miou']:.4f}" for k, v in record["intervention"]["best"].items()))
    return record


if __name__ == "__main__":
    main()
