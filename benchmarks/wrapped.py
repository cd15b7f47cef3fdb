"""Wrapped models against jaxretina's own modules, and ResNet101's first compile.

    .venv/bin/python -m benchmarks.wrapped [--size 193] [--repeats 2]

* A Flax ResNet-50 written in the style of Flax's examples (tests/reference/flax_resnet.py),
  wrapped with ``jaxretina.explainable(net, layers=BottleneckResNetBlock)``, against
  ``models.ResNet50`` with the same weights.
* Keras's own ``keras.applications.ResNet50`` (JAX backend) through ``models.from_keras``
  against ``models.ResNet50`` with Keras's options loaded from the same weights (the same
  function; the Keras side takes ``preprocess_input`` of the pixels).
* ResNet101 (torchvision variant): the first call of all-layer Grad-CAM and of IG (trace +
  compile + run) on this machine.

Each contender runs in its own process (benchmarks/_process.py).  Cases: Grad-CAM of the 16
block outputs plus the stem's ReLU and max pool (one program) and IG with 16 Gauss-Legendre
steps in chunks of 8; ``first`` is trace + compile + run, ``best`` the best of ``--repeats``
further calls.  The target is the logit of class 1; input side ``--size`` (odd by default:
there the Flax example's SAME padding is torchvision's).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from benchmarks._process import run_case, write_results

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = (3, 4, 6, 3)


def _native_layers():
    names = ["relu", "maxpool"] + [f"layer{s}.{b}" for s, n in enumerate(STAGES, start=1) for b in range(n)]
    return names


def _setup(kind: str, size: int):
    import jax.numpy as jnp

    import jaxretina
    from jaxretina import models

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (size, size, 3)).astype(np.float32)
    if kind in ("native", "flax"):
        native = models.ResNet50(num_classes=5)
        variables = models.random_variables(native, seed=0)
        if kind == "native":
            return native, variables, jnp.asarray(x), _native_layers()
        from tests.reference.flax_resnet import BottleneckResNetBlock, FlaxResNet, flax_variables

        net = FlaxResNet(STAGES, num_classes=5, block_cls=BottleneckResNetBlock)
        # the stem's BatchNorm and the 16 blocks (its ReLU and max pool are functions, not modules)
        model = jaxretina.explainable(net, layers=("bn_init", BottleneckResNetBlock), spatial_dims=2)
        return model, flax_variables(variables, STAGES, bottleneck=True), jnp.asarray(x), "all"
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    net = keras.applications.ResNet50(weights=None, input_shape=(size, size, 3), classes=5, classifier_activation=None)
    pixels = x * 255
    layers = ["conv1_relu", "pool1_pool"] + [f"conv{s + 2}_block{b + 1}_out" for s, n in enumerate(STAGES)
                                              for b in range(n)]
    if kind == "keras":
        model, variables = models.from_keras(net)
        pre = keras.applications.resnet.preprocess_input(pixels[None].copy())[0]
        return model, variables, jnp.asarray(pre), layers
    import tempfile

    path = os.path.join(tempfile.mkdtemp(), "resnet50.weights.h5")
    net.save_weights(path)
    model, variables = jaxretina.load("resnet50", path)
    return model, variables, jnp.asarray(pixels), layers


def _worker(spec: dict) -> dict:
    import jax
    import jax.numpy as jnp

    import jaxretina  # noqa: F401 - XLA defaults first
    from jaxretina import explain, targets
    from jaxretina.timing import Stopwatch

    if spec["kind"] == "resnet101":
        model = jaxretina.models.ResNet101(num_classes=5)
        variables = jaxretina.models.random_variables(model, seed=0)
        x = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (spec["size"], spec["size"], 3)), jnp.float32)
        layers = "all"
    else:
        model, variables, x, layers = _setup(spec["kind"], spec["size"])
    target = targets.class_logit(1)
    if spec["case"] == "gradcam":
        def call():
            cams = explain.grad_cam(model, variables, x, target, layers=layers)
            return jax.block_until_ready(list(cams.values()))
    else:
        f = explain.model_fn(model, variables, target)

        def call():
            return jax.block_until_ready(explain.integrated_gradients(f, x, baseline=0.0, steps=16, chunk=8,
                                                                      stem=spec.get("stem", True)).values)

    with Stopwatch() as sw:
        out = call()
    best = float("inf")
    for _ in range(spec["repeats"]):
        t0 = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t0)
    n = len(out) if isinstance(out, list) else 1
    return {"first_s": sw.wall, "compile_s": sw.compile, "best_s": best, "maps": n}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=193)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default=os.path.join(_ROOT, "benchmarks", "results", "wrapped.json"))
    args = p.parse_args(argv)
    rows = []
    pairs = (("flax", "native"), ("keras", "native-keras"))
    # IG twice: the native modules' default splits off their affine stem (models/stem.py), which a
    # wrapped network cannot declare; stem=False is the same computation as the wrapped one
    for case, stem in (("gradcam", True), ("ig", True), ("ig", False)):
        for wrapped, native in pairs:
            got = {}
            for kind in (native, wrapped):
                spec = {"kind": kind, "case": case, "size": args.size, "repeats": args.repeats,
                        "stem": stem if kind.startswith("native") else False}
                got[kind] = run_case("benchmarks.wrapped", "_worker", spec)
                rows.append({**spec, **got[kind]})
            ratio = got[wrapped]["best_s"] / got[native]["best_s"]
            rows[-1]["wrapped_over_native"] = ratio
            label = case + ("" if case == "gradcam" else f", native stem={stem}")
            print(f"{label:24s} {wrapped:6s} vs {native:13s}: native {got[native]['best_s']:.2f} s (first "
                  f"{got[native]['first_s']:.1f} s), wrapped {got[wrapped]['best_s']:.2f} s (first "
                  f"{got[wrapped]['first_s']:.1f} s, {got[wrapped]['maps']} maps): {ratio:.2f}×", flush=True)
    for case in ("gradcam", "ig"):
        spec = {"kind": "resnet101", "case": case, "size": 224, "repeats": 1}
        r = run_case("benchmarks.wrapped", "_worker", spec)
        rows.append({**spec, **r})
        print(f"resnet101 {case} 224²: first call {r['first_s']:.1f} s (compile {r['compile_s']:.1f} s), "
              f"then {r['best_s']:.2f} s", flush=True)
    write_results(args.out, {"rows": rows, "cpus": os.cpu_count()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
