"""Metrics inside a sweep (``--metric``, ``--masks``): the stored scalars and curves against the
jaxretina.evaluate functions called directly on the stored maps, region files and their failures,
the report's bootstrap tables, and the HTML page rendered in headless Chromium."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from jaxretina import data, evaluate, explain, preprocess, sweep, targets, taps

SMALL = {"num_classes": 5, "growth_rate": 8, "block_config": (2, 2), "num_init_features": 16, "bn_size": 2}
METRICS = ["deletion:steps=4", "insertion:steps=4,baseline=blur,sigma=2", "road:fractions=0.3+0.6",
           "faithfulness_correlation:runs=4,subset=20", "sparseness", "entropy", "pointing_game", "relevance_mass",
           "auroc", "iou:threshold=top,top=0.1"]


@pytest.fixture(scope="module")
def lesions(tmp_path_factory):
    """The fake lesion dataset (5 images with masks), one mask removed."""
    root = data.make_fake_dataset(tmp_path_factory.mktemp("lesions"), per_class=1, size=40)
    os.remove(root / "masks" / "3000_right.png")
    return root


@pytest.fixture(scope="module")
def scored(lesions, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("scored") / "dense.zarr")
    summary = sweep.run(model="densenet121", model_options=SMALL, data=str(lesions / "folder" / "images"), out=out,
                        size=32, batch=2, progress=False, seed=1, methods=["saliency", "gradcam:layers=norm5"],
                        metrics=METRICS, masks=str(lesions / "masks"))
    return out, summary


# The sweep's scalars and curves equal jaxretina.evaluate called directly on the stored maps (the
# sweep's own inputs, preprocessing and target; maps summed over channels / resized as
# sweep.metrics.spatial_view says; the same draws): float32 on both sides, 1e-4 relative (the
# sweep's program fuses differently).  A missing mask fails its example with the reason.
def test_stored_metrics_equal_the_direct_calls(scored, lesions):
    path, summary = scored
    store = sweep.open_store(path)
    assert summary["counts"] == {"done": 4, "failed": 1, "pending": 0}
    failed = store.failed()
    assert len(failed) == 1 and "no mask file for 3000_right.png" in failed[0][2]
    assert store.map_names == ["gradcam/norm5", "saliency"]
    assert store.curve_names == ["gradcam/norm5:deletion", "gradcam/norm5:insertion", "saliency:deletion",
                                 "saliency:insertion"]
    model, variables, _ = sweep.load_model(sweep.sweep_config(model="densenet121", model_options=SMALL, data="d",
                                                              out=path, methods=["saliency"], seed=1))
    f = explain.model_fn(model, taps.params_only(variables), targets.top_class())
    inputs = sweep.open_inputs(str(lesions / "folder" / "images"), volumes=False, size=(32, 32))
    scal = store.scalars()
    regions = sweep.regions.RegionFiles(str(lesions / "masks"))
    black = preprocess.imagenet_normalize(np.zeros((32, 32, 3), np.uint8))

    @jax.jit
    def direct(x, a, mask, key):
        """Every metric called directly on one map: one compiled program."""
        dele = evaluate.perturbation_curve(f, x, a, steps=4, baseline=black)
        ins = evaluate.perturbation_curve(f, x, a, steps=4, mode="insertion", baseline=preprocess.gaussian_blur(x, 2.0))
        return dele.scores, ins.scores, {
            "deletion": dele.auc, "deletion_aopc": evaluate.aopc(dele), "insertion": ins.auc,
            "road": evaluate.road_combined(f, x, a, fractions=(0.3, 0.6), key=jax.random.fold_in(key, 2)),
            "faithfulness_correlation": evaluate.faithfulness_correlation(
                f, x, a, key=jax.random.fold_in(key, 3), runs=4, subset=20, baseline=black),
            "sparseness": evaluate.sparseness(a), "entropy": evaluate.entropy(a),
            "pointing_game": evaluate.pointing_game(a, mask), "relevance_mass": evaluate.relevance_mass(a, mask),
            "auroc": evaluate.localisation_auroc(a, mask),
            "iou": evaluate.threshold_overlap(a, mask, method="top", top=0.1).iou}

    checked = 0
    for i in np.flatnonzero(store.status() == sweep.DONE)[:2]:
        x = preprocess.imagenet_normalize(inputs.load(int(i))[0])
        mask = regions.load(store.names[i], (32, 32), resize=True)
        stored = store.example(int(i), store.map_names + store.curve_names)
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(1), int(i)), sweep.metrics.METRIC_STREAM)
        for name in store.map_names:
            a = sweep.metrics.spatial_view(jnp.asarray(stored[name]), x, name=name)
            deletion, insertion, want = direct(x, a, mask, key)
            for metric, value in want.items():
                np.testing.assert_allclose(scal[f"{name}:{metric}"][i], float(value), rtol=1e-4, atol=1e-5,
                                           err_msg=f"{name}:{metric}")
                checked += 1
            np.testing.assert_allclose(stored[f"{name}:deletion"], deletion, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(stored[f"{name}:insertion"], insertion, rtol=1e-4, atol=1e-5)
    assert checked == 2 * 2 * 11


# The sweep's default compiles one program per method (the target's score in the first); the
# fixture's stored values equal the direct calls above, and the 26-method store of
# test_sweep.py, compiled as one program (programs="one"), equals them too.  The dry run
# compiles (here: reads from the run's compile cache) and measures the same parts.
def test_one_program_per_method_and_its_dry_run(scored, lesions):
    path, summary = scored
    assert summary["this_run"]["compiles"] == 2
    dry = sweep.dry_run(model="densenet121", model_options=SMALL, data=str(lesions / "folder" / "images"), out=path,
                        size=32, batch=2, progress=False, seed=1, methods=["saliency", "gradcam:layers=norm5"],
                        metrics=METRICS, masks=str(lesions / "masks"))
    assert dry["compiles_needed"] == 2 and dry["memory_per_device_bytes"] > 0
    assert sweep.open_store(path).scalars()["score"].shape == (5,)   # the score, once


def test_metric_and_region_errors_are_named(lesions, tmp_path):
    base = dict(model="densenet121", model_options=SMALL, data=str(lesions / "folder" / "images"),
                out=str(tmp_path / "x.zarr"), methods=["saliency"], size=32, progress=False)
    cases = [
        (dict(metrics=["pointing_game"]), "give masks="),
        (dict(metrics=["deletion:step=3"]), "unknown options \\['step'\\]"),
        (dict(metrics=["deletion:steps=0"]), "steps=0 is not a positive integer"),
        (dict(metrics=["road:fractions=0+0.5"]), "shares in \\(0, 1\\)"),
        (dict(metrics=["deletion", "deletion:steps=4"]), "metrics \\['deletion'\\] appear twice"),
        (dict(metrics=["wellness"]), "unknown metric 'wellness'"),
        (dict(metrics=["auroc"], masks=str(tmp_path / "absent")), "neither a folder nor a template"),
        (dict(metrics=["auroc"], masks=str(tmp_path / "{colour}.png")), "expected fields among"),
        (dict(methods=["saliency:name=a:b"]), "hold ':'"),
    ]
    for extra, message in cases:
        with pytest.raises(ValueError, match=message):
            sweep.run(**{**base, **extra})


# Templates name each example's file ({stem}, {prefix}); a mask of another size is refused unless
# the sweep resizes its inputs; any nonzero value is inside.
def test_region_templates_and_sizes(tmp_path):
    from PIL import Image

    (tmp_path / "m").mkdir()
    Image.fromarray(np.where(np.arange(48)[None, :] < 12, 255, 0).astype(np.uint8).repeat(40, 0)).save(
        tmp_path / "m" / "21_manual1.gif")
    files = sweep.regions.RegionFiles(str(tmp_path / "m" / "{prefix}_manual1.gif"))
    assert files.path("21_training.tif") == tmp_path / "m" / "21_manual1.gif"
    region = files.load("21_training.tif", (40, 48))
    assert region.dtype == bool and region[:, :12].all() and not region[:, 12:].any()
    assert files.load("21_training.tif", (20, 24), resize=True).sum() == 20 * 6
    with pytest.raises(sweep.BadInput, match="does not match the input's \\(20, 24\\)"):
        files.load("21_training.tif", (20, 24))
    with pytest.raises(sweep.BadInput, match="no mask file for 22_training.tif"):
        files.load("22_training.tif", (40, 48))
    (tmp_path / "m" / "23_manual1.gif").write_bytes(b"GIF89a not really")
    with pytest.raises(sweep.BadInput, match="unreadable image"):
        files.load("23_training.tif", (40, 48))


# The report's tables: each interval holds its mean, ranks follow the better direction, p_best
# sums to 1 over the maps; closed forms of the bootstrap on constant and two-valued data.
def test_report_tables_intervals_ranks_and_p_best(scored, tmp_path):
    path, _ = scored
    summary = sweep.report(path, tmp_path / "rep", rows=2)
    tables = summary["metrics"]
    assert set(tables) == {"deletion", "deletion_aopc", "insertion", "road", "faithfulness_correlation", "sparseness",
                           "entropy", "pointing_game", "relevance_mass", "auroc", "iou"}
    for metric, t in tables.items():
        means = [r["mean"] for r in t["rows"]]
        assert means == sorted(means, reverse=t["better"] == "higher"), metric
        assert sum(r["p_best"] for r in t["rows"]) == pytest.approx(1.0)
        for r in t["rows"]:
            assert r["low"] - 1e-12 <= r["mean"] <= r["high"] + 1e-12
            # the grade-0 image has no lesion: no localisation score
            assert r["n"] == (3 if sweep.metrics.needs_masks(metric) else 4), (metric, r)
    assert tables["deletion"]["better"] == "lower" and tables["auroc"]["better"] == "higher"
    assert "| 1 |" in Path(summary["files"]["metrics"]).read_text()
    t = sweep.tables.metric_table({"a:auroc": np.full(6, 0.7), "b:auroc": np.array([0.1, 0.9] * 3)}, resamples=4000)
    a, b = sorted(t["auroc"]["rows"], key=lambda r: r["map"])
    assert (a["low"], a["high"]) == pytest.approx((0.7, 0.7), abs=1e-12) and a["rank"] == 1 and b["rank"] == 2
    # b's resampled mean is a Binomial(6, 1/2) share of 0.9s: it beats 0.7 when ≥ 5 of 6 are 0.9 (p = 7/64)
    assert b["p_best"] == pytest.approx(7 / 64, abs=0.02) and a["p_best"] == pytest.approx(57 / 64, abs=0.02)


# The HTML page in Debian's headless Chromium (installed by the test set-up): its script runs
# without errors, it holds a cell per example × map, the metric tables and the curves, names
# from the store stay text (a file named with markup), and a screenshot renders.
def test_html_report_renders_in_headless_chromium(lesions, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for k, name in enumerate(sorted(os.listdir(lesions / "folder" / "images"))[:2]):
        shutil.copy(lesions / "folder" / "images" / name, folder / ("<em>bold<em>.png" if k == 0 else name))
    out = str(tmp_path / "page.zarr")
    sweep.run(model="densenet121", model_options=SMALL, data=str(folder), out=out, size=32, batch=2, progress=False,
              methods=["saliency", "gradcam:layers=norm5"], metrics=["deletion:steps=3", "sparseness"])
    page = sweep.report(out, tmp_path / "rep", html=True)["files"]["html"]
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", f"file://{page}"], capture_output=True, text=True,
                         timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-ready="1"' in dom.stdout and 'data-errors=""' in dom.stdout
    assert "Uncaught" not in dom.stderr and "CONSOLE" not in dom.stderr
    assert dom.stdout.count('class="cell"') + dom.stdout.count('class="cell hidden"') >= 2 * 2
    assert dom.stdout.count('class="metric"') == 3 and dom.stdout.count("<polyline") >= 2 * 2 + 2
    assert "&lt;em&gt;bold&lt;em&gt;.png" in dom.stdout and "<em>" not in dom.stdout
    shot = tmp_path / "report.png"
    run = subprocess.run([chromium, *flags, "--window-size=1200,900", f"--screenshot={shot}", f"file://{page}"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.stat().st_size > 10_000, run.stderr[-2000:]
