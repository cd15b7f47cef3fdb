import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxretina import viz
from jaxretina.checkpoint import load_variables, save_variables
from jaxretina.cli import main
from jaxretina.models import DRIU
from jaxretina.timing import Stopwatch


def _is_png(path):
    with open(path, "rb") as fh:
        return fh.read(4) == b"\x89PNG"


def test_demo_end_to_end_small(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--size", "48", "--steps", "4", "--chunk", "3"]) == 0
    printed = capsys.readouterr().out
    assert "deterministic initialisation" in printed and str(out) in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["input_shape"] == [48, 48, 3]
    assert list(summary["layers"]) == list(DRIU().layer_names())
    assert summary["grad_cam_all_layers"]["layers"] == 21
    assert summary["integrated_gradients"]["steps"] == 4
    assert np.isfinite(summary["integrated_gradients"]["delta"])
    assert "not trained" in summary["weights"]
    for name in ("input", "probability", "gradcam_signed", "gradcam", "integrated_gradients"):
        path = summary["files"][name]
        assert os.path.getsize(path) > 1000 and _is_png(path)


def test_demo_with_saved_weights(tmp_path):
    from jaxretina.demo import run_demo

    import jaxretina

    model = DRIU()
    variables = jax.jit(model.init)(jax.random.key(1), jnp.zeros((1, 32, 32, 3)))
    ckpt = jaxretina.save("driu", model, variables, tmp_path / "ckpt")
    summary = run_demo(out=str(tmp_path / "demo"), size=32, steps=2, chunk=None, weights=ckpt)
    assert summary["weights"].startswith("weights from")


def test_checkpoint_roundtrip_and_mismatch(tmp_path):
    model = DRIU()
    variables = jax.jit(model.init)(jax.random.key(1), jnp.zeros((1, 16, 16, 3)))
    path = save_variables(tmp_path / "v", variables)
    like = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    restored = load_variables(path, like=like)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(variables)):
        np.testing.assert_array_equal(a, b)
    disc_like = jax.eval_shape(DRIU(variant="optic_disc").init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    with pytest.raises(ValueError, match=r"does not match the model: missing \[.*conv5_1.*unexpected \[.*conv1_2_16"):
        load_variables(path, like=disc_like)
    with pytest.raises(FileNotFoundError, match="expected an Orbax checkpoint directory"):
        load_variables(tmp_path / "nothing", like=like)
    with pytest.raises(FileExistsError):
        save_variables(path, variables)


def test_signed_map_colours_and_grid(tmp_path):
    m = np.array([[1.0, -0.5], [0.0, -1.0]])
    rgb = viz.signed_map(m)
    assert tuple(rgb[0, 0]) == (0, 255, 0) and tuple(rgb[1, 1]) == (255, 0, 0)
    assert tuple(rgb[0, 1]) in ((127, 0, 0), (128, 0, 0)) and tuple(rgb[1, 0]) == (0, 0, 0)
    image = np.zeros((8, 8, 3), np.uint8)
    fig = viz.layer_grid({"a": np.ones((4, 4)), "b": -np.ones((8, 8))}, image=image, signed=True, title="t")
    path = viz.save_figure(fig, tmp_path / "grid.png")
    assert _is_png(path)
    assert viz.overlay(image, np.eye(8)).shape == (8, 8, 3)
    with pytest.raises(ValueError, match=r"expected a 2D map \(H, W\); found shape \(2, 2, 2\)"):
        viz.heatmap_rgb(np.zeros((2, 2, 2)))


def test_stopwatch_separates_compile_from_run():
    f = jax.jit(lambda z: jnp.sin(z) @ z.T)
    z = jnp.ones((64, 64))
    with Stopwatch() as first:
        f(z).block_until_ready()
    with Stopwatch() as second:
        f(z).block_until_ready()
    assert first.compiles == 1 and first.compile > 0
    assert second.compiles == 0 and second.compile == 0


def test_second_demo_run_compiles_nothing(tmp_path):
    # The command keeps JAX's persistent compilation cache (here in tmp_path): the same command
    # run again loads every program instead of compiling it.  Subprocesses: the cache is a
    # per-process setting, and the first run must start with an empty cache.
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    cache = tmp_path / "xla"
    runs = []
    for k in range(2):
        out = tmp_path / f"demo{k}"
        done = subprocess.run([sys.executable, "-m", "jaxretina", "demo", "--out", str(out), "--size", "32",
                               "--steps", "2", "--chunk", "1", "--compilation-cache", str(cache)],
                              cwd=root, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        runs.append(json.loads((out / "summary.json").read_text())["xla"])
    assert runs[0]["compiled"] > 0 and runs[0]["cache_dir"] == str(cache)
    assert runs[1]["compiled"] == 0 and runs[1]["from_cache"] == runs[0]["compiled"] + runs[0]["from_cache"]
