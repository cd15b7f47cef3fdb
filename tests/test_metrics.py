"""jaxretina.metrics against scikit-learn on random labels and scores (ties included)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxretina import metrics

sk = pytest.importorskip("sklearn.metrics")

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("n", [7, 200, 1001])
def test_confusion_accuracy_rates_and_kappa_match_sklearn(n):
    y = RNG.integers(0, 5, n)
    p = np.where(RNG.random(n) < 0.6, y, RNG.integers(0, 5, n))
    c = metrics.confusion_matrix(jnp.asarray(y), jnp.asarray(p), 5)
    np.testing.assert_array_equal(c, sk.confusion_matrix(y, p, labels=range(5)))
    assert float(metrics.accuracy(y, p)) == pytest.approx(sk.accuracy_score(y, p), abs=1e-6)
    recall = sk.recall_score(y, p, labels=range(5), average=None, zero_division=np.nan)
    np.testing.assert_allclose(metrics.sensitivity(y, p, 5), recall, rtol=1e-6)
    for k in range(5):  # specificity = recall of "not k"
        want = sk.recall_score(y != k, p != k)
        assert float(metrics.specificity(y, p, 5)[k]) == pytest.approx(want, abs=1e-6)
    kappa = sk.cohen_kappa_score(y, p, labels=range(5), weights="quadratic")
    assert float(metrics.quadratic_weighted_kappa(y, p, 5)) == pytest.approx(kappa, abs=1e-5)


@pytest.mark.parametrize("ties", [False, True])
def test_roc_auc_matches_sklearn(ties):
    y = metrics.binarize(jnp.asarray(RNG.integers(0, 5, 500)))
    s = RNG.random(500)
    if ties:
        s = np.round(s * 5) / 5  # many equal scores
    s = s + 0.5 * np.asarray(y)  # informative
    assert float(metrics.roc_auc(y, jnp.asarray(s, jnp.float32))) == pytest.approx(
        sk.roc_auc_score(np.asarray(y), s), abs=1e-6)


def test_jittable_and_binary_split():
    y = jnp.array([0, 1, 2, 3, 4, 2])
    np.testing.assert_array_equal(metrics.binarize(y), [0, 0, 1, 1, 1, 1])
    kappa = jax.jit(metrics.quadratic_weighted_kappa, static_argnums=2)(y, y, 5)
    assert float(kappa) == pytest.approx(1.0)
    sens = metrics.sensitivity(metrics.binarize(y), jnp.array([0, 1, 1, 1, 0, 1]), 2)
    assert float(sens[1]) == pytest.approx(3 / 4)


def test_errors():
    with pytest.raises(ValueError, match="same length; found 3 and 2"):
        metrics.accuracy(jnp.array([0, 1, 2]), jnp.array([0, 1]))
    with pytest.raises(ValueError, match="1-D array of labels"):
        metrics.confusion_matrix(jnp.zeros((2, 2), jnp.int32), jnp.zeros((2, 2), jnp.int32), 3)
    with pytest.raises(ValueError, match="integer labels; found dtype float32"):
        metrics.accuracy(jnp.array([0.0, 1.0]), jnp.array([0, 1]))
    with pytest.raises(ValueError, match=r"one value per label, shape \(3,\); found \(2,\)"):
        metrics.roc_auc(jnp.array([0, 1, 1]), jnp.array([0.1, 0.2]))


def test_report_matches_the_single_metrics_and_scikit_learn():
    from sklearn.metrics import cohen_kappa_score, roc_auc_score

    rng = np.random.default_rng(11)
    y = rng.integers(0, 5, 60)
    probs = rng.dirichlet(np.ones(5), 60)
    r = metrics.report(y, probs)
    pred = probs.argmax(1)
    assert r["n"] == 60 and r["accuracy"] == pytest.approx((pred == y).mean())
    assert r["quadratic_weighted_kappa"] == pytest.approx(cohen_kappa_score(y, pred, weights="quadratic"), abs=1e-6)
    bt, bp = y >= 2, pred >= 2
    assert r["referable"]["sensitivity"] == pytest.approx((bp & bt).sum() / bt.sum())
    assert r["referable"]["specificity"] == pytest.approx((~bp & ~bt).sum() / (~bt).sum())
    assert r["referable"]["roc_auc"] == pytest.approx(roc_auc_score(bt, probs[:, 2:].sum(1)), abs=1e-6)
    assert np.asarray(r["confusion_matrix"]).sum() == 60
    one_class = metrics.report(np.zeros(4, int), np.full((4, 5), 0.2))
    assert one_class["referable"]["roc_auc"] is None
