"""CI smoke runs of the seed experiments on the generated fake dataset (--quick sizes)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script, out):
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / script), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=1200, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def test_seed001_integrated_gradients_smoke(tmp_path):
    _run("seed001_integrated_gradients.py", tmp_path)
    r = json.loads((tmp_path / "seed001.json").read_text())
    for fig in ("class_ig", "resultant_regions", "counterfactuals", "linearity"):
        assert (tmp_path / f"seed001_{fig}.png").stat().st_size > 1000
    assert r["data"]["kind"] == "generated fake dataset" and r["training"]["steps"] == 4
    assert set(r["metrics"]) >= {"accuracy", "quadratic_weighted_kappa", "referable", "confusion_matrix"}
    for per_class in r["class_ig"]["per_example"].values():
        assert set(per_class) == {"grade0", "grade2", "grade4"}
        assert all(np.isfinite(v["delta"]) for v in per_class.values())
    ns = r["neuron_study"]
    assert len(ns["positive"]["indices"]) == 2 and min(ns["positive"]["attributions"]) >= max(
        ns["negative"]["attributions"])
    cf = r["counterfactuals"]
    assert all(0 <= p <= 1 for p in cf["ig"]["probability_grade1"] + cf["gradient"]["probability_grade1"])
    lin = r["linearity"]
    assert len(lin["c"]) == 3 and np.all(np.diff(lin["c"]) > 0)
    assert (tmp_path / "tuned" / "jaxretina.json").exists()


def test_seed002_densenet_gradcam_smoke(tmp_path):
    _run("seed002_densenet_gradcam.py", tmp_path)
    r = json.loads((tmp_path / "seed002.json").read_text())
    assert (tmp_path / "seed002_grad_cam.png").stat().st_size > 1000
    g = r["grad_cam"]
    assert g["cam_shape"] == [3, 3] and g["cell_pixels"] == [32.0, 32.0]   # 96 px input, 32× downsampling
    assert g["summary"]["images_with_lesions"] == 4                         # the fake data's masks were found
    assert 0 <= g["summary"]["mean_cam_mass_in_lesions"] <= 1
    assert r["data"]["train"] + r["data"]["test"] == 20
    assert list(r["table1"]) == ["densenet121", "resnet101", "vgg16"]                  # the seed's Table 1
    assert all(0 <= v <= 1 for row in r["table1"].values() for v in row.values() if v is not None)
    assert "| resnet101 |" in (tmp_path / "seed002_table1.md").read_text()
    assert r["networks"]["resnet101"]["grad_cam"]["cam_shape"] == [3, 3]                 # layer4: 32× as well
    assert r["networks"]["vgg16"]["grad_cam"]["cam_shape"] == [6, 6]                     # block 5's conv: 16×
    assert r["networks"]["vgg16"]["training"]["trainable"][-1] == "classifier"
    for name in ("resnet101", "vgg16"):
        assert (tmp_path / f"seed002_grad_cam_{name}.png").stat().st_size > 1000
        assert (tmp_path / f"tuned_{name}" / "jaxretina.json").exists()


def test_seed003_unet3d_attributions_smoke(tmp_path):
    _run("seed003_unet3d_attributions.py", tmp_path)
    r = json.loads((tmp_path / "seed003.json").read_text())
    for fig in ("input", "guided_backprop", "deconvnet", "integrated_gradients", "layerwise_gbp"):
        assert (tmp_path / f"seed003_{fig}.png").stat().st_size > 1000
    import nibabel as nib
    assert nib.load(tmp_path / "seed003_guided_backprop.nii.gz").shape == (48, 32, 32)
    assert nib.load(tmp_path / "seed003_layerwise_gbp.nii.gz").shape == (48, 32, 32, 16)
    assert r["data"]["kind"] == "vessel phantom" and r["window"]["patches"] == 2 and r["training"]["steps"] == 3
    for m in ("guided_backprop", "deconvnet", "integrated_gradients"):
        assert 0 < r["methods"][m]["max_abs"] <= 1 + 1e-6          # per-patch normalised, averaged
        assert 0 <= r["methods"][m]["mass_on_vessels"] <= 1
    assert len(r["layers"]) == 16 and set(r["agreement"]) == {
        "guided_backprop~deconvnet", "guided_backprop~integrated_gradients", "deconvnet~integrated_gradients"}
    assert np.isfinite(r["ig_first_patch"]["delta"])


def test_seed000_driu_gradcam_smoke(tmp_path):
    _run("seed000_driu_gradcam.py", tmp_path)
    r = json.loads((tmp_path / "seed000.json").read_text())
    for fig in ("grad_cam_test", "grad_cam_retina", "intervention"):
        assert (tmp_path / f"seed000_{fig}.png").stat().st_size > 1000
    assert r["data"]["kind"] == "generated fake DRIVE tree" and r["training"]["steps"] == 3
    assert set(r["metrics"]) >= {"mean_miou", "accuracy", "sensitivity", "specificity", "auc", "per_image_miou"}
    assert len(r["metrics"]["per_image_miou"]) == r["data"]["test"] == 3
    assert r["grad_cam"]["layers"][0] == "conv1_1" and len(r["grad_cam"]["layers"]) == 21
    iv = r["intervention"]
    assert set(iv["mean_miou"]) == {"conv1_2_16", "upsample2", "upsample4", "upsample8"}
    assert all(v["1.0"] == pytest.approx(iv["baseline_mean_miou"], abs=1e-6) for v in iv["mean_miou"].values())
    assert iv["functional_vs_weight_edit_max_abs_diff"] < 1e-3
    assert (tmp_path / "retrained" / "jaxretina.json").exists()


def test_seed004_feature_visualization_smoke(tmp_path):
    _run("seed004_feature_visualization.py", tmp_path)
    r = json.loads((tmp_path / "seed004.json").read_text())
    for fig in ("activations_conv1_2", "activations_conv3_3", "deconvnet", "grad_cam"):
        assert (tmp_path / f"seed004_{fig}.png").stat().st_size > 1000
    per_layer = r["dead_filters"]["per_layer"]
    assert per_layer["conv1_2"]["filters"] == 64 and r["dead_filters"]["images"] == 4
    assert all(0 <= v["dead"] <= v["filters"] for v in per_layer.values())
    assert set(r["deconvnet"]) == {"conv1_2", "conv2_2", "conv3_3", "conv4_3"}
    assert all(v["max_abs"] > 0 and len(v["channels"]) == 2 for v in r["deconvnet"].values())
    assert all(v["finite"] and v["max_abs"] > 0 for v in r["even_kernels_and_average_pooling"].values())
    assert 0 < r["grad_cam"]["max"] <= 1 + 1e-6
    for name, layer in (("vgg16", "block5_conv3"), ("vgg19", "block5_conv4")):      # the seed's VGG check
        v = r["vgg"][name]
        assert v["weights"] is None and v["cam_layer"] == layer and 0 < v["cam_max"] <= 1 + 1e-6
        assert v["deconvnet"]["max_abs"] > 0 and len(v["deconvnet"]["channels"]) == 2
        assert (tmp_path / f"seed004_{name}.png").stat().st_size > 1000
        assert (tmp_path / f"seed004_{name}_activations_block3_conv3.png").stat().st_size > 1000


def test_method_ranking_smoke(tmp_path):
    _run("method_ranking.py", tmp_path)
    r = json.loads((tmp_path / "ranking.json").read_text())
    assert r["data"]["kind"] == "generated fake lesion dataset" and r["sweep"]["counts"]["done"] == 5
    assert set(r["tables"]) == {"deletion", "deletion_aopc", "road", "sparseness", "pointing_game", "auroc"}
    for t in r["tables"].values():
        assert sorted(row["map"] for row in t["rows"]) == ["gradcam/norm5", "saliency"]
        assert sum(row["p_best"] for row in t["rows"]) == pytest.approx(1.0)
    assert (tmp_path / "ranking.png").stat().st_size > 1000
    assert "p_best" in (tmp_path / "ranking.md").read_text()
    assert 'data-ready="0"' in (tmp_path / "report" / "report.html").read_text()   # set to 1 by its script


def test_randomisation_study_smoke(tmp_path):
    _run("randomisation_study.py", tmp_path)
    r = json.loads((tmp_path / "randomisation.json").read_text())["results"]
    dense, driu = r["densenet121"], r["driu"]
    assert dense["steps"][0] == "classifier" and dense["steps"][-1] == "stem" and len(dense["steps"]) == 6
    assert set(dense["methods"]) == {"saliency", "grad_cam"} and set(driu["methods"]) == {"saliency"}
    for rec in (dense, driu):
        for m in rec["methods"].values():
            assert len(m["spearman_abs"]["mean"]) == len(m["ssim"]["mean"]) == len(m["hog"]["mean"]) == len(rec["steps"])
            assert all(-1 <= v <= 1 for v in m["spearman_abs"]["mean"] + m["ssim"]["mean"])
            assert all(-1 - 1e-6 <= v <= 1 + 1e-6 or np.isnan(v) for v in m["hog"]["mean"])
            assert np.isfinite(m["efficient_mprt"]["mean"])
    assert len(driu["steps"]) == 3
    for fig in ("randomisation_curves", "randomisation_maps_densenet121", "randomisation_maps_driu"):
        assert (tmp_path / f"{fig}.png").stat().st_size > 1000
