"""Smooth and efficient MPRT, grouped randomisation steps, and the discrete entropy they rest on:
each against its definition computed by hand from evaluate.reinitialised, and the entropy
against Quantus 0.6.0's discrete_entropy."""

import functools

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from jaxretina import evaluate
from tests.test_evaluate import _GRADER, _grader_saliency, _small_grader


# Anchor: Quantus 0.6.0 discrete_entropy (numpy.histogram + scipy.stats.entropy), float64, 1e-12;
# also a constant map (NumPy's one-value bins) and the field of view = the subset.
def test_discrete_entropy_matches_quantus():
    complexity = pytest.importorskip("quantus.functions.complexity_func")
    rng = np.random.default_rng(0)
    maps = [rng.normal(size=(20, 24)), np.round(rng.normal(size=(20, 24)) * 2) / 2, np.full((6, 7), 0.3),
            rng.random((5, 6, 7))]
    with jax.enable_x64(True):
        for a in maps:
            for bins in (10, 100):
                want = complexity.discrete_entropy(a=a, x=a, n_bins=bins)
                assert float(evaluate.discrete_entropy(jnp.asarray(a), bins=bins)) == pytest.approx(want, abs=1e-12)
        fov = rng.random((20, 24)) < 0.5
        want = complexity.discrete_entropy(a=maps[0][fov], x=None, n_bins=30)
        got = evaluate.discrete_entropy(jnp.asarray(maps[0]), fov=jnp.asarray(fov), bins=30)
        assert float(got) == pytest.approx(want, abs=1e-12)
    with pytest.raises(ValueError, match="bins must be a positive integer"):
        evaluate.discrete_entropy(jnp.ones((3, 3)), bins=0)


# Definitions, float32 maps, 1e-5: a grouped step re-initialises all its layers; smooth MPRT's
# maps are the means over the noisy copies fold_in(fold_in(key, NOISE_STREAM), s) scaled by the
# input's range; efficient MPRT is the relative rise of the 100-bin entropy when every layer is
# re-initialised.
def test_groups_smooth_and_efficient_mprt_are_their_definitions():
    from scipy.stats import spearmanr

    grader, variables = _small_grader()
    _GRADER[:] = [grader]
    x = jnp.asarray(np.random.default_rng(14).random((32, 32, 3)) * 255, jnp.float32)
    layers = evaluate.parameter_layers(grader, variables, x)
    key = jax.random.key(3)
    saliency = jax.jit(_grader_saliency)                                 # the by-hand side, compiled once
    reinit = jax.jit(evaluate.reinitialised, static_argnums=1)
    groups = [tuple(layers[-6:-2]), tuple(layers[-2:])]               # bottom-up: block 2's layers, then the top
    top_down = layers[-2:] + layers[-6:-2]            # groups top-down, each in its given order
    got = np.asarray(evaluate.parameter_randomisation(_grader_saliency, variables, x, layers=groups, key=key))
    original = np.asarray(saliency(variables, x)).ravel()
    for step, count in enumerate((2, 6)):
        pick = jnp.asarray([j < count for j in range(len(top_down))])
        by_hand = np.asarray(saliency(reinit(variables, tuple(top_down), key, pick), x)).ravel()
        assert got[step] == pytest.approx(spearmanr(original, by_hand)[0], abs=1e-5), step

    smooth, noise = 3, 0.05
    smooth_mprt = functools.partial(evaluate.parameter_randomisation, _grader_saliency, variables, layers=layers[-2:],
                                    key=key, smooth=smooth, noise=noise)
    got = np.asarray(smooth_mprt(x))
    sigma = noise * float(x.max() - x.min())
    draws = [sigma * jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, evaluate.NOISE_STREAM), s),
                                       x.shape, x.dtype) for s in range(smooth)]
    smoothed = lambda v: np.mean([np.asarray(saliency(v, x + d)) for d in draws], axis=0).ravel()  # noqa
    base = smoothed(variables)
    for step in range(2):
        pick = jnp.asarray([j <= step for j in range(2)])
        want = spearmanr(base, smoothed(reinit(variables, tuple(layers[-2:][::-1]), key, pick)))[0]
        assert got[step] == pytest.approx(want, abs=1e-5), step

    efficient = functools.partial(evaluate.efficient_randomisation, _grader_saliency, variables, layers=layers[-3:],
                                  key=key)
    got = float(efficient(x))
    every = reinit(variables, tuple(layers[-3:][::-1]), key, jnp.ones(3, bool))
    entropy = jax.jit(evaluate.discrete_entropy)
    h0, h1 = float(entropy(saliency(variables, x))), float(entropy(saliency(every, x)))
    assert got == pytest.approx((h1 - h0) / h0, abs=1e-5) and h1 != h0
    with pytest.raises(ValueError, match="smooth must be an integer"):
        evaluate.parameter_randomisation(_grader_saliency, variables, x, layers=layers[-2:], key=key, smooth=-1)

    # batch=True: every randomised model explains the stacked examples in one call; each row is
    # the per-example call (its own noise scale in smooth MPRT), float32, 1e-5
    other = x[::-1, :, ::-1] * 0.5 + 20
    both = jnp.stack([x, other])
    rows = np.asarray(smooth_mprt(both, batch=True))
    assert rows.shape == (2, 2)
    np.testing.assert_allclose(rows[0], np.asarray(smooth_mprt(x)), atol=1e-5)
    np.testing.assert_allclose(rows[1], np.asarray(smooth_mprt(other)), atol=1e-5)
    rises = np.asarray(efficient(both, batch=True))
    np.testing.assert_allclose(rises, [float(efficient(x)), float(efficient(other))], atol=1e-5)
    with pytest.raises(ValueError, match="batch must be True or False"):
        efficient(x, batch=1)
    with pytest.raises(ValueError, match=r"non-empty batch \(N, …\)"):
        smooth_mprt(x[0, 0], batch=True)
