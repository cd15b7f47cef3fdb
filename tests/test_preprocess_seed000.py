"""Seed 000's DRIVE preprocessing, step by step and as one chain, against SciPy/NumPy."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp
from scipy import ndimage
from skimage import data, transform

from jaxretina import preprocess


def _retina_and_mask(size=96):
    rgb = (transform.resize(data.retina(), (size, size + 7), anti_aliasing=True) * 255).astype(np.uint8)
    rows, cols = np.mgrid[:size, : size + 7]
    mask = ((rows - size / 2) ** 2 + (cols - (size + 7) / 2) ** 2 <= (0.45 * size) ** 2).astype(np.uint8) * 255
    return rgb, mask


def _reference(rgb, mask, window, m=128 / 255):
    g = rgb[..., 1].astype(np.float64)
    g = ndimage.gaussian_filter(g, 1.0, truncate=2.0, mode="mirror")   # radius int(2·1 + ½) = 2
    g = g * (mask > 0)
    g = 1 - (g - g.min()) / (g.max() - g.min())
    return (g + m - ndimage.uniform_filter(g, size=window, mode="mirror"))[..., None]


@pytest.mark.parametrize("window", [41, 9])
def test_chain_matches_scipy(window):
    rgb, mask = _retina_and_mask()
    ours = np.asarray(preprocess.seed000_input(rgb, mask, window=window))
    assert ours.shape == (96, 103, 1) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, _reference(rgb, mask, window), atol=2e-5)


def test_each_step_matches_its_formula():
    rgb, mask = _retina_and_mask(40)
    g = preprocess.green_channel(rgb)
    np.testing.assert_array_equal(np.asarray(g)[..., 0], rgb[..., 1].astype(np.float32))
    masked = np.asarray(preprocess.apply_fov_mask(g + 1, mask == 255))
    assert (masked[mask == 0] == 0).all() and (masked[mask > 0] > 0).all()
    inv = np.asarray(preprocess.minmax_invert(g))
    assert inv.min() == pytest.approx(0.0) and inv.max() == pytest.approx(1.0)
    np.testing.assert_allclose(inv[..., 0], 1 - (rgb[..., 1] - rgb[..., 1].min()) / np.ptp(rgb[..., 1]), atol=1e-6)
    # a constant image equalises to M everywhere; its min-max inversion is defined (1), not NaN
    flat = jnp.full((12, 15, 1), 0.3, jnp.float32)
    np.testing.assert_allclose(preprocess.illumination_equalize(flat, window=5), 128 / 255, atol=1e-6)
    np.testing.assert_array_equal(preprocess.minmax_invert(flat), 1.0)


@pytest.mark.parametrize("window", [1, 3, 41, 61])   # 61 > the image: mirrored more than once, as SciPy
def test_box_mean_matches_uniform_filter(window):
    x = np.random.default_rng(0).random((2, 23, 30, 1)).astype(np.float32)
    ref = ndimage.uniform_filter(x, size=(1, window, window, 1), mode="mirror")
    np.testing.assert_allclose(preprocess.box_mean(jnp.asarray(x), window), ref, atol=2e-6)


def test_batched_equals_per_image_and_compiles_once():
    rgb, mask = _retina_and_mask(48)
    rgb2 = rgb[::-1].copy()
    fn = jax.jit(preprocess.seed000_input)
    batch = np.asarray(fn(np.stack([rgb, rgb2]), np.stack([mask, mask])))
    np.testing.assert_allclose(batch[1], fn(rgb2, mask), atol=1e-6)   # per image: its own min and max
    np.testing.assert_allclose(batch[0], fn(rgb, mask), atol=1e-6)
    fn(np.stack([rgb2, rgb]), np.stack([mask, mask]))
    assert fn._cache_size() == 2   # one program per shape: batch and single image


def test_driu_input_is_the_caffe_input_of_the_gray():
    rgb, mask = _retina_and_mask(32)
    gray = np.asarray(preprocess.seed000_input(rgb, mask))
    x = np.asarray(preprocess.seed000_driu_input(rgb, mask))
    assert x.shape == (32, 39, 3)
    np.testing.assert_allclose(x, 255 * gray - np.asarray(preprocess.DRIU_CAFFE_MEAN_BGR, np.float32), atol=1e-3)


def test_errors_name_what_was_expected():
    rgb, mask = _retina_and_mask(32)
    with pytest.raises(ValueError, match="channels-first"):
        preprocess.seed000_input(np.moveaxis(rgb, -1, 0), mask)
    with pytest.raises(ValueError, match=r"mask must match .*\(32, 39\).*\(32, 38\)"):
        preprocess.seed000_input(rgb, mask[:, :-1])
    with pytest.raises(ValueError, match="odd int"):
        preprocess.seed000_input(rgb, mask, window=40)
    with pytest.raises(ValueError, match="one-channel"):
        preprocess.minmax_invert(jnp.zeros((4, 4, 3)))
    with pytest.raises(TypeError, match="float"):
        preprocess.illumination_equalize(jnp.zeros((4, 4, 1), jnp.int32))
