"""jaxretina.sweep in one process: configuration, inputs and their failures, the store's
contents against the explainers called directly, resuming a finished store, the report."""

import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import jax
import jax.numpy as jnp
from PIL import Image

from jaxretina import data, explain, preprocess, sweep, targets, taps
from jaxretina.sweep.config import Spec

METHODS = ["ig:steps=4,chunk=2", "gradcam:layers=conv1_2+upsample2", "guided_backprop",
           "smoothgrad:samples=2,chunk=2,sigma=0.1", "lrp:composite=epsilon_gamma_box", "deeplift",
           "gradient_shap:samples=3,chunk=2,baselines=black+white", "excitation_backprop",
           "guided_gradcam:layers=conv1_2", "layer_gradient_x_activation:layers=conv1_2",
           "layer_conductance:layer=conv1_2,steps=2,chunk=2", "internal_influence:steps=2,chunk=2,sum_channels=false",
           "neuron_conductance:layer=conv1_2,neuron=5,steps=2,chunk=2", "layercam:layers=conv1_2",
           "eigencam:layers=upsample2,normalize=true", "ablationcam:layers=upsample8,chunk=16",
           "scorecam:layers=conv1_2,chunk=64", "fullgrad", "occlusion:window=16,strides=16,chunk=4",
           "feature_ablation:cells=2,chunk=4", "shapley_value_sampling:cells=2,permutations=2,chunk=8",
           "kernel_shap:cells=2,samples=8,chunk=8", "lime:cells=2,samples=8,chunk=8", "rise:masks=8,cells=4,chunk=8",
           "extremal_perturbation:area=0.2,max_iter=3,variant=dual", "occlusion_sensitivity:overlap=0.5,chunk=9"]


