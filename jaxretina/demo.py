"""The demo behind ``make demo``: all-layer Grad-CAM and Integrated Gradients of DRIU on a fundus.

On scikit-image's bundled ``retina.jpg`` (or ``--image``), resized so its longer side is
``--size``, with DRIU's official preprocessing, it explains the vessel-probability sum:

* Grad-CAM of every layer (one forward + one backward pass), signed (green/red) and ReLU-ed;
* Integrated Gradients (``--steps``, Gauss–Legendre, black-image baseline, ``--chunk``);

and writes PNGs plus ``summary.json`` (layers and their shapes, compile and run times, the IG
completeness error) to ``--out``.  Without ``--weights`` the network has its deterministic
initialisation (seed 0), which every title and the summary state.  It says what it is doing
(and compiling) as it goes, with a progress bar over IG's steps.

Command::

    jaxretina demo --out out/demo --size 384 --steps 16
"""

from __future__ import annotations

import functools
import json
import os
import platform
import time
from typing import Any

import numpy as np
import jax
import jax.numpy as jnp

from jaxretina import explain, preprocess, targets, taps, viz
from jaxretina.models import DRIU
from jaxretina.timing import Stopwatch

__all__ = ["run_demo", "load_image"]


def load_image(path: str | None) -> tuple[np.ndarray, str]:
    """RGB uint8 image from ``path``, or scikit-image's bundled ``retina.jpg``."""
    if path is None:
        from skimage import data

        return np.asarray(data.retina()), "skimage.data.retina() (retina.jpg)"
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")), os.path.abspath(path)


def _fit_size(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    scale = size / max(h, w)
    if scale == 1:
        return image
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    return np.asarray(preprocess.resize_image(image, nh, nw))


def _model_and_variables(weights, variant):
    if weights is None:
        model = DRIU(variant=variant or "vessel")
        variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 64, 64, 3), jnp.float32))
        return model, variables, "deterministic initialisation (jax.random.key(0)), not trained"
    from jaxretina.loading import load

    model, variables = load("driu", weights, **({"variant": variant} if variant else {}))
    return model, variables, f"weights from {os.path.abspath(weights)}"


@functools.partial(jax.jit, static_argnums=0)
def _probability(model, variables, x):
    return jax.nn.sigmoid(taps.tap_functions(model).forward(variables, x[None])[0, ..., 0])


def run_demo(
    *,
    out: str = "out/demo",
    size: int = 384,
    steps: int = 16,
    chunk: int | str | None = 8,
    weights: str | None = None,
    image: str | None = None,
    variant: str | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Run the demo; returns the summary it writes to ``out/summary.json``.  ``verbose``: say
    what it is doing (and compiling) as it goes, with a progress bar over IG's steps."""
    from jaxretina.compilation_cache import CompileCount

    started = time.perf_counter()
    say = (lambda text: print(f"[{time.perf_counter() - started:5.1f} s] {text}", flush=True)) if verbose else (
        lambda text: None)
    with CompileCount() as count:
        summary = _run(out, size, steps, chunk, weights, image, variant, say, verbose)
    summary["xla"] = {**count.as_dict(), "cache_dir": jax.config.jax_compilation_cache_dir or None}
    summary["wall_s"] = round(time.perf_counter() - started, 3)
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=2)
    return summary


