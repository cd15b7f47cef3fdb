"""Seed 000's vessel-segmentation metrics against SciPy erosion and scikit-learn on the kept pixels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from jaxretina import metrics

sk = pytest.importorskip("sklearn.metrics")


def _maps(n=3, h=29, w=34, seed=0):
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:h, :w]
    fov = (rows - h / 2) ** 2 + (cols - w / 2) ** 2 <= (0.45 * min(h, w)) ** 2
    fov = np.broadcast_to(fov, (n, h, w)).copy()
    fov[1, :, :3] = True                                   # touches the image border: eroded there too
    target = rng.random((n, h, w)) < 0.2
    probs = np.clip(target * 0.35 + rng.random((n, h, w)) * 0.65, 0, 1).astype(np.float32)
    probs[0, :4, :4] = 0.5                                 # ties, and a value exactly at the threshold
    return probs, target, fov


@pytest.mark.parametrize("pixels", [0, 1, 2])
def test_erode_mask_matches_scipy(pixels):
    _, _, fov = _maps()
    ref = np.stack([ndimage.binary_erosion(m, np.ones((3, 3)), iterations=pixels, border_value=0) if pixels else m
                    for m in fov])
    np.testing.assert_array_equal(metrics.erode_mask(fov, pixels), ref)


def test_scores_match_sklearn_on_the_eroded_fov():
    probs, target, fov = _maps()
    got = jax.jit(metrics.segmentation_scores)(probs, target, fov)
    region = np.stack([ndimage.binary_erosion(m, np.ones((3, 3)), border_value=0) for m in fov])
    pred = probs > 0.5
    for i in range(len(probs)):
        r = region[i]
        t, p = target[i][r], pred[i][r]
        vessel = sk.jaccard_score(t, p, pos_label=1)
        background = sk.jaccard_score(t, p, pos_label=0)
        assert float(got["vessel_iou"][i]) == pytest.approx(vessel, rel=1e-6)
        assert float(got["miou"][i]) == pytest.approx((vessel + background) / 2, rel=1e-6)
    t, p, s = target[region], pred[region], probs[region]
    tn, fp, fn, tp = sk.confusion_matrix(t, p).ravel()
    assert float(got["accuracy"]) == pytest.approx(sk.accuracy_score(t, p), rel=1e-6)
    assert float(got["sensitivity"]) == pytest.approx(tp / (tp + fn), rel=1e-6)
    assert float(got["specificity"]) == pytest.approx(tn / (tn + fp), rel=1e-6)
    assert float(got["auc"]) == pytest.approx(sk.roc_auc_score(t, s), rel=1e-6)


def test_masked_miou_is_the_scores_miou_and_ignores_outside_pixels():
    probs, target, fov = _maps()
    miou = metrics.masked_miou(probs > 0.5, target, fov)
    np.testing.assert_allclose(miou, metrics.segmentation_scores(probs, target, fov)["miou"], rtol=1e-7)
    wild = np.where(fov, probs, np.random.default_rng(1).random(probs.shape)).astype(np.float32)
    np.testing.assert_array_equal(metrics.masked_miou(wild > 0.5, target, fov), miou)
    perfect = metrics.masked_miou(target, target, fov)
    np.testing.assert_array_equal(perfect, 1.0)
    np.testing.assert_allclose(metrics.masked_miou(target[0], target[0], fov[0]), 1.0)   # one map: ()


def test_roc_auc_valid_equals_the_kept_subset():
    rng = np.random.default_rng(2)
    y, s, keep = rng.random(200) < 0.3, np.round(rng.random(200), 1), rng.random(200) < 0.6
    got = metrics.roc_auc(y, jnp.asarray(s), keep)
    assert float(got) == pytest.approx(sk.roc_auc_score(y[keep], s[keep]), rel=1e-6)


def test_report_is_json_ready():
    import json

    probs, target, fov = _maps()
    rep = metrics.segmentation_report(probs[..., None], target, fov)
    json.dumps(rep)
    assert rep["n"] == 3 and len(rep["per_image_miou"]) == 3
    assert rep["mean_miou"] == pytest.approx(np.mean(rep["per_image_miou"]))


def test_errors_name_shapes():
    probs, target, fov = _maps()
    with pytest.raises(ValueError, match=r"expected shape \(3, 29, 34\).*found \(3, 29, 33\)"):
        metrics.segmentation_scores(probs, target[..., :-1], fov)
    with pytest.raises(ValueError, match="a map"):
        metrics.masked_miou(probs.reshape(-1), target, fov)
    with pytest.raises(ValueError, match="valid needs"):
        metrics.roc_auc(target[0, 0], probs[0, 0], fov[0, :2].reshape(-1))
