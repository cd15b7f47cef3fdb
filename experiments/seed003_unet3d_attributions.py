"""Seed 003: guided backprop, deconvnet, Integrated Gradients and layer-wise guided backprop of
DS6's 3D vessel U-Net, as maximum-intensity projections and slice montages.

Run (a synthetic vessel phantom unless --volume is given; --quick: CI-sized):

    python experiments/seed003_unet3d_attributions.py --out runs/seed003 \
        [--volume sub-01_TOF.nii.gz] [--weights ds6.pth | model.safetensors] [--leaky-slope 0.01]

As in the seed: the U-Net with deep supervision (its main output explained), the volume cut into
64³ patches with overlap, each patch's map divided by its own maximum and the overlaps averaged
(DS6's inference scheme); the target is the seed's segmentation wrapper (argmax per voxel, the
vessel class's score summed over its voxels: ``targets.argmax_score(1)``; ``--target`` picks
``soft_count`` or ``segmentation_sum``).  Figures: the input (Fig. 1), GBP (Fig. 2), deconvnet
(Fig. 3), IG (Fig. 4) overlaid in red, and the MIP of every layer's guided map (Fig. 5).  Maps
are also written as NIfTI next to the figures, and seed003.json holds every number.

Without --weights the network is initialised at random (--width) and, on the phantom, trained
for --train-steps Adam steps on the phantom's own mask (class-balanced binary cross-entropy on
the main output, BatchNorm statistics frozen) so that the maps have something to explain; the numbers then say
nothing about DS6.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, start  # noqa: E402

METHODS = ("guided_backprop", "deconvnet", "integrated_gradients")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/seed003")
    p.add_argument("--volume", help="a NIfTI volume (.nii/.nii.gz), e.g. a 7T TOF-MRA; default: the phantom")
    p.add_argument("--weights", help="DS6 checkpoint: .pth ({'state_dict': ...}) or model.safetensors")
    p.add_argument("--leaky-slope", type=float, default=None, help="the checkpoint's LeakyReLU slope, if any")
    p.add_argument("--width", type=int, default=8, help="base width without --weights (DS6: 64)")
    p.add_argument("--phantom-shape", type=int, nargs=3, default=(96, 64, 64))
    p.add_argument("--patch", type=int, default=64)
    p.add_argument("--overlap", type=float, default=0.5)
    p.add_argument("--batch", type=int, default=1, help="patches per vmap")
    p.add_argument("--target", choices=("argmax_score", "soft_count", "segmentation_sum"), default="argmax_score")
    p.add_argument("--ig-steps", type=int, default=32)
    p.add_argument("--ig-chunk", type=int, default=4)
    p.add_argument("--train-steps", type=int, default=60, help="phantom training without --weights")
    p.add_argument("--learning-rate", type=float, default=3e-3)
    p.add_argument("--axis", type=int, default=1, help="projection axis of the figures (0, 1, 2)")
    p.add_argument("--slices", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    args = p.parse_args(argv)
    if args.quick:
        args.width, args.phantom_shape, args.patch, args.ig_steps, args.ig_chunk = 2, (48, 32, 32), 32, 4, 4
        args.train_steps, args.slices = 3, 4
    return args


def load_volume(args):
    """``(volume (D, H, W, 1) in 0..1, mask or None, affine, description)``."""
    from jaxretina import data

    if args.volume:
        vol = data.read_nifti(args.volume)
        a = vol.array - vol.array.min()
        a = a / a.max() if a.max() > 0 else a     # DS6 scales each volume by its maximum
        return a.astype(np.float32), None, vol.affine, {"kind": "NIfTI", "path": args.volume,
                                                        "shape": list(a.shape[:3]), "zooms": list(vol.zooms)}
    ph = data.vessel_phantom(tuple(args.phantom_shape), seed=args.seed)
    return ph.volume, ph.mask, np.eye(4), {"kind": "vessel phantom", "shape": list(args.phantom_shape),
                                           "vessel_fraction": float(ph.mask.mean()),
                                           "note": "synthetic; numbers say nothing about DS6 on MRA"}


def build(args):
    import jax
    import jax.numpy as jnp
    import jaxretina
    from jaxretina.models import UNet3D

    act = (lambda v: jax.nn.leaky_relu(v, args.leaky_slope)) if args.leaky_slope else jax.nn.relu
    if args.weights:
        model, variables = jaxretina.load("unet3d", args.weights, act=act, deep_supervision=False)
        return model, variables, {"weights": args.weights, "base_width": model.base_width}
    model = UNet3D(base_width=args.width, act=act, deep_supervision=False)
    variables = jax.jit(model.init)(jax.random.key(args.seed), jnp.zeros((1, 16, 16, 16, 1)))
    return model, variables, {"weights": None, "base_width": args.width, "note": "random initialisation"}


def train_on_phantom(model, variables, volume, mask, args):
    """A few Adam steps of class-balanced binary cross-entropy on random patches (BatchNorm
    statistics frozen)."""
    import jax
    import jax.numpy as jnp
    import optax
    from jaxretina import taps

    variables = taps.params_only(variables)  # no tap-point collections sized for init's input
    params, rest = variables["params"], {k: v for k, v in variables.items() if k != "params"}
    opt = optax.adam(args.learning_rate)
    state = opt.init(params)
    p = args.patch

    # vessels are ~2 % of the voxels: weight them so both classes count equally (else the net
    # learns "no vessel anywhere" first and the argmax target has nothing to explain)
    pos_weight = float(0.5 / max(mask.mean(), 1e-3))
    neg_weight = float(0.5 / max(1 - mask.mean(), 1e-3))

    @jax.jit
    def step(params, state, x, y):
        def loss(params):
            logits = model.apply({"params": params, **rest}, x)
            weights = jnp.where(y > 0, pos_weight, neg_weight)
            return (weights * optax.sigmoid_binary_cross_entropy(logits, y)).mean()

        value, grads = jax.value_and_grad(loss)(params)
        with jax.numpy_dtype_promotion("standard"):
            updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    rng = np.random.default_rng(args.seed)
    target = mask[..., None].astype(np.float32)
    losses = []
    for _ in range(args.train_steps):
        o = [rng.integers(0, n - p + 1) for n in volume.shape[:3]]
        cut = tuple(slice(s, s + p) for s in o)
        params, state, value = step(params, state, jnp.asarray(volume[cut])[None], jnp.asarray(target[cut])[None])
        losses.append(float(value))
    return {"params": params, **rest}, losses


def dice(pred: np.ndarray, mask: np.ndarray) -> float:
    inter = np.logical_and(pred, mask).sum()
    return float(2 * inter / max(pred.sum() + mask.sum(), 1))


def mass_in(attribution: np.ndarray, mask: np.ndarray) -> float:
    a = np.abs(attribution).reshape(mask.shape)
    return float(a[mask].sum() / max(a.sum(), 1e-30))


def main(argv=None):
    args = parse(argv)
    import jax
    from jaxretina import data, explain, targets, views, viz, volumes

    out, timer, record = start(args, "003_7f7fa0aa1a6c0032")
    volume, mask, affine, record["data"] = load_volume(args)
    if min(volume.shape[:3]) < args.patch:
        args.patch = 16 * (min(volume.shape[:3]) // 16)
    model, variables, record["model"] = build(args)
    if not args.weights and mask is not None and args.train_steps:
        with timer("train"):
            variables, losses = train_on_phantom(model, variables, volume, mask, args)
        record["training"] = {"steps": len(losses), "first_losses": losses[:3], "last_losses": losses[-3:]}
    window = dict(patch=args.patch, overlap=args.overlap, batch=args.batch)
    record["window"] = {**window, "patches": int(len(volumes.patch_origins(
        [max(n, args.patch) for n in volume.shape[:3]], args.patch, args.overlap)))}

    with timer("predict"):
        prob = np.asarray(volumes.predict(model, variables, volume, normalize=None, **window))[..., 0]
    record["segmentation"] = {"vessel_fraction_predicted": float((prob > 0.5).mean())}
    if mask is not None:
        record["segmentation"]["dice"] = dice(prob > 0.5, mask)

    target = {"argmax_score": targets.argmax_score(1), "soft_count": targets.soft_count(1),
              "segmentation_sum": targets.segmentation_sum()}[args.target]
    record["target"] = repr(target)
    if args.target == "argmax_score" and not (prob > 0.5).any():
        record["warning"] = ("no voxel is segmented as vessel: argmax_score(1) is 0 with zero gradient and every "
                             "map is 0 (train longer, or use --target soft_count)")
        print(record["warning"], flush=True)
    options = {"integrated_gradients": dict(baseline=0.0, steps=args.ig_steps, chunk=args.ig_chunk)}
    maps = {}
    for method in METHODS:
        with timer(method):
            maps[method] = np.asarray(volumes.attribute(method, model, variables, volume, target, **window,
                                                        **options.get(method, {})))
    with timer("layerwise_guided_backprop"):
        layer_maps = np.asarray(volumes.attribute("layerwise_guided_backprop", model, variables, volume, **window))
    names = model.layer_names()

    # completeness of IG on the first patch (the whole-volume map is normalised per patch)
    first = volume[: args.patch, : args.patch, : args.patch]
    ig = explain.integrated_gradients(explain.model_fn(model, variables, target), first, **options[
        "integrated_gradients"])
    record["ig_first_patch"] = {"delta": float(ig.delta), "sum": float(ig.values.sum()), "steps": args.ig_steps}

    # figures: Fig. 1-4 as [MIP | montage], Fig. 5 the MIP of every layer's map
    panel = dict(axis=args.axis, slices=args.slices)
    viz.save_png(views.volume_panel(volume, **panel), out / "seed003_input.png")
    for method in METHODS:
        viz.save_png(views.volume_panel(volume, maps[method], **panel), out / f"seed003_{method}.png")
        data.write_nifti(out / f"seed003_{method}.nii.gz", maps[method], affine=affine)
    mips = [views.red_overlay(views.mip(volume, args.axis), views.mip(views.unit_scale(m), args.axis))
            for m in layer_maps]
    mips.append(views.red_overlay(views.mip(volume, args.axis), views.mip(prob, args.axis)))
    cols = 6
    rows = [mips[i:i + cols] for i in range(0, len(mips), cols)]
    titles = list(names) + ["output"]
    fig = viz.image_grid(rows, title="Layer-wise guided backprop (MIP), then the output")
    for ax, title in zip(fig.axes, titles):
        ax.set_title(title, fontsize=8)
    viz.save_figure(fig, out / "seed003_layerwise_gbp.png")
    data.write_nifti(out / "seed003_layerwise_gbp.nii.gz", layer_maps, affine=affine)

    # numbers: agreement between methods (the seed: "similar focus areas"), mass on vessels
    flat = {m: np.abs(maps[m]).ravel() for m in METHODS}
    record["agreement"] = {f"{a}~{b}": float(np.corrcoef(flat[a], flat[b])[0, 1]) if flat[a].std() * flat[b].std()
                           else None for i, a in enumerate(METHODS) for b in METHODS[i + 1:]}
    record["methods"] = {m: {"max_abs": float(np.abs(maps[m]).max()), "mean_abs": float(np.abs(maps[m]).mean())}
                         for m in METHODS}
    record["layers"] = {n: {"max_abs": float(np.abs(layer_maps[i]).max())} for i, n in enumerate(names)}
    if mask is not None:
        for m in METHODS:
            record["methods"][m]["mass_on_vessels"] = mass_in(maps[m], mask)
        for i, n in enumerate(names):
            record["layers"][n]["mass_on_vessels"] = mass_in(layer_maps[i], mask)
        record["chance_mass_on_vessels"] = float(mask.mean())
    record["devices"] = [str(d) for d in jax.devices()]
    path = finish(out, "seed003", record, timer)
    print(f"wrote {path} and figures in {out}")


if __name__ == "__main__":
    main()
