"""Seed 003's segmentation targets (argmax count, argmax score, soft count, the class vector)
against NumPy and against torch autograd of the same wrapper."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from jaxretina import explain, targets


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("channels", [1, 3])
def test_values_against_numpy(channels):
    out = np.random.default_rng(0).normal(size=(4, 5, 6, channels))
    scores = np.concatenate([np.zeros_like(out), out], -1) if channels == 1 else out
    probs = _softmax(scores)
    k = probs.shape[-1]
    assign = probs.argmax(-1)
    for c in range(k):
        assert float(targets.argmax_count(c)(jnp.asarray(out))) == (assign == c).sum()
        np.testing.assert_allclose(float(targets.argmax_score(c)(jnp.asarray(out))), probs[..., c][assign == c].sum(),
                                   rtol=1e-5)
        np.testing.assert_allclose(float(targets.argmax_score(c, probability=False)(jnp.asarray(out))),
                                   scores[..., c][assign == c].sum(), rtol=1e-5)
        np.testing.assert_allclose(float(targets.soft_count(c, 0.5)(jnp.asarray(out))),
                                   _softmax(scores / 0.5)[..., c].sum(), rtol=1e-5)
    vec = targets.class_vector(targets.argmax_count, range(k))(jnp.asarray(out))
    assert vec.shape == (k,) and float(vec.sum()) == out[..., 0].size
    if channels == 1:  # one channel: the soft count at T = 1 is the summed vessel probability
        np.testing.assert_allclose(float(targets.soft_count(1)(jnp.asarray(out))),
                                   float(targets.segmentation_sum()(jnp.asarray(out))), rtol=1e-6)
    # T -> 0: the soft count tends to the hard one
    np.testing.assert_allclose(float(targets.soft_count(1, 1e-4)(jnp.asarray(out))), (assign == 1).sum(), atol=1e-3)


def test_gradients_against_torch_and_their_support():
    torch = pytest.importorskip("torch")
    out = np.random.default_rng(1).normal(size=(3, 4, 5, 3))
    t = torch.from_numpy(out.copy()).requires_grad_(True)
    p = torch.softmax(t, dim=-1)
    onehot = torch.zeros_like(p).scatter_(-1, p.argmax(-1, keepdim=True), 1.0)   # Captum's recipe
    (p * onehot)[..., 2].sum().backward()
    with jax.enable_x64(True):
        g = jax.grad(targets.argmax_score(2))(jnp.asarray(out))
        assert float(jnp.abs(jax.grad(targets.argmax_count(2))(jnp.asarray(out))).max()) == 0.0
        soft = jax.grad(targets.soft_count(2))(jnp.asarray(out))
    np.testing.assert_allclose(np.asarray(g), t.grad.numpy(), rtol=1e-12, atol=1e-14)
    others = out.argmax(-1) != 2          # voxels of other classes pass no gradient
    assert np.all(np.asarray(g)[others] == 0) and np.all(np.abs(np.asarray(soft)).sum(-1) > 0)


def test_vector_ig_of_the_class_vector_matches_one_ig_per_class():
    # a closed-form model: out = x * w (per-voxel logits, 1 channel -> 2 classes)
    w = jnp.asarray(np.random.default_rng(2).normal(size=(4, 4, 4, 1)), jnp.float32)
    x = jnp.asarray(np.random.default_rng(3).normal(size=(4, 4, 4, 1)), jnp.float32)
    vector = targets.class_vector(lambda c: targets.soft_count(c), (0, 1))
    both = explain.integrated_gradients_vector(jax.tree_util.Partial(lambda w_, z: vector(z * w_), w), x,
                                               baseline=0.0, steps=16)
    for c in (0, 1):
        one = explain.integrated_gradients(jax.tree_util.Partial(lambda w_, z: targets.soft_count(c)(z * w_), w), x,
                                           baseline=0.0, steps=16)
        np.testing.assert_allclose(np.asarray(both.values[c]), np.asarray(one.values), rtol=1e-5, atol=1e-7)
    # the two classes' soft counts sum to the voxel count: their attributions cancel
    np.testing.assert_allclose(np.asarray(both.values.sum(0)), 0.0, atol=1e-5)


def test_errors():
    with pytest.raises(ValueError, match="class 2 out of range for 2 classes"):
        targets.argmax_score(2)(jnp.zeros((4, 4, 4, 1)))
    with pytest.raises(ValueError, match="temperature must be a positive"):
        targets.soft_count(1, 0.0)
    with pytest.raises(ValueError, match="segmentation output"):
        targets.argmax_count(1)(jnp.zeros((2, 4, 4, 4, 1)))
    assert targets.argmax_score(1) is targets.argmax_score(1)   # reused: no recompiles
