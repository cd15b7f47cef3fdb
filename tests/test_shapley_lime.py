"""Shapley values, KernelSHAP and LIME over a feature mask: Captum 0.9.0's ``ShapleyValueSampling``,
``KernelShap`` and ``Lime`` given the same permutations / coalitions on the same weights (the small
DenseNet pair, float64 both sides); exact Shapley values against the permutation definition
written here; closed forms on a linear model; the linear fits against scikit-learn."""

import itertools
import math

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from jaxretina import explain

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

from tests.anchor_pairs import CLASS, f64, nchw  # noqa: E402


def _hwc(t):
    return t.detach().numpy()[0].transpose(1, 2, 0)


def _given(rows):
    """A Captum perturbation generator yielding the given coalitions."""
    def generate(_inputs, **_kwargs):
        for r in rows:
            yield torch.from_numpy(np.asarray(r, np.int64)[None])
    return generate


def _blocks(shape, rows, cols, seed):
    r, c = np.indices(shape)
    count = rows * cols
    return np.random.default_rng(seed).permutation(count)[(r * rows // shape[0]) * cols + c * cols // shape[1]]


# Anchor: Captum 0.9.0 on the small DenseNet (float64 models), 12 shuffled blocks as features.
# ShapleyValueSampling with its permutation generator replaced by ours (3 permutations); KernelShap
# and Lime with their perturbation generators yielding our coalitions; Lime's fit as
# SkLearnLinearRegression and as SkLearnLasso(alpha=0.01).  Captum fits in float32 and sklearn's
# Lasso stops at tol 1e-4: tolerances 1e-6 (Shapley), 1e-5 (least squares), 1e-4 (Lasso) of the
# largest value (measured 5e-8; 4e-7 KernelShap, 7e-7 Lime; 1e-6).
def test_match_captum_on_densenet(torch_dense):
    from captum._utils.models.linear_model import SkLearnLasso, SkLearnLinearRegression

    model, variables, ref, x, target = torch_dense
    ref = ref.double()
    xt = nchw(x)
    labels = _blocks(x.shape[:2], 3, 4, seed=0)
    mask = torch.from_numpy(labels[None, None])
    with jax.enable_x64(True):
        v, xj = f64(variables, x)
        f = explain.model_fn(model, v, target)
        perms = np.asarray(explain.shapley_permutations(jax.random.key(0), 3, 12))
        svs = captum_attr.ShapleyValueSampling(ref)
        svs.permutation_generator = lambda features, samples: iter([p.tolist() for p in perms])
        want = _hwc(svs.attribute(xt, baselines=0.1, target=CLASS, feature_mask=mask, n_samples=3))
        got = np.asarray(explain.shapley_value_sampling(f, xj, labels, key=jax.random.key(0), permutations=3,
                                                        baseline=0.1, chunk=11))
        assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max()

        z = np.asarray(explain.kernel_shap_samples(jax.random.key(1), 30, 12))
        ks = captum_attr.KernelShap(ref)
        ks.perturb_func = _given(z)
        want = _hwc(ks.attribute(xt, baselines=0.1, target=CLASS, feature_mask=mask, n_samples=30))
        got = np.asarray(explain.kernel_shap(f, xj, labels, samples=z, baseline=0.1, chunk=8))
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()

        z = np.asarray(explain.lime_samples(jax.random.key(2), 40, 12))
        for alpha, fit, tol in ((0.0, SkLearnLinearRegression(), 1e-5), (0.01, SkLearnLasso(alpha=0.01), 1e-4)):
            lm = captum_attr.Lime(ref, interpretable_model=fit, perturb_func=_given(z))
            want = _hwc(lm.attribute(xt, baselines=0.1, target=CLASS, feature_mask=mask, n_samples=40))
            got = np.asarray(explain.lime(f, xj, labels, samples=z, baseline=0.1, alpha=alpha, chunk=8))
            assert np.abs(got - want).max() <= tol * np.abs(want).max(), alpha


def _toy(seed=0):
    rng = np.random.default_rng(seed)
    w1, w2 = rng.normal(size=(30, 8)), rng.normal(size=(8,))
    x = jnp.asarray(rng.normal(size=(5, 3, 2)))
    labels = np.arange(15).reshape(5, 3) % 5
    return (lambda z: jnp.tanh(z.reshape(-1) @ w1) @ w2), x, labels


# Anchor: the permutation definition φ_j = (1/F!) Σ_π v(P_j^π ∪ {j}) − v(P_j^π), enumerated here
# over all 120 orders of 5 features in float64; tolerance 1e-12.
def test_exact_shapley_values_match_the_permutation_definition():
    with jax.enable_x64(True):
        f, x, labels = _toy()
        base = 0.3

        def v(kept):
            keep = np.isin(labels, list(kept))[..., None]
            return float(f(jnp.where(keep, x, base)))

        want = np.zeros(5)
        for order in itertools.permutations(range(5)):
            for i, j in enumerate(order):
                want[j] += v(order[: i + 1]) - v(order[:i])
        want /= math.factorial(5)
        got = np.asarray(explain.shapley_values(f, x, labels, baseline=base, chunk=7))
        np.testing.assert_allclose(got[..., 0], want[labels], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(want.sum(), float(f(x)) - float(f(jnp.full_like(x, base))), rtol=1e-12)   # efficiency
        # every permutation once: sampling is the exact value
        perms = np.asarray(list(itertools.permutations(range(5))))
        sampled = explain.shapley_value_sampling(f, x, labels, permutations=perms, baseline=base, chunk=64)
        np.testing.assert_allclose(sampled, got, rtol=1e-12, atol=1e-12)


def test_kernel_shap_tends_to_the_shapley_values_and_is_efficient():
    with jax.enable_x64(True):
        f, x, labels = _toy(1)
        exact = np.asarray(explain.shapley_values(f, x, labels))
        got = np.asarray(explain.kernel_shap(f, x, labels, key=jax.random.key(0), samples=20000, chunk=2048))
        # Monte-Carlo error ~ 1/√N; measured 0.008 of the largest value at N = 20000
        assert np.abs(got - exact).max() <= 0.05 * np.abs(exact).max()
        # the endpoint weight (10⁶ against 20000 unit weights) pins Σβ to v(N) − v(∅) up to a soft
        # constraint's slack: measured 4.7e-4 relative
        total = sum(got[r, c, 0] for r, c in (np.argwhere(labels == j)[0] for j in range(5)))
        np.testing.assert_allclose(total, float(f(x) - f(jnp.zeros_like(x))), rtol=2e-3)


# Closed form: for an additive target t(x) = Σ w·x every method returns each feature's
# contribution Σ_{i ∈ j} w_i (x_i − b_i), whatever the permutations or (full-rank) coalitions.
def test_closed_forms_on_a_linear_model():
    rng = np.random.default_rng(2)
    with jax.enable_x64(True):
        w, x = jnp.asarray(rng.normal(size=(6, 4, 2))), jnp.asarray(rng.normal(size=(6, 4, 2)))
        f = lambda z: (w * z).sum()  # noqa: E731
        labels = np.arange(24).reshape(6, 4) % 6
        part = np.asarray((w * (x - 0.5)).sum(-1))
        want = np.stack([part[labels == j].sum() for j in range(6)])[labels][..., None] * np.ones(2)
        key = jax.random.key(4)
        for got in (explain.shapley_values(f, x, labels, baseline=0.5),
                    explain.shapley_value_sampling(f, x, labels, key=key, permutations=2, baseline=0.5),
                    explain.kernel_shap(f, x, labels, key=key, samples=40, baseline=0.5),
                    explain.lime(f, x, labels, key=key, samples=40, baseline=0.5, alpha=0.0)):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


# Anchor: scikit-learn 1.9 Lasso (tol 1e-12) and LinearRegression with sample weights, on random
# data; LinearRegression with fewer samples than features (its minimum-norm solution); 1e-8.
def test_linear_surrogate_matches_sklearn():
    from sklearn.linear_model import Lasso, LinearRegression

    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        for n, alpha in ((60, 0.01), (60, 0.2), (60, 0.0), (7, 0.0)):
            z = (rng.uniform(size=(n, 12)) < 0.5).astype(np.float64)
            y, w = z @ rng.normal(size=12) + rng.normal(0, 0.1, size=n), rng.uniform(0.1, 1.0, size=n)
            sk = (Lasso(alpha=alpha, tol=1e-12, max_iter=100_000) if alpha else LinearRegression()).fit(z, y, sample_weight=w)
            beta, c = explain.linear_surrogate(z, y, w, alpha=alpha, tol=1e-12)
            np.testing.assert_allclose(beta, sk.coef_, atol=1e-8)
            np.testing.assert_allclose(c, sk.intercept_, atol=1e-8)


def test_drawn_samples_do_not_depend_on_the_chunk():
    f, x, labels = _toy(3)
    key = jax.random.key(5)
    for method, kw in ((explain.shapley_value_sampling, dict(permutations=4)), (explain.kernel_shap, dict(samples=30)),
                       (explain.lime, dict(samples=30))):
        a = method(f, x, labels, key=key, chunk=3, **kw)
        b = method(f, x, labels, key=key, chunk="all", **kw)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    z = np.asarray(explain.kernel_shap_samples(key, 500, 9))
    assert z[0].all() and not z[1].any() and ((z[2:].sum(1) >= 1) & (z[2:].sum(1) <= 8)).all()


def test_errors():
    f, x, labels = _toy()
    with pytest.raises(ValueError, match="permutation of 0 … 4"):
        explain.shapley_value_sampling(f, x, labels, permutations=np.zeros((2, 5), int))
    with pytest.raises(ValueError, match=r"must be \(N, 5\)"):
        explain.kernel_shap(f, x, labels, samples=np.ones((3, 4)))
    with pytest.raises(ValueError, match="only 0 and 1"):
        explain.lime(f, x, labels, samples=np.full((3, 5), 2))
    with pytest.raises(ValueError, match="needs key="):
        explain.lime(f, x, labels, samples=10)
    with pytest.raises(ValueError, match="exact values are offered up to 20"):
        explain.shapley_values(f, jnp.ones((6, 5, 1)), np.arange(30).reshape(6, 5))
    with pytest.raises(ValueError, match="distance must be"):
        explain.lime(f, x, labels, key=jax.random.key(0), distance="manhattan")
    with pytest.raises(ValueError, match="must be integer labels"):
        explain.shapley_values(f, x, labels.astype(float))
