"""cam_coverage against hand-computed numbers, and seed 002's Grad-CAM on the last dense block."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from jaxretina import explain, models, targets


def test_cell_and_lesion_numbers_by_hand():
    mask = np.zeros((224, 224), bool)
    mask[40:44, 40:44] = True          # 16 px, inside cell (1, 1)
    mask[60:70, 90:100] = True         # 100 px, cells (1, 2) and (2, 2), (1, 3), (2, 3)
    r = explain.cam_coverage((224, 224, 3), (7, 7), lesion_mask=mask)
    assert r.cell_shape == (32.0, 32.0) and r.cell_fraction == pytest.approx(1 / 49)
    assert r.lesion_pixels == 116 and r.lesions == 2 and r.lesion_areas == (100, 16)
    assert r.median_lesion_over_cell == pytest.approx(58 / 1024)
    assert r.cells_touched == 5 and r.cam_mass_in_lesions is None
    flat = explain.cam_coverage((224, 224), np.ones((7, 7)), lesion_mask=mask)
    assert flat.cam_mass_in_lesions == pytest.approx(116 / 224 ** 2)      # a flat CAM: chance level
    peaked = np.zeros((7, 7))
    peaked[1, 1] = 1.0
    hit = explain.cam_coverage((224, 224), peaked, lesion_mask=mask)
    assert hit.cam_mass_in_lesions > flat.cam_mass_in_lesions
    with pytest.raises(ValueError, match="lesion_mask must have the image's shape"):
        explain.cam_coverage((224, 224), (7, 7), lesion_mask=mask[:10])
    with pytest.raises(ValueError, match="2-D CAM"):
        explain.cam_coverage((224, 224), np.ones((7, 7, 2)))


def test_seed002_grad_cam_last_dense_block_is_7x7_at_224_and_upsampled_bilinearly():
    from jaxretina import taps

    # the full DenseNet121 at 224²: shapes only (no compile)
    shapes = taps.layer_shapes(models.DenseNet121(num_classes=5), None, (1, 224, 224, 3))
    assert shapes["denseblock4"].shape == (1, 7, 7, 1024)
    # the upsampled map is the bilinear resize of the raw one (a small DenseNet, 96² -> 3×3)
    model = models.DenseNet121(num_classes=5, growth_rate=8, block_config=(1, 1, 1, 1), num_init_features=16,
                               bn_size=2)
    x = jax.random.uniform(jax.random.key(0), (96, 96, 3))
    variables = jax.jit(model.init)(jax.random.key(1), x[None])
    both = [explain.grad_cam(model, variables, x, targets.class_logit(4), layers="denseblock4", resize=r,
                             relu=False, normalize=False)["denseblock4"] for r in (False, True)]
    raw, up = both
    assert raw.shape == (3, 3) and up.shape == (96, 96)
    want = jax.image.resize(raw, (96, 96), method="linear", antialias=False)
    np.testing.assert_allclose(np.asarray(up), np.asarray(want), rtol=1e-5, atol=1e-6 * float(jnp.abs(raw).max()))
