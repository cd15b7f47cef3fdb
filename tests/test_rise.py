"""RISE against TorchRay 1.0.0.2: its mask geometry (``_upsample_reflect`` and the shifted crop)
rebuilt from the same cells and shifts, and its saliency given the same masks
(``filter_masks``) on the same weights (the small DenseNet pair, float64); plus the batching
contract (any chunk, the same masks)."""

import math

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from jaxretina import explain

torch = pytest.importorskip("torch")
pytest.importorskip("torchray")

from tests.anchor_pairs import CLASS, f64, nchw  # noqa: E402


def _sigmoid_class(out):
    return jax.nn.sigmoid(out[CLASS])   # TorchRay scores sigmoid(logits)


# Anchor: TorchRay 1.0.0.2 rise._upsample_reflect and its crop, from the cells and shifts
# rise_mask draws; float64; tolerance 1e-12.
@pytest.mark.parametrize("spatial,cells", [((45, 51), 5), ((32, 32), 7)])
def test_mask_geometry_matches_torchray(spatial, cells):
    from torchray.attribution.rise import _upsample_reflect

    key = jax.random.key(3)
    with jax.enable_x64(True):
        mask = np.asarray(explain.rise_mask(key, spatial, cells, 0.5, jnp.float64))
        k_grid, k_shift = jax.random.split(key)
        grid = np.asarray(jax.random.uniform(k_grid, (cells, cells)) < 0.5, np.float64)
        cell = [math.ceil(n / cells) for n in spatial]
        shift = np.asarray(jax.random.randint(k_shift, (2,), 0, jnp.asarray(cell)))
    up = _upsample_reflect(torch.from_numpy(grid)[None, None], tuple(n + c for n, c in zip(spatial, cell)))[0, 0]
    want = up[shift[0]:shift[0] + spatial[0], shift[1]:shift[1] + spatial[1]].numpy()
    np.testing.assert_allclose(mask, want, rtol=1e-12, atol=1e-12)


# Anchor: TorchRay 1.0.0.2 rise(filter_masks=…) with jaxretina's masks, class CLASS; its saliency
# accumulates in float32: tolerance 1e-6 of the largest value.
def test_saliency_matches_torchray_with_the_same_masks(torch_dense):
    from torchray.attribution.rise import rise

    model, variables, ref, x, _ = torch_dense
    with jax.enable_x64(True):
        v, xj = f64(variables, x)
        masks = explain.rise_masks(jax.random.key(0), 40, x.shape[:2], cells=5, dtype=jnp.float64)
        f = explain.model_fn(model, v, _sigmoid_class)
        drawn = np.asarray(explain.rise(f, xj, key=jax.random.key(0), masks=40, cells=5, chunk=16))
        given = np.asarray(explain.rise(f, xj, masks=masks, chunk=7))
    want = rise(ref.double(), nchw(x), num_masks=40, filter_masks=torch.from_numpy(np.array(masks))[:, None],
                batch_size=16)[0, CLASS].numpy()
    assert np.abs(given - want).max() <= 1e-6 * np.abs(want).max()
    np.testing.assert_allclose(drawn, given, rtol=1e-12, atol=1e-14)   # drawn from the key, any chunk


def test_errors():
    x = jnp.ones((6, 5, 2))
    f = lambda z: z.sum()  # noqa: E731
    with pytest.raises(ValueError, match="needs key="):
        explain.rise(f, x, masks=4)
    with pytest.raises(ValueError, match=r"masks must be \(N, 6, 5\)"):
        explain.rise(f, x, masks=jnp.ones((3, 5, 6)))
    with pytest.raises(ValueError, match="0 < p < 1"):
        explain.rise(f, x, key=jax.random.key(0), masks=4, p=1.5)
