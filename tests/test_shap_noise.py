"""GradientSHAP and NoiseTunnel's variants: parity with Captum 0.9.0 given the same random
draws (Captum's own draws are reproduced from its seeds and passed in), float64 on both sides,
and the closed form on a linear model."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from jaxretina import explain

torch = pytest.importorskip("torch")

SHAPE = (5, 7, 3)


@pytest.fixture(scope="module")
def weights():
    rng = np.random.default_rng(0)
    return rng.standard_normal((6, int(np.prod(SHAPE)))) * 0.3, rng.standard_normal(6), rng.standard_normal(6)


def _f_jax(weights):
    w, c, v = (jnp.asarray(a) for a in weights)
    return lambda x: jnp.sum(v * jax.nn.softplus(w @ x.reshape(-1) + c))


def _f_torch(weights):
    w, c, v = (torch.from_numpy(a) for a in weights)

    def f(x):   # (N, 5, 7, 3) -> (N,)
        return (v * torch.nn.functional.softplus(x.reshape(x.shape[0], -1) @ w.T + c)).sum(-1)
    return f


# Anchor: Captum 0.9.0 GradientShap (n_samples=12, stdevs=0.2, 3 baselines); its draws
# reproduced from the same numpy/torch seeds in the order it makes them; tolerance 1e-12.
def test_gradient_shap_matches_captum_with_the_same_draws(weights):
    from captum.attr import GradientShap

    rng = np.random.default_rng(1)
    x = rng.standard_normal(SHAPE)
    baselines = rng.standard_normal((3, *SHAPE))
    samples, stdev = 12, 0.2
    np.random.seed(5)
    torch.manual_seed(5)
    want = GradientShap(_f_torch(weights)).attribute(
        torch.from_numpy(x)[None].requires_grad_(), baselines=torch.from_numpy(baselines), n_samples=samples,
        stdevs=stdev)[0].detach().numpy()
    np.random.seed(5)
    torch.manual_seed(5)   # the same calls, in Captum's order: noise, baseline choice, alpha
    noise = torch.normal(0, torch.tensor(stdev).repeat((samples, *SHAPE))).double().numpy()   # float32, as Captum draws
    index = np.random.choice(3, samples)
    alpha = np.random.uniform(0.0, 1.0, samples)
    with jax.enable_x64(True):
        got = explain.gradient_shap(_f_jax(weights), jnp.asarray(x), jnp.asarray(baselines),
                                    draws=explain.ShapDraws(index, alpha, noise), chunk=5)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


def test_gradient_shap_expectation_is_ig_averaged_over_baselines_on_a_linear_model():
    with jax.enable_x64(True):
        w = jnp.asarray(np.random.default_rng(2).standard_normal(SHAPE))
        x = jnp.asarray(np.random.default_rng(3).standard_normal(SHAPE))
        baselines = jnp.asarray(np.random.default_rng(4).standard_normal((4, *SHAPE)))
        f = lambda z: jnp.sum(w * z) + 1.5    # noqa: E731 - linear: IG is exact for any path
        draws = explain.ShapDraws(jnp.arange(400) % 4, jnp.linspace(0.01, 0.99, 400),
                                  jnp.zeros((400, *SHAPE)))
        got = explain.gradient_shap(f, x, baselines, draws=draws)
        want = jnp.mean(jnp.stack([(x - b) * w for b in baselines]), axis=0)   # mean_k IG(x; b_k)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
        one = explain.gradient_shap(f, x, baselines, key=jax.random.key(0), samples=64, chunk="all")
        two = explain.gradient_shap(f, x, baselines, key=jax.random.key(0), samples=64, chunk=7)
        np.testing.assert_allclose(one, two, rtol=1e-12)     # chunking changes memory, not the result


def test_gradient_shap_errors():
    f = lambda z: jnp.sum(z)   # noqa: E731
    x = jnp.ones(SHAPE)
    with pytest.raises(ValueError, match=r"baselines must be \(K, \*x.shape\) = \(K, 5, 7, 3\); found \(2, 5, 7\)"):
        explain.gradient_shap(f, x, jnp.ones((2, 5, 7)), key=jax.random.key(0))
    with pytest.raises(TypeError, match="give key="):
        explain.gradient_shap(f, x, jnp.ones(SHAPE))
    with pytest.raises(ValueError, match="samples must be a positive int"):
        explain.gradient_shap(f, x, jnp.ones(SHAPE), key=jax.random.key(0), samples=0)


# Anchor: Captum 0.9.0 NoiseTunnel around Saliency(abs=False) with its torch.normal draws
# reproduced; tolerance 1e-12.
@pytest.mark.parametrize("variant", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_noise_tunnel_variants_match_captum(weights, variant):
    from captum.attr import NoiseTunnel, Saliency

    x = np.random.default_rng(6).standard_normal(SHAPE)
    samples, stdev = 9, 0.3
    torch.manual_seed(7)
    want = NoiseTunnel(Saliency(_f_torch(weights))).attribute(
        torch.from_numpy(x)[None].requires_grad_(), nt_type=variant, nt_samples=samples, stdevs=stdev,
        abs=False)[0].detach().numpy()
    torch.manual_seed(7)
    noise = torch.normal(0, torch.tensor(stdev).repeat((samples, *SHAPE))).double().numpy()   # float32, as Captum draws
    with jax.enable_x64(True):
        f = _f_jax(weights)
        grads = jnp.stack([jax.grad(f)(jnp.asarray(x + n)) for n in noise])
        mean, mean_sq = grads.mean(0), (grads ** 2).mean(0)
        closed = {"smoothgrad": mean, "smoothgrad_sq": mean_sq, "vargrad": mean_sq - mean ** 2}[variant]
        np.testing.assert_allclose(closed, want, rtol=1e-10, atol=1e-12)    # Captum's definitions
        # and jaxretina's variant from its own draws: the same statistics of the same gradients
        key = jax.random.key(3)
        got = explain.smoothgrad(lambda z: explain.saliency(f, z, abs=False), jnp.asarray(x), key=key,
                                 samples=samples, sigma=stdev, chunk=4, variant=variant)
        ours = jnp.stack([jax.grad(f)(jnp.asarray(x) + stdev * jax.random.normal(jax.random.fold_in(key, s), SHAPE))
                          for s in range(samples)])
        m, m2 = ours.mean(0), (ours ** 2).mean(0)
        np.testing.assert_allclose(got, {"smoothgrad": m, "smoothgrad_sq": m2, "vargrad": m2 - m ** 2}[variant],
                                   rtol=1e-10, atol=1e-12)


class _GradAt(NamedTuple):
    """A chunked term: ``w ⊙ ∇f`` at one point (the shape of GradientSHAP's)."""

    f: Any

    def __call__(self, consts, item):
        x, = consts
        point, weight = item
        return weight * jax.grad(self.f)(x + point)


def test_a_memory_budget_picks_the_chunk_and_changes_nothing_else(weights):
    f = _f_jax(weights)
    x = jnp.asarray(np.random.default_rng(8).standard_normal(SHAPE), jnp.float32)
    bases = jnp.stack([jnp.zeros(SHAPE), jnp.ones(SHAPE)])
    key = jax.random.key(1)
    want = explain.gradient_shap(f, x, bases, key=key, samples=12, chunk="all")
    got = explain.gradient_shap(f, x, bases, key=key, samples=12, budget=1e9)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    # the chunker: XLA's bytes grow with the chunk; a budget between one and two items gives one
    items = (jnp.zeros((12, *SHAPE)), jnp.ones((12,)))
    one, two = (explain.chunk_memory(_GradAt(f), (x,), items, c) for c in (1, 2))
    assert two > one
    assert explain.chunk_for_budget(_GradAt(f), (x,), items, (one + two) / 2) == (1, one)
    assert explain.chunk_for_budget(_GradAt(f), (x,), items, 1e12)[0] == 12
    with pytest.raises(ValueError, match="one item already needs"):
        explain.chunk_for_budget(_GradAt(f), (x,), items, one / 2)
    with pytest.raises(ValueError, match="give chunk or budget, not both"):
        explain.gradient_shap(f, x, bases, key=key, samples=12, chunk=2, budget=1e9)
