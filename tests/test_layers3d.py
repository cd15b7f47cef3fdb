"""Volume layers against PyTorch's Conv3d, MaxPool3d and Upsample (float64): values, input and
kernel gradients, the pool's first-maximum switches on ties, and errors."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp

torch = pytest.importorskip("torch")

from jaxretina.models.layers3d import Conv3D, conv3d, max_pool_2x2x2, upsample_nearest_2x  # noqa: E402


def _ncdhw(a):
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, -1, 1)))


def _ndhwc(t):
    return np.moveaxis(t.detach().numpy(), 1, -1)


@pytest.mark.parametrize("k, cin, stack", [(3, 2, True), (3, 5, False), (1, 3, None), (5, 2, True), (5, 3, False)])
def test_conv3d_matches_torch_values_and_gradients(k, cin, stack):
    rng = np.random.default_rng(k * 10 + cin)
    x = rng.normal(size=(2, 6, 8, 4, cin))
    w = rng.normal(size=(k, k, k, cin, 3))
    cot = rng.normal(size=(2, 6, 8, 4, 3))
    xt, wt = _ncdhw(x).requires_grad_(True), torch.from_numpy(w.transpose(4, 3, 0, 1, 2).copy()).requires_grad_(True)
    yt = torch.nn.functional.conv3d(xt, wt, padding=k // 2)
    yt.backward(_ncdhw(cot))
    with jax.enable_x64(True):
        f = lambda a, b: conv3d(a, b, stack=stack)  # noqa: E731
        y, pull = jax.vjp(f, jnp.asarray(x), jnp.asarray(w))
        gx, gw = pull(jnp.asarray(cot))
    np.testing.assert_allclose(np.asarray(y), _ndhwc(yt), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(gx), _ndhwc(xt.grad), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(gw), wt.grad.numpy().transpose(2, 3, 4, 1, 0), rtol=1e-10, atol=1e-10)


def test_conv3d_module_has_nn_conv_parameters_and_values():
    import flax.linen as nn

    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 4, 6, 8, 3)), jnp.float32)
    ours, theirs = Conv3D(5), nn.Conv(5, (3, 3, 3), padding=1)
    v = theirs.init(jax.random.key(1), x)
    assert jax.tree.map(jnp.shape, ours.init(jax.random.key(1), x)) == jax.tree.map(jnp.shape, v)
    v = jax.tree.map(lambda a: a + jnp.asarray(np.random.default_rng(2).normal(size=a.shape), a.dtype), v)
    with jax.default_matmul_precision("highest"):
        np.testing.assert_allclose(np.asarray(ours.apply(v, x)), np.asarray(theirs.apply(v, x)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="k odd"):
        conv3d(x, jnp.zeros((2, 2, 2, 3, 1)))
    with pytest.raises(ValueError, match=r"\(N, D, H, W, C\)"):
        conv3d(x[0], jnp.zeros((3, 3, 3, 3, 1)))


def test_pool_and_upsample_match_torch_with_first_max_switches():
    rng = np.random.default_rng(3)
    # ReLU'd values: many tied zeros inside windows, where the switch rule decides the gradient
    x = np.maximum(rng.normal(size=(2, 4, 6, 8, 3)), 0.0)
    x[0, :2, :2, :2, 0] = 0.7  # a window of ties at a non-zero value too
    cot = rng.normal(size=(2, 2, 3, 4, 3))
    xt = _ncdhw(x).requires_grad_(True)
    yt = torch.nn.functional.max_pool3d(xt, 2, 2)
    yt.backward(_ncdhw(cot))
    with jax.enable_x64(True):
        y, pull = jax.vjp(max_pool_2x2x2, jnp.asarray(x))
        (gx,) = pull(jnp.asarray(cot))
        u, upull = jax.vjp(upsample_nearest_2x, jnp.asarray(cot))
        (gu,) = upull(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(y), _ndhwc(yt))
    np.testing.assert_allclose(np.asarray(gx), _ndhwc(xt.grad), rtol=0, atol=1e-12)
    ct = _ncdhw(cot).requires_grad_(True)
    ut = torch.nn.functional.interpolate(ct, scale_factor=2, mode="nearest")
    ut.backward(_ncdhw(x))
    np.testing.assert_array_equal(np.asarray(u), _ndhwc(ut))
    np.testing.assert_allclose(np.asarray(gu), _ndhwc(ct.grad), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="must be even"):
        max_pool_2x2x2(jnp.zeros((1, 4, 5, 4, 1)))
