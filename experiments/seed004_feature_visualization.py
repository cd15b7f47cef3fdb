"""Seed 004: activation maps, dead filters, deconvnet reconstructions and Grad-CAM localisation.

Run (scikit-image's retina photograph and a generated fake DRIVE tree unless --drive is given;
--quick: CI-sized):

    python experiments/seed004_feature_visualization.py --out runs/seed004 \
        [--drive ~/DRIVE] [--weights DRIU_DRIVE.caffemodel | orbax_dir]

The seed's three visualisations on DRIU (the project's vessel network; the seed used
mammography, lung-CT and MRI models in Keras): (1) the activation map of every filter of a layer
as one grid image, and dead filters — filters whose activation is zero on every image of a
dataset — counted per layer in one forward pass per image; (2) Zeiler–Fergus deconvnet
reconstructions of single feature maps, all activations and the top-9, projected back to pixels
(transposed convolutions, ReLU on the signal, max-unpooling with switches); (3) Grad-CAM of
Σ vessel probability on the last convolution of the trunk, normalised, resized and overlaid on
the image.  Its two challenges, even kernel sizes and average pooling, are shown on a small
network that has both.  Writes PNG figures and seed004.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import build_model, finish, start  # noqa: E402
from seed000_driu_gradcam import bundled_retina  # noqa: E402

GRID_LAYERS = ("conv1_2", "conv3_3")
DECONV_LAYERS = ("conv1_2", "conv2_2", "conv3_3", "conv4_3")
CAM_LAYER = "conv4_3"


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--drive", help="a DRIVE folder: its test images are the dataset for dead filters")
    p.add_argument("--weights", help="DRIU Caffe weights (.caffemodel) or an Orbax directory")
    p.add_argument("--size", type=int, default=384, help="side of the retina image (the network input)")
    p.add_argument("--channels", type=int, default=4, help="feature maps reconstructed per layer")
    p.add_argument("--top-k", type=int, default=9, help="activations kept in the top-k reconstructions")
    p.add_argument("--out", default="runs/seed004")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.channels = 96, 2
    return args


def even_kernel_avg_pool_net() -> Callable:
    """A small CNN with 4×4 and 2×2 kernels and an average pool (the seed's two challenges)."""
    import flax.linen as nn

    from jaxretina.models.layers import avg_pool_2x2, max_pool_2x2
    from jaxretina.taps import TapPoints

    class EvenNet(nn.Module):
        act: Callable = nn.relu

        @nn.compact
        def __call__(self, x, train=False):
            tap = TapPoints(name="taps")
            h = tap("conv4x4", self.act(nn.Conv(8, (4, 4), padding=((1, 2), (1, 2)), name="conv4x4")(x)))
            h = tap("maxpool", max_pool_2x2(h, ceil_mode=False))
            h = tap("conv2x2", self.act(nn.Conv(8, (2, 2), padding=((0, 1), (0, 1)), name="conv2x2")(h)))
            h = tap("avgpool", avg_pool_2x2(h))
            return h.mean((1, 2))

    return EvenNet()


def main(argv=None):
    args = parse(argv)
    import jax
    import jax.numpy as jnp
    from jaxretina import data, explain, models, preprocess, targets, viz

    out, timer, record = start(args, "004_95a1924f7630cff6")
    model, variables, record["model"] = build_model("driu", models.DRIU(), args, own_init=True)
    rgb, fov = bundled_retina((args.size, args.size))
    x = preprocess.driu_caffe_input(rgb)

    # ---- (1) activation maps of every filter; dead filters over a dataset -------------------
    with timer("activation_maps"):
        for layer in GRID_LAYERS:
            maps = np.asarray(explain.activation_maps(model, variables, x, layer))
            viz.save_png(viz.filter_grid(maps[..., :64]), out / f"seed004_activations_{layer}.png")
    if args.drive:
        src, kind = data.drive_folder(args.drive, "test"), "DRIVE test split"
    else:
        root = out / "fake_drive"
        if not (root / "test" / "mask").is_dir():
            data.make_fake_drive(root, n_train=1, n_test=4, height=args.size, width=args.size, seed=args.seed)
        src, kind = data.drive_folder(root, "test"), "generated fake DRIVE test split"
    dataset = [preprocess.driu_caffe_input(src[k].image)[None] for k in range(len(src))]
    with timer("dead_filters"):
        dead = explain.dead_filters(model, variables, dataset)
    record["dead_filters"] = {"dataset": kind, "images": len(dataset),
                              "per_layer": {k: {"dead": int(v.sum()), "filters": int(v.size),
                                                "indices": np.flatnonzero(v).tolist()[:32]} for k, v in dead.items()}}

    # ---- (2) deconvnet reconstructions of the most active feature maps -----------------------
    rows, titles, recon = [], [], {}
    with timer("deconvnet"):
        peaks = explain.filter_peaks(model, variables, [x[None]], list(DECONV_LAYERS))
        for layer in DECONV_LAYERS:
            chans = [int(c) for c in np.argsort(-np.asarray(peaks[layer]))[: args.channels]]
            whole = np.asarray(explain.deconvnet_reconstruction(model, variables, x, layer, channel=chans))
            top = np.asarray(explain.deconvnet_reconstruction(model, variables, x, layer, channel=chans,
                                                              top_k=args.top_k))
            rows.append([_picture(r) for r in whole] + [_picture(r) for r in top])
            titles.append(layer)
            recon[layer] = {"channels": chans, "max_abs": float(np.abs(whole).max()),
                            "top_k_max_abs": float(np.abs(top).max())}
    cols = [f"map {i + 1}" for i in range(args.channels)]
    cols += [f"map {i + 1}, top {args.top_k}" for i in range(args.channels)]
    viz.save_figure(viz.image_grid(rows, row_titles=titles, col_titles=cols,
                                   title="deconvnet reconstructions (most active maps)"), out / "seed004_deconvnet.png")
    record["deconvnet"] = recon

    small = even_kernel_avg_pool_net()
    z = jnp.asarray(np.asarray(preprocess.resize_image(rgb, 32, 32), np.float32) / 255.0)
    small_vars = jax.jit(small.init)(jax.random.key(args.seed), z[None])
    even = {layer: np.asarray(explain.deconvnet_reconstruction(small, small_vars, z, layer, channel=0))
            for layer in ("conv4x4", "maxpool", "conv2x2", "avgpool")}
    record["even_kernels_and_average_pooling"] = {
        k: {"finite": bool(np.isfinite(v).all()), "max_abs": float(np.abs(v).max())} for k, v in even.items()}

    # ---- (3) Grad-CAM localisation: heat map and overlay -------------------------------------
    with timer("grad_cam"):
        cam = np.asarray(explain.grad_cam(model, variables, x, targets.segmentation_sum(), layers=CAM_LAYER,
                                          normalize=True)[CAM_LAYER])
    cam = np.where(fov, cam, 0)
    panels = [[rgb, viz.heatmap_rgb(cam), viz.overlay(rgb, cam)]]
    viz.save_figure(viz.image_grid(panels, col_titles=["input", f"Grad-CAM {CAM_LAYER}", "overlay"]),
                    out / "seed004_grad_cam.png")
    record["grad_cam"] = {"layer": CAM_LAYER, "target": "segmentation_sum (Σ vessel probability)",
                          "max": float(cam.max()), "fraction_above_half": float((cam > 0.5).mean())}

    finish(out, "seed004", record, timer)
    total_dead = sum(v["dead"] for v in record["dead_filters"]["per_layer"].values())
    print(f"wrote {out / 'seed004.json'} and figures; {total_dead} dead filters over {len(dataset)} images")
    return record


def _picture(r: np.ndarray) -> np.ndarray:
    """A reconstruction (H, W, 3), BGR input space, as an RGB picture: centred, scaled to ±3σ."""
    r = r[..., ::-1].astype(np.float64)
    r = (r - r.mean()) / (3 * r.std() + 1e-12)
    return ((np.clip(r, -1, 1) + 1) * 127.5).round().astype(np.uint8)


if __name__ == "__main__":
    main()
