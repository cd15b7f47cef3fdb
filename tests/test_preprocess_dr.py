"""Seed 001's fundus preprocessing and the ImageNet normalisation of seed 002."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp
from scipy import ndimage

from jaxretina import preprocess
from jaxretina.models import DenseNet121, InceptionV3


def _disc(height, width, diameter, centre_col, value=(150, 90, 40), dot=None):
    """A flat-coloured retina disc on black, optional 3×3 white dot at (row, col)."""
    rows, cols = np.mgrid[:height, :width]
    r = diameter / 2.0
    inside = (rows - (height - 1) / 2.0) ** 2 + (cols - centre_col) ** 2 <= r * r
    img = np.zeros((height, width, 3), np.uint8)
    img[inside] = value
    if dot is not None:
        img[dot[0] - 1 : dot[0] + 2, dot[1] - 1 : dot[1] + 2] = 255
    return img, inside


def test_gaussian_blur_matches_scipy_mirror():
    rng = np.random.default_rng(0)
    img = rng.random((2, 37, 41, 3)).astype(np.float32) * 255
    for sigma in (0.7, 3.0):
        ours = np.asarray(preprocess.gaussian_blur(jnp.asarray(img), sigma))
        ref = ndimage.gaussian_filter(img, sigma=(0, sigma, sigma, 0), mode="mirror", truncate=4.0)
        np.testing.assert_allclose(ours, ref, atol=2e-3, rtol=1e-5)


def test_retina_extent_counts_the_middle_row():
    img, inside = _disc(91, 130, 71, 60.0)
    diameter, centre = preprocess.retina_extent(img)
    assert int(diameter) == int(inside[45].sum())
    assert float(centre) == pytest.approx(60.0, abs=0.5)
    batch = np.stack([img, _disc(91, 130, 51, 70.0)[0]])
    d, c = preprocess.retina_extent(batch)
    assert d.shape == (2,) and int(d[1]) == int(_disc(91, 130, 51, 70.0)[1][45].sum())


def test_seed001_geometry_fill_and_flat_interior():
    # The retina (diameter 300, centre column 190) must fill the 256 output; a dot at a quarter
    # diameter right of the centre lands a quarter of 256 right of the output centre.
    img, _ = _disc(321, 400, 300, 190.0, dot=(160, 190 + 75))
    out = np.asarray(jax.jit(preprocess.seed001_input)(img))
    assert out.shape == (256, 256, 3) and out.dtype == np.float32
    rr, cc = np.mgrid[:256, :256] + 0.5 - 128
    outside = rr ** 2 + cc ** 2 > (0.9 * 128) ** 2
    assert np.all(out[outside] == preprocess.HALF_GRAY)            # step 5: half-gray fill
    flat = (rr ** 2 + cc ** 2 < 60 ** 2) & ((rr) ** 2 + (cc - 64) ** 2 > 20 ** 2)
    assert np.abs(out[flat] - 128).max() < 1.0                      # step 4: flat regions -> gray
    peak = np.unravel_index(out.sum(-1).argmax(), (256, 256))
    assert abs(peak[0] - 127.5) <= 2 and abs(peak[1] - (127.5 + 64)) <= 2


def test_seed001_batched_equals_per_image_and_uint8_equals_float():
    a, _ = _disc(120, 150, 100, 70.0, dot=(50, 80))
    b, _ = _disc(120, 150, 80, 80.0, value=(200, 120, 60), dot=(70, 60))
    batch = np.stack([a, b])
    prep = jax.jit(lambda im: preprocess.seed001_input(im, size=64))
    together = np.asarray(prep(batch))
    alone = np.stack([np.asarray(prep(im)) for im in batch])
    np.testing.assert_allclose(together, alone, atol=1e-4)
    np.testing.assert_allclose(np.asarray(prep(a.astype(np.float32))), alone[0], atol=1e-4)


def test_seed001_errors():
    img, _ = _disc(60, 60, 40, 30.0)
    with pytest.raises(ValueError, match="channels-first"):
        preprocess.seed001_input(np.transpose(img, (2, 0, 1)))
    with pytest.raises(TypeError, match="uint8"):
        preprocess.seed001_input(img.astype(np.int32))
    with pytest.raises(ValueError, match="crop"):
        preprocess.seed001_input(img, crop=1.0)
    with pytest.raises(ValueError, match="sigma"):
        preprocess.gaussian_blur(jnp.zeros((8, 8, 3)), 0.0)


def test_imagenet_normalize_matches_torchvision():
    torch = pytest.importorskip("torch")
    from torchvision.transforms import functional as TF

    rng = np.random.default_rng(1)
    img = (rng.random((17, 19, 3)) * 255).astype(np.uint8)
    ours = np.asarray(preprocess.imagenet_normalize(img))
    t = TF.normalize(TF.to_tensor(img), mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    np.testing.assert_allclose(ours, t.permute(1, 2, 0).numpy(), rtol=1e-5, atol=1e-5)


def test_model_normalization_is_the_normalised_input():
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.random((1, 80, 80, 3)) * 255, jnp.float32)
    norm = preprocess.imagenet_normalization(255.0)
    # DenseNet (small): whole model, and head(stem(x)) == model(x) with the normalisation in the stem
    plain = DenseNet121(num_classes=3, growth_rate=4, block_config=(1, 1, 1, 1), num_init_features=8, bn_size=2)
    normed = plain.clone(normalization=norm)
    variables = jax.jit(plain.init)(jax.random.key(0), x)
    want = jax.jit(plain.apply)(variables, preprocess.imagenet_normalize(x))
    got = jax.jit(normed.apply)(variables, x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)
    stem = jax.jit(lambda v, z: normed.apply(v, z, part="stem"))(variables, x)
    head = jax.jit(lambda v, z: normed.apply(v, z, part="head"))(variables, stem)
    np.testing.assert_allclose(np.asarray(head), np.asarray(got), rtol=1e-4, atol=1e-5)
    # Inception V3: its stem (the first convolution + BatchNorm) sees the normalised image
    inc = InceptionV3(num_classes=3)
    v = jax.jit(lambda k, z: inc.init(k, z, part="stem"))(jax.random.key(0), x)   # the stem's variables only
    stem_of = lambda m: jax.jit(lambda vv, z: m.apply(vv, z, part="stem"))  # noqa: E731
    np.testing.assert_allclose(np.asarray(stem_of(inc.clone(normalization=norm))(v, x)),
                               np.asarray(stem_of(inc)(v, preprocess.imagenet_normalize(x))), rtol=1e-4, atol=1e-4)
