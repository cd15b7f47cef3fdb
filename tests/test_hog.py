"""evaluate.hog / hog_similarity against scikit-image's ``feature.hog`` (and SciPy's Pearson) on
the same maps, every block normalisation, odd and even cells, channels-last maps, a remainder
the cells drop; batched == per example; its use as the randomisation checks' similarity; and
hostile options."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from jaxretina import evaluate


def _maps(seed=3):
    rng = np.random.default_rng(seed)
    smooth = np.cumsum(np.cumsum(rng.normal(size=(45, 38)), 0), 1)        # structure, not only noise
    return {"noise": rng.normal(size=(37, 42)), "smooth": smooth, "ties": np.round(rng.normal(size=(40, 40)))}


# Anchor: scikit-image 0.26 ``skimage.feature.hog`` on the same float64 maps.  Tolerance 1e-6 of
# the features' scale: scikit-image sums each cell's votes in a C float (float32) accumulator,
# ours in float64 (measured 4e-8).  Orientation bins are compared on the same float32 edges.
@pytest.mark.parametrize("block_norm", evaluate.HOG_BLOCK_NORMS)
def test_hog_matches_scikit_image(block_norm):
    from skimage.feature import hog as sk_hog

    options = [dict(), dict(orientations=7, pixels_per_cell=(5, 6), cells_per_block=(2, 3)),
               dict(orientations=4, pixels_per_cell=(7, 7), cells_per_block=(1, 1), transform_sqrt=True)]
    with jax.enable_x64(True):
        for name, a in _maps().items():
            for opt in options:
                a_in = np.abs(a) if opt.get("transform_sqrt") else a
                want = sk_hog(a_in, block_norm=block_norm, **opt)
                got = np.asarray(jax.jit(lambda z: evaluate.hog(z, block_norm=block_norm, **opt))(a_in))
                assert got.shape == want.shape, (name, opt)
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * max(1.0, np.abs(want).max()),
                                           err_msg=f"{name} {opt}")


# Anchor: scikit-image's hog with channel_axis=-1 (each pixel's strongest channel), float64, 1e-6.
def test_channels_last_takes_each_pixels_strongest_channel():
    from skimage.feature import hog as sk_hog

    a = np.random.default_rng(5).normal(size=(33, 30, 3))
    with jax.enable_x64(True):
        got = np.asarray(evaluate.hog(jnp.asarray(a), pixels_per_cell=(6, 6), cells_per_block=(2, 2)))
    want = sk_hog(a, pixels_per_cell=(6, 6), cells_per_block=(2, 2), channel_axis=-1)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


# Anchor: SciPy's pearsonr of scikit-image's HOG features (Adebayo et al.'s HOG similarity),
# float64, 1e-6; properties: a map and an affine copy with a positive scale have one HOG
# (similarity 1); batched (jit ∘ vmap) == per example to 1e-12.
def test_hog_similarity_matches_scipy_of_scikit_image_and_batches():
    from scipy.stats import pearsonr
    from skimage.feature import hog as sk_hog

    m = _maps()
    a = m["smooth"]
    b = a + 30 * np.random.default_rng(1).normal(size=a.shape)
    with jax.enable_x64(True):
        got = float(evaluate.hog_similarity(jnp.asarray(a), jnp.asarray(b)))
        assert got == pytest.approx(pearsonr(sk_hog(a), sk_hog(b))[0], abs=1e-6)
        assert float(evaluate.hog_similarity(jnp.asarray(a), jnp.asarray(3 * a - 2))) == pytest.approx(1.0, abs=1e-9)
        stack_a = jnp.asarray(np.stack([a, b, a[::-1]]))
        stack_b = jnp.asarray(np.stack([b, a[:, ::-1], a]))
        batched = jax.jit(jax.vmap(evaluate.hog_similarity))(stack_a, stack_b)
        single = [float(evaluate.hog_similarity(u, v)) for u, v in zip(stack_a, stack_b)]
    np.testing.assert_allclose(np.asarray(batched), single, rtol=0, atol=1e-12)


# Property: as parameter_randomisation's similarity, each step is the HOG similarity of the
# original map and the map of the model re-initialised by hand (float32, 1e-5).
def test_hog_similarity_in_parameter_randomisation():
    from flax import linen as nn

    class Small(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Conv(4, (3, 3), name="conv1")(x))
            x = nn.Conv(1, (3, 3), name="conv2")(x)
            return x.sum()

    model = Small()
    x = jnp.asarray(np.random.default_rng(2).normal(size=(24, 24, 1)), jnp.float32)
    variables = jax.jit(model.init)(jax.random.key(0), x)
    saliency = lambda v, z: jnp.abs(jax.grad(lambda t: model.apply(v, t))(z))[..., 0]  # noqa: E731
    key = jax.random.key(7)
    got = evaluate.parameter_randomisation(saliency, variables, x, layers=["conv1", "conv2"], key=key,
                                           similarity=lambda p, q: evaluate.hog_similarity(
                                               p, q, pixels_per_cell=(4, 4), cells_per_block=(2, 2)))
    by_hand = jax.jit(lambda chosen: evaluate.hog_similarity(
        saliency(variables, x), saliency(evaluate.reinitialised(variables, ["conv2", "conv1"], key, chosen), x),
        pixels_per_cell=(4, 4), cells_per_block=(2, 2)))
    for step in range(2):
        want = by_hand(jnp.arange(2) <= step)
        assert float(got[step]) == pytest.approx(float(want), abs=1e-5), step
    assert float(got.min()) < 0.99


def test_hostile_options_get_clear_errors():
    a = jnp.ones((32, 32))
    with pytest.raises(ValueError, match=r"2-D map \(H, W\) or \(H, W, C\); found shape \(4, 8, 8, 8\)"):
        evaluate.hog(jnp.ones((4, 8, 8, 8)))
    with pytest.raises(ValueError, match="at least 24 rows and 24 columns; found \\(16, 40\\)"):
        evaluate.hog(jnp.ones((16, 40)))
    with pytest.raises(ValueError, match="pixels_per_cell must be two positive integers"):
        evaluate.hog(a, pixels_per_cell=(0, 8))
    with pytest.raises(ValueError, match="pixels_per_cell must be two positive integers"):
        evaluate.hog(a, pixels_per_cell=8)
    with pytest.raises(ValueError, match="block_norm must be one of"):
        evaluate.hog(a, block_norm="L3")
    with pytest.raises(ValueError, match="orientations must be a positive integer"):
        evaluate.hog(a, orientations=True)
    with pytest.raises(ValueError, match="one shape"):
        evaluate.hog_similarity(a, jnp.ones((32, 33)))
    with pytest.raises(ValueError, match="NaN"):
        evaluate.hog(a.at[3, 3].set(jnp.nan))