def write_images(folder, n=5, size=32, seed=0):
    """``n`` RGB crops of skimage's retina, a truncated PNG (its header reads, its pixels do not)
    and a grayscale image."""
    from skimage import data as skdata

    os.makedirs(folder, exist_ok=True)
    retina = skdata.retina()
    rng = np.random.default_rng(seed)
    for i in range(n):
        y, x = rng.integers(200, 1100, 2)
        Image.fromarray(retina[y:y + 3 * size, x:x + 3 * size]).resize((size, size)).save(f"{folder}/img{i:02d}.png")
    whole = Path(folder, "img00.png").read_bytes()
    with open(f"{folder}/img90_truncated.png", "wb") as fh:
        fh.write(whole[: len(whole) // 2])
    Image.fromarray(retina[:size, :size, 1]).save(f"{folder}/img91_gray.png")
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_images(str(tmp_path_factory.mktemp("sweep_images")))


@pytest.fixture(scope="module")
def store(images, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("sweep_store") / "driu.zarr")
    # one program for the 26 methods (21 s of compilation here; one per method, the default: 28 s —
    # the default's parts are tested equal to one program in test_sweep_metrics.py)
    summary = sweep.run(model="driu", data=images, out=out, methods=METHODS, batch=2, progress=False, seed=3,
                        programs="one")
    return out, summary


# -- configuration -----------------------------------------------------------------------------

def test_parse_spec_values_and_lists():
    s = sweep.parse_spec("gradcam:layers=conv1_2+upsample2,relu=false,name=cam")
    assert s.kind == "gradcam" and s.name == "cam"
    assert s.opts == {"layers": ("conv1_2", "upsample2"), "relu": False, "name": "cam"}
    assert sweep.parse_spec("ig:steps=32,baseline=0.5").opts == {"steps": 32, "baseline": 0.5}
    assert sweep.parse_spec({"kind": "ig", "steps": 8}) == sweep.parse_spec("ig:steps=8")
    assert sweep.parse_spec(s.text()) == s
    with pytest.raises(ValueError, match="key=value"):
        sweep.parse_spec("ig:steps")


def test_config_file_toml_yaml_and_flags_agree(tmp_path):
    (tmp_path / "s.toml").write_text('model = "driu"\ndata = "d"\nout = "o.zarr"\nbatch = 4\nsize = "32x48"\n'
                                     'method = ["ig:steps=8", {kind = "gradcam", layers = ["conv1_2", "upsample2"]}]\n')
    (tmp_path / "s.yaml").write_text("model: driu\ndata: d\nout: o.zarr\nbatch: 4\nsize: 32x48\nmethod:\n"
                                     "  - ig:steps=8\n  - {kind: gradcam, layers: [conv1_2, upsample2]}\n")
    flags = sweep.sweep_config(model="driu", data="d", out="o.zarr", batch=4, size="32x48",
                               methods=["ig:steps=8", "gradcam:layers=conv1_2+upsample2"])
    assert sweep.sweep_config(tmp_path / "s.toml") == flags == sweep.sweep_config(tmp_path / "s.yaml")
    assert flags.size == (32, 48)
    # flags override the file; unset flags (None) do not erase it
    over = sweep.sweep_config(tmp_path / "s.toml", batch=2, weights=None)
    assert over.batch == 2 and over.methods == flags.methods


@pytest.mark.parametrize("keys, match", [
    (dict(model="driu", data="d", out="o"), "missing \\['methods'\\]"),
    (dict(model="driu", data="d", out="o", methods=["ig"], colour="red"), "unknown configuration keys"),
    (dict(model="driu", data="d", out="o", methods=["ig", "ig:steps=8"]), "appear twice"),
    (dict(model="driu", data="d", out="o", methods=["ig"], batch=0), "positive integer"),
    (dict(model="driu", data="d", out="o", methods=["ig"], size="32x"), "size"),
    (dict(model="driu", data="d", out="o", methods=["ig"], dtype="int8"), "dtype"),
])
def test_config_errors(keys, match):
    with pytest.raises(ValueError, match=match):
        sweep.sweep_config(**keys)


def test_unknown_methods_options_and_targets_are_named(unet_small):
    from jaxretina.models import registry
    from jaxretina.sweep.methods import build_computation

    model, _ = unet_small
    with pytest.raises(ValueError, match="unknown method 'gradcm'"):
        build_computation(registry.get("unet3d"), model, [Spec("gradcm")], [])
    with pytest.raises(ValueError, match="unknown options \\['step'\\]"):
        build_computation(registry.get("unet3d"), model, [sweep.parse_spec("ig:step=4")], [])
    with pytest.raises(ValueError, match="unknown target"):
        build_computation(registry.get("unet3d"), model, [Spec("saliency")], [Spec("logit")])


def test_several_targets_prefix_every_name(unet_small):
    from jaxretina.models import registry
    from jaxretina.sweep.methods import build_computation

    model, variables = unet_small
    comp = build_computation(registry.get("unet3d"), model, [sweep.parse_spec("ig:steps=2"), Spec("saliency")],
                             [Spec("segmentation_sum"), sweep.parse_spec("segmentation_mean:probability=false,name=p")],
                             prep="none")
    maps, scalars = jax.eval_shape(comp.fn, variables, jax.ShapeDtypeStruct((16, 16, 16, 1), jnp.float32),
                                   jax.ShapeDtypeStruct((), jnp.int32))
    assert set(maps) == {"segmentation_sum/ig", "segmentation_sum/saliency", "p/ig", "p/saliency"}
    assert set(scalars) == {"segmentation_sum/score", "segmentation_sum/ig.delta", "p/score", "p/ig.delta"}


# -- inputs ------------------------------------------------------------------------------------

def test_inputs_list_and_explain_their_failures(images):
    inputs = sweep.open_inputs(images, volumes=False)
    names = [it.name for it in inputs.items]
    assert names == sorted(names) and len(names) == 7
    gray = inputs.items[names.index("img91_gray.png")]
    assert gray.shape is None and "wrong channels" in gray.problem and "'L'" in gray.problem
    truncated = names.index("img90_truncated.png")
    assert inputs.items[truncated].problem is None          # its header is fine ...
    with pytest.raises(sweep.BadInput, match="unreadable image"):
        inputs.load(truncated)                               # ... its pixels are not
    image, sha = inputs.load(0)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert sha == hashlib.sha256(Path(images, names[0]).read_bytes()).hexdigest()
    resized = sweep.open_inputs(images, volumes=False, size=(16, 24))
    assert resized.load(0)[0].shape == (16, 24, 3) and resized.items[0].shape == (16, 24, 3)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        sweep.open_inputs(os.path.join(images, "nope"), volumes=False)
    with pytest.raises(FileNotFoundError, match="no volumes"):
        sweep.open_inputs(images, volumes=True)


def test_plan_groups_shapes_and_shares_batches():
    from jaxretina.sweep.inputs import Item

    items = [Item(f"{i}", (8, 8, 3) if i % 3 else (4, 4, 3), None) for i in range(7)] + [Item("x", None, "bad")]
    plan = sweep.make_plan(items, 2)
    assert plan.groups == {(4, 4, 3): 3, (8, 8, 3): 4} and plan.problems == {7: "bad"}
    assert [b.members for b in plan.batches] == [(0, 3), (6,), (1, 2), (4, 5)]
    mine = [b.index for b in plan.owned(0, 2)] + [b.index for b in plan.owned(1, 2)]
    assert sorted(mine) == [0, 1, 2, 3] and [b.index for b in plan.owned(1, 2)] == [1, 3]


# -- the store ---------------------------------------------------------------------------------

def test_store_holds_what_the_explainers_give(store, images):
    path, summary = store
    s = sweep.open_store(path)
    assert summary["counts"] == {"done": 5, "failed": 2, "pending": 0}
    assert summary["this_run"]["compiles"] == 1 and summary["groups"] == {"32x32x3": 6}
    model, variables, record = sweep.load_model(sweep.sweep_config(model="driu", data=images, out=path,
                                                                   methods=METHODS, seed=3))
    variables = taps.params_only(variables)
    assert record["from_file"] is False and "deterministic initialisation" in record["note"]
    assert s.meta["weights"] == record
    target = targets.segmentation_sum()
    f = explain.model_fn(model, variables, target)
    scal = s.scalars()
    black, white = (np.asarray(preprocess.driu_caffe_input(np.full((1, 1, 3), v, np.uint8)))[0, 0] for v in (0, 255))
    last = taps.spatial_layer_names(model, (1, 32, 32, 3))[-1]
    cells = explain.grid_features((32, 32), 2)

    def direct(variables, x, zero, key):
        """Every method's map, called directly: one compiled program for the 26 (as the sweep's)."""
        f = explain.model_fn(model, variables, target)
        grad = functools.partial(explain.saliency, f, abs=False)
        ig = explain.integrated_gradients(f, x, baseline=zero, steps=4, chunk=2)
        cams = explain.grad_cam(model, variables, x, target, layers=["conv1_2", "upsample2"])
        return ig.delta, {
            "ig": ig.values, "gradcam/conv1_2": cams["conv1_2"], "gradcam/upsample2": cams["upsample2"],
            "guided_backprop": explain.guided_backprop(model, variables, x, target),
            "smoothgrad": explain.smoothgrad(grad, x, key=key, samples=2, sigma=0.1 * 255.0, chunk=2),
            "lrp": explain.lrp(model, variables, x, target, composite="epsilon_gamma_box",
                               low=np.minimum(black, white), high=np.maximum(black, white)),
            "deeplift": explain.deeplift(model, variables, x, target, baseline=black),
            "gradient_shap": explain.gradient_shap(
                f, x, jnp.stack([jnp.broadcast_to(jnp.asarray(c, jnp.float32), x.shape) for c in (black, white)]),
                key=key, samples=3, chunk=2),
            "excitation_backprop": explain.excitation_backprop(model, variables, x, target),
            "guided_gradcam/conv1_2": explain.guided_grad_cam(model, variables, x, target, layer="conv1_2"),
            "layer_gradient_x_activation/conv1_2": explain.layer_gradient_x_activation(
                model, variables, x, target, layers="conv1_2")["conv1_2"].sum(-1),
            "layer_conductance/conv1_2": explain.layer_conductance(
                model, variables, x, "conv1_2", target, baseline=black, steps=2, chunk=2).sum(-1),
            f"internal_influence/{last}": explain.internal_influence(
                model, variables, x, last, target, baseline=black, steps=2, chunk=2),
            "neuron_conductance": explain.neuron_conductance(model, variables, x, "conv1_2", 5, target,
                                                             baseline=black, steps=2, chunk=2),
            "layercam/conv1_2": explain.layer_cam(model, variables, x, target, layers="conv1_2")["conv1_2"],
            "eigencam/upsample2": explain.eigen_cam(model, variables, x, target, layers="upsample2",
                                                    normalize=True)["upsample2"],
            "ablationcam/upsample8": explain.ablation_cam(model, variables, x, target, layers="upsample8",
                                                          chunk=16)["upsample8"],
            "scorecam/conv1_2": explain.score_cam(model, variables, x, target, layers="conv1_2", chunk=64)["conv1_2"],
            "fullgrad": explain.full_grad(model, variables, x, target),
            "occlusion": explain.occlusion(f, x, window=16, strides=16, baseline=black, chunk=4),
            "feature_ablation": explain.feature_ablation(f, x, cells, baseline=black, chunk=4),
            "shapley_value_sampling": explain.shapley_value_sampling(f, x, cells, key=key, permutations=2,
                                                                     baseline=black, chunk=8),
            "kernel_shap": explain.kernel_shap(f, x, cells, key=key, samples=8, baseline=black, chunk=8),
            "lime": explain.lime(f, x, cells, key=key, samples=8, baseline=black, chunk=8),
            "rise": explain.rise(f, x, key=key, masks=8, cells=4, chunk=8),
            "extremal_perturbation": explain.extremal_perturbation(f, x, areas=(0.2,), max_iter=3,
                                                                   variant="dual").masks[0],
            "occlusion_sensitivity": explain.occlusion_sensitivity(f, x, mask_size=16, overlap=0.5, chunk=9)}

    direct = jax.jit(direct)
    for i in (0, 3):   # the first of the first batch, the second of another (batch 2)
        raw = np.asarray(Image.open(os.path.join(images, s.names[i])).convert("RGB"))
        x = preprocess.driu_caffe_input(raw)
        got = s.example(i)
        delta, want = direct(variables, x, preprocess.driu_caffe_input(np.zeros_like(raw)),
                             jax.random.fold_in(jax.random.key(3), i))
        assert sorted(got) == sorted(want)
        for name, w in want.items():
            w = np.asarray(w)
            # AblationCAM's weights and the perturbation maps are differences of near-equal float32
            # scores (one channel of 16, or one of 4 blocks, moving a sum of ~500 by ~1e-3 of it):
            # two programs round them ~1e-3 apart
            differences = ("ablationcam", "occlusion", "feature_ablation", "shapley", "kernel_shap", "lime")
            rtol, atol = (5e-3, 5e-3) if name.startswith(differences) else (2e-4, 2e-5)
            if name == "smoothgrad":   # a noisy copy sits on a ReLU kink: one program's rounding flips it
                atol = 2e-3            # (measured 8.2e-4 of the map's max on one image of five; 2e-6 on the rest)
            np.testing.assert_allclose(got[name], w, rtol=rtol, atol=atol * np.abs(w).max(), err_msg=name)
        np.testing.assert_allclose(scal["ig.delta"][i], float(delta), rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(scal["score"][i], float(jax.jit(f)(x)), rtol=1e-5)
        assert scal["seconds"][i] > 0
        info = s.info(i)
        assert info["sha256"] == hashlib.sha256(Path(images, s.names[i]).read_bytes()).hexdigest()
        assert info["shape"] == [32, 32, 3]


def test_store_records_failures_and_metadata(store):
    path, _ = store
    from jaxretina.models import DRIU

    last = taps.spatial_layer_names(DRIU(), (1, 32, 32, 3))[-1]
    s = sweep.open_store(path)
    failed = {name: reason for _, name, reason in s.failed()}
    assert set(failed) == {"img90_truncated.png", "img91_gray.png"}
    assert "unreadable image" in failed["img90_truncated.png"] and "wrong channels" in failed["img91_gray.png"]
    assert np.isnan(s.scalars()["score"][s.index("img90_truncated.png")])
    with pytest.raises(ValueError, match="failed: wrong channels"):
        s.example("img91_gray.png")
    meta = s.meta
    assert meta["config"]["methods"] == [sweep.parse_spec(m).text() for m in METHODS]
    assert {"jax", "jaxlib", "flax", "numpy", "zarr", "jaxretina", "python"} <= set(meta["versions"])
    assert meta["computation"]["methods"]["ig"]["steps"] == 4
    assert meta["computation"]["targets"] == {"segmentation_sum": targets.segmentation_sum().description}
    assert set(meta["maps"]) == {"ig", "gradcam/conv1_2", "gradcam/upsample2", "guided_backprop", "smoothgrad", "lrp",
                                 "deeplift", "gradient_shap", "excitation_backprop", "guided_gradcam/conv1_2",
                                 "layer_gradient_x_activation/conv1_2", "layer_conductance/conv1_2",
                                 f"internal_influence/{last}", "neuron_conductance", "layercam/conv1_2",
                                 "eigencam/upsample2", "ablationcam/upsample8", "scorecam/conv1_2", "fullgrad",
                                 "occlusion", "feature_ablation", "shapley_value_sampling", "kernel_shap", "lime",
                                 "rise", "extremal_perturbation", "occlusion_sensitivity"}


def test_finished_store_resumes_to_nothing_and_refuses_another_config(store, images):
    path, _ = store
    before = sweep.open_store(path).scalars()["seconds"]
    again = sweep.run(model="driu", data=images, out=path, methods=METHODS, batch=2, progress=False, seed=3)
    assert again["this_run"]["examples"] == 0 and again["this_run"]["compiles"] == 0
    np.testing.assert_array_equal(sweep.open_store(path).scalars()["seconds"], before)
    with pytest.raises(ValueError, match="differs in \\['batch'\\]"):
        sweep.run(model="driu", data=images, out=path, methods=METHODS, batch=4, progress=False, seed=3)


def test_report_writes_statistics_and_contact_sheet(store, tmp_path):
    path, _ = store
    summary = sweep.report(path, tmp_path / "rep", rows=3)
    assert summary["counts"]["done"] == 5 and len(summary["failed"]) == 2
    assert summary["maps"]["ig"]["examples"] == 5 and summary["maps"]["ig"]["nonfinite"] == 0
    assert summary["scalars"]["score"]["count"] == 5
    assert [e["seconds"] for e in summary["slowest"]] == sorted((e["seconds"] for e in summary["slowest"]),
                                                               reverse=True)
    sheet = np.asarray(Image.open(summary["files"]["contact_sheet"]))
    assert sheet.ndim == 3 and sheet.std() > 0
    assert json.loads(Path(summary["files"]["report"]).read_text())["counts"] == summary["counts"]


def test_volumes_sweep_records_nan_and_wrong_rank(tmp_path, unet_small):
    model, variables = unet_small
    rng = np.random.default_rng(0)
    for i in range(2):
        data.write_nifti(tmp_path / f"v{i}.nii.gz", rng.random((16, 16, 16)).astype(np.float32))
    bad = rng.random((16, 16, 16)).astype(np.float32)
    bad[3, 4, 5] = np.nan
    data.write_nifti(tmp_path / "v2_nan.nii.gz", bad)
    data.write_nifti(tmp_path / "v3_flat.nii", rng.random((16, 16, 1, 2)).astype(np.float32))
    out = str(tmp_path / "unet.zarr")
    sweep.run(model="unet3d", data=str(tmp_path), out=out, methods=["guided_backprop"], batch=2, progress=False,
              model_options={"base_width": 2})
    s = sweep.open_store(out)
    reasons = {n: r for _, n, r in s.failed()}
    assert set(reasons) == {"v2_nan.nii.gz", "v3_flat.nii"}
    assert "non-finite" in reasons["v2_nan.nii.gz"] and "3D volume" in reasons["v3_flat.nii"]
    m, v, _ = sweep.load_model(sweep.sweep_config(model="unet3d", data=str(tmp_path), out=out,
                                                  methods=["guided_backprop"], model_options={"base_width": 2}))
    vol = data.read_nifti(tmp_path / "v1.nii.gz").array
    vol = (vol - vol.min()) / (vol.max() - vol.min())
    want = explain.guided_backprop(m, taps.params_only(v), jnp.asarray(vol), targets.segmentation_sum())
    np.testing.assert_allclose(s.example("v1.nii.gz")["guided_backprop"], np.asarray(want), rtol=1e-4,
                               atol=1e-5 * float(jnp.abs(want).max()))


def test_weights_file_is_recorded_and_gives_the_same_maps(store, images, tmp_path):
    """The sweep's own initialisation saved as a checkpoint and swept from the file: the record
    names the file and its hash, and the maps are the initialisation's."""
    import jaxretina

    path, _ = store
    cfg = dict(model="driu", data=images, batch=2, progress=False, seed=3, methods=["guided_backprop"])
    model, variables, _ = sweep.load_model(sweep.sweep_config(out=path, **cfg))
    ckpt = jaxretina.save("driu", model, variables, tmp_path / "ckpt")
    out = str(tmp_path / "from_file.zarr")
    sweep.run(weights=ckpt, out=out, **cfg)
    s, ref = sweep.open_store(out), sweep.open_store(path)
    h = hashlib.sha256()   # the directory's files: relative names and contents, in walk order, sorted
    for dirpath, dirnames, files in os.walk(ckpt):
        dirnames.sort()
        for f in sorted(files):
            h.update(os.path.relpath(os.path.join(dirpath, f), ckpt).encode())
            h.update(Path(dirpath, f).read_bytes())
    assert s.meta["weights"] == {"source": os.path.abspath(ckpt), "sha256": h.hexdigest(), "from_file": True}
    assert s.status_counts() == ref.status_counts()
    for i in np.flatnonzero(s.status() == sweep.DONE):   # another program (GBP alone): float32 rounding
        got, want = s.example(int(i))["guided_backprop"], ref.example(int(i))["guided_backprop"]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())


def test_top_class_is_the_predicted_class_and_its_gradient():
    z = jnp.asarray([0.3, 2.0, -1.0, 1.5])
    assert float(targets.top_class()(z)) == 2.0
    np.testing.assert_allclose(float(targets.top_class(probability=True)(z)), float(jax.nn.softmax(z)[1]), rtol=1e-6)
    np.testing.assert_array_equal(jax.grad(targets.top_class())(z), [0.0, 1.0, 0.0, 0.0])


def test_tfds_split_in_float16_and_the_report_command(tmp_path, capsys):
    from jaxretina import cli

    tree = data.make_fake_drive(tmp_path / "DRIVE", n_train=1, n_test=2, height=48, width=40, seed=1)
    test_split = data.drive_tfds(tmp_path / "tfds", "test", manual_dir=tree)     # prepares the builder
    out = str(tmp_path / "tfds.zarr")
    sweep.run(model="driu", data="tfds:drive", split="test", tfds_dir=str(tmp_path / "tfds"), out=out, batch=2,
              methods=["saliency"], dtype="float16", progress=False)
    s = sweep.open_store(out)
    assert s.names == [ex.name for ex in test_split] and s.status_counts()["done"] == 2
    assert s.root["maps/saliency"].dtype == np.float16
    image = test_split[1].image
    assert s.info(1)["sha256"] == hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()
    model, variables, _ = sweep.load_model(sweep.sweep_config(model="driu", data="x", out=out, methods=["saliency"]))
    f = explain.model_fn(model, taps.params_only(variables), targets.segmentation_sum())
    want = np.asarray(explain.saliency(f, preprocess.driu_caffe_input(image)))
    np.testing.assert_allclose(s.example(1)["saliency"].astype(np.float32), want, rtol=2e-3,
                               atol=1e-3 * np.abs(want).max())
    assert cli.main(["report", out, "--out", str(tmp_path / "rep")]) == 0
    assert "2 done, 0 failed" in capsys.readouterr().out
    assert (tmp_path / "rep" / "contact_sheet.png").exists()


def test_dry_run_reports_memory_and_time_and_writes_nothing(images, tmp_path):
    out = tmp_path / "never.zarr"
    r = sweep.dry_run(model="driu", data=images, out=str(out), methods=METHODS, batch=2, seed=3, progress=False,
                      programs="one")   # the store fixture's program: read from the run's compile cache
    assert r["examples"] == 7 and r["problems"] == 1          # the grayscale one; the truncated shows on loading
    assert r["compiles_needed"] == 1 and r["batches"] == 3 and r["devices"] == 1 and r["shape"] == [32, 32, 3]
    assert r["memory_per_device_bytes"] > 0 and r["seconds_per_example"] > 0
    # ig, guided, smoothgrad, lrp, deeplift, gradient_shap, guided Grad-CAM, neuron conductance; 2 cams,
    # excitation backprop, layer gradient×activation and conductance summed over channels, internal
    # influence at DRIU's last layer (one channel), LayerCAM, EigenCAM, AblationCAM and ScoreCAM; occlusion,
    # feature ablation, Shapley sampling, KernelSHAP, LIME (input's shape), FullGrad, RISE and the extremal
    # perturbation mask and occlusion sensitivity (spatial)
    assert r["store_bytes_per_example"] == 4 * (13 * 32 * 32 * 3 + 14 * 32 * 32)
    assert not out.exists()
