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
network that has both.  The seed checked its methods on VGG16 and VGG19 with Keras's ImageNet
weights; so does (4) here, on a natural photograph shipped with scikit-image (the cat,
``skimage.data.chelsea()``): activation grids, deconvnet reconstructions and Grad-CAM of the top
class on ``block5_conv3`` / ``block5_conv4``, layers named as in Keras.  Give the weights with
``--vgg-weights vgg16=vgg16_weights_tf_dim_ordering_tf_kernels.h5 --vgg-weights vgg19=...``
(Keras HDF5, read without TensorFlow); without them the networks have random weights, and the
record says so.  Writes PNG figures and seed004.json.
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
# the VGG check: Keras layer names (aliases of jaxretina's torchvision-named taps)
VGG_GRID_LAYERS = ("block1_conv2", "block3_conv3")
VGG_CAM_LAYER = {"vgg16": "block5_conv3", "vgg19": "block5_conv4"}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--drive", help="a DRIVE folder: its test images are the dataset for dead filters")
    p.add_argument("--weights", help="DRIU Caffe weights (.caffemodel) or an Orbax directory")
    p.add_argument("--vgg-weights", action="append", default=[], metavar="vgg16|vgg19=PATH",
                   help="Keras applications' ImageNet weights for the VGG check (repeat for both)")
    p.add_argument("--vgg-size", type=int, default=224, help="side of the photograph for the VGG check")
    p.add_argument("--size", type=int, default=384, help="side of the retina image (the network input)")
    p.add_argument("--channels", type=int, default=4, help="feature maps reconstructed per layer")
    p.add_argument("--top-k", type=int, default=9, help="activations kept in the top-k reconstructions")
    p.add_argument("--out", default="runs/seed004")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    args = p.parse_args(argv)
    if args.quick:
        args.size, args.channels, args.vgg_size = 96, 2, 64
    vgg = {}
    for item in args.vgg_weights:
        name, eq, path = item.partition("=")
        if not eq or name not in VGG_CAM_LAYER:
            p.error(f"--vgg-weights: expected vgg16=PATH or vgg19=PATH; found {item!r}")
        vgg[name] = path
    args.vgg_weights = vgg
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

    record["vgg"] = {name: vgg_check(name, args, out, timer) for name in VGG_CAM_LAYER}

    finish(out, "seed004", record, timer)
    total_dead = sum(v["dead"] for v in record["dead_filters"]["per_layer"].values())
    print(f"wrote {out / 'seed004.json'} and figures; {total_dead} dead filters over {len(dataset)} images")
    return record


def vgg_check(name: str, args, out: Path, timer) -> dict:
    """(4) The seed's VGG check on a natural photograph: activation grids, deconvnet
    reconstructions of the most active maps and Grad-CAM of the top class."""
    import jax.numpy as jnp
    from skimage import data as skdata

    import jaxretina
    from jaxretina import explain, models, preprocess, targets, viz
    from jaxretina.models.vgg import KERAS_CAFFE_NORMALIZATION

    path = args.vgg_weights.get(name)
    if path:
        model, variables = jaxretina.load(name, path)
        weights = {"weights": path, "note": "Keras applications' convention: 0..255 RGB in, logits out"}
    else:
        cls = models.VGG16 if name == "vgg16" else models.VGG19
        model = cls(num_classes=1000, normalization=KERAS_CAFFE_NORMALIZATION, input_bgr=True)
        variables = models.random_variables(model, seed=args.seed)
        weights = {"weights": None, "note": "random weights (no --vgg-weights): the maps show the method, "
                                            "not what ImageNet features look like"}
    photo = preprocess.resize_image(skdata.chelsea(), args.vgg_size, args.vgg_size)
    x = jnp.asarray(np.asarray(photo, np.float32))                     # 0..255 RGB: the model's input
    aliases = model.layer_aliases()
    record = {**weights, "image": "skimage.data.chelsea()", "input": [args.vgg_size, args.vgg_size]}
    with timer(f"{name} check"):
        for layer in VGG_GRID_LAYERS:
            maps = np.asarray(explain.activation_maps(model, variables, x, aliases[layer]))
            viz.save_png(viz.filter_grid(maps[..., :64]), out / f"seed004_{name}_activations_{layer}.png")
        cam_layer = VGG_CAM_LAYER[name]
        peaks = explain.filter_peaks(model, variables, [x[None]], [aliases[cam_layer]])[aliases[cam_layer]]
        chans = [int(c) for c in np.argsort(-np.asarray(peaks))[: args.channels]]
        recon = np.asarray(explain.deconvnet_reconstruction(model, variables, x, aliases[cam_layer], channel=chans))
        logits = np.asarray(model.apply(variables, x[None]))[0]
        top = int(np.argmax(logits))
        cam = np.asarray(explain.grad_cam(model, variables, x, targets.class_logit(top), layers=cam_layer,
                                          normalize=True)[cam_layer])
    rgb = np.asarray(photo, np.uint8)
    panels = [[rgb, viz.heatmap_rgb(cam), viz.overlay(rgb, cam)] + [_picture(r[..., ::-1]) for r in recon]]
    cols = ["input", f"Grad-CAM {cam_layer}, class {top}", "overlay"] + [f"deconvnet map {c}" for c in chans]
    viz.save_figure(viz.image_grid(panels, col_titles=cols, title=f"{name}: {weights['note']}"),
                    out / f"seed004_{name}.png")
    record.update(top_class=top, cam_layer=cam_layer, cam_max=float(cam.max()),
                  deconvnet={"channels": chans, "max_abs": float(np.abs(recon).max())},
                  grid_layers=list(VGG_GRID_LAYERS))
    return record


def _picture(r: np.ndarray) -> np.ndarray:
    """A reconstruction (H, W, 3), BGR input space, as an RGB picture: centred, scaled to ±3σ."""
    r = r[..., ::-1].astype(np.float64)
    r = (r - r.mean()) / (3 * r.std() + 1e-12)
    return ((np.clip(r, -1, 1) + 1) * 127.5).round().astype(np.uint8)


if __name__ == "__main__":
    main()
