"""One full-size run per model: DRIU at DRIVE's 584×565 (ceil pooling, crops, one-pass CAM)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxretina import explain, targets
from jaxretina.models import DRIU
from jaxretina.preprocess import driu_caffe_input, resize_image


@pytest.mark.fullsize
def test_driu_drive_size_all_layer_grad_cam():
    from skimage import data

    x = driu_caffe_input(resize_image(data.retina(), 584, 565))
    model = DRIU()
    variables = model.init(jax.random.key(0), x[None])
    target = targets.segmentation_sum()
    cams = explain.grad_cam(model, variables, x, target, relu=False)
    assert list(cams) == list(model.layer_names())
    assert all(m.shape == (584, 565) and bool(jnp.isfinite(m).all()) for m in cams.values())
    # The same pass's gradient at upsample8 (the coarsest side, crop offset 4) by hand:
    # d Σ sigmoid(logit) / d upsample8[p, k] = sigmoid'(logit_p) · w_fuse[48 + k].
    _, grads = explain.layer_gradients(model, variables, x, target, layers=["upsample8"])
    s = jax.nn.sigmoid(model.apply(variables, x[None])[0, ..., 0])
    w = variables["params"]["new_score_weighting"]["kernel"][0, 0, 48:64, 0]
    np.testing.assert_allclose(grads["upsample8"], (s * (1 - s))[..., None] * w, rtol=1e-4, atol=1e-8)
    alone = explain.grad_cam(model, variables, x, target, layers=["conv4_3"], relu=False)
    np.testing.assert_allclose(alone["conv4_3"], cams["conv4_3"], rtol=1e-4,
                               atol=1e-5 * float(jnp.abs(cams["conv4_3"]).max()))