def _run(out, size, steps, chunk, weights, image, variant, say, verbose) -> dict[str, Any]:
    os.makedirs(out, exist_ok=True)
    rgb_full, source = load_image(image)
    rgb = _fit_size(rgb_full, size)
    say(f"DRIU: {'loading ' + weights if weights else 'deterministic initialisation (compiling its init)'}")
    model, variables, weights_note = _model_and_variables(weights, variant)
    # Caffe DRIU takes BGR minus the Caffe mean; a model that normalises inside (the deepdraw
    # port) takes RGB in [0, 1].
    prepare = preprocess.driu_caffe_input if model.input_kind() == "driu_caffe" else (
        lambda im: jnp.asarray(im, jnp.float32) / 255.0)
    x = prepare(rgb)
    short_note = "trained weights" if weights else "untrained: deterministic init"
    target = targets.segmentation_sum()  # Σ vessel probability, seed 000's target
    f = explain.model_fn(model, variables, target)
    files = {}

    say(f"forward pass on {x.shape[0]}x{x.shape[1]} (compiling it)")
    with Stopwatch() as t_fwd:
        prob = _probability(model, variables, x)
        prob.block_until_ready()
    say(f"Grad-CAM of all {len(model.layer_names())} layers: compiling one program, then one forward + backward")
    with Stopwatch() as t_cam:
        cams_signed = explain.grad_cam(model, variables, x, target, relu=False)
        jax.block_until_ready(cams_signed)
    # The positive part of the resized signed maps (ReLU after the resize rather than before,
    # as grad_cam(relu=True) does: equal away from sign changes, and no second pass).
    cams = {name: np.maximum(np.asarray(m), 0) for name, m in cams_signed.items()}
    black = prepare(np.zeros_like(rgb))  # the IG baseline
    say(f"Integrated Gradients: {steps} Gauss-Legendre steps in chunks of {chunk or 8} (compiling the chunk program)")
    with Stopwatch() as t_ig:
        ig = explain.integrated_gradients(f, x, baseline=black, steps=steps, rule="gausslegendre",
                                          chunk=chunk, progress=True if verbose else None)
        jax.block_until_ready(ig)
    say("writing figures")

    files["input"] = viz.save_png(rgb, os.path.join(out, "input.png"))
    files["probability"] = viz.save_png(viz.heatmap_rgb(prob, cmap="gray", vmin=0, vmax=1),
                                        os.path.join(out, "vessel_probability.png"))
    files["gradcam_signed"] = viz.save_figure(
        viz.layer_grid(cams_signed, image=rgb, signed=True,
                       title=f"DRIU Grad-CAM, every layer, signed (green +, red −) — {short_note}"),
        os.path.join(out, "gradcam_layers_signed.png"))
    files["gradcam"] = viz.save_figure(
        viz.layer_grid(cams, image=rgb, title=f"DRIU Grad-CAM, every layer, positive part — {short_note}"),
        os.path.join(out, "gradcam_layers.png"))
    ig_map = np.asarray(ig.values.sum(-1))
    files["integrated_gradients"] = viz.save_figure(
        viz.layer_grid({"IG (signed)": ig_map, "|IG|": np.abs(ig_map)}, image=rgb, signed=True,
                       title=f"Integrated Gradients (green +, red −), {steps} Gauss–Legendre steps — {short_note}"),
        os.path.join(out, "integrated_gradients.png"))

    shapes = taps.layer_shapes(model, variables, (1, *x.shape))
    diff = float(ig.values.sum() - ig.delta)  # f(x) − f(baseline), by delta's definition
    summary = {
        "model": f"DRIU(variant={model.variant!r})",
        "weights": weights_note,
        "image": source,
        "input_shape": list(x.shape),
        "target": target.description,
        "device": {"platform": jax.devices()[0].platform, "kind": jax.devices()[0].device_kind,
                   "count": jax.device_count()},
        "versions": {"jax": jax.__version__, "python": platform.python_version()},
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "layers": {name: list(s.shape[1:]) for name, s in shapes.items()},
        "forward": t_fwd.as_dict(),
        "grad_cam_all_layers": {**t_cam.as_dict(), "layers": len(cams_signed)},
        "integrated_gradients": {
            **t_ig.as_dict(), "steps": steps, "rule": "gausslegendre", "chunk": chunk,
            "baseline": "black image (preprocessed)",
            "delta": float(ig.delta), "f(x) - f(baseline)": diff,
            "relative_delta": abs(float(ig.delta)) / (abs(diff) + 1e-12),
        },
        "vessel_probability": {"mean": float(prob.mean()), "max": float(prob.max())},
        "files": files,
    }
    files["summary"] = os.path.join(out, "summary.json")
    return summary
