"""IG's memory is set by the chunk: XLA's accounting grows affinely with it, and the chunk chosen
for a budget fits it while one more path point would not."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from jaxretina import explain, targets


@pytest.fixture(scope="module")
def problem(unet_small):
    model, variables = unet_small
    f = explain.model_fn(model, variables, targets.segmentation_sum())
    x = jnp.asarray(np.random.default_rng(0).normal(size=(16, 16, 32, 1)), jnp.float32)
    return f, x


def test_memory_grows_affinely_with_the_chunk(problem):
    f, x = problem
    m = {c: explain.ig_chunk_memory(f, x, c) for c in (1, 2, 4)}
    assert m[1] < m[2] < m[4]
    assert abs((m[4] - m[2]) - 2 * (m[2] - m[1])) <= 0.2 * (m[4] - m[2])
    # more than the activations of one forward pass (every layer's output is kept for the backward)
    assert m[2] - m[1] > 16 * 16 * 32 * 2 * 4 * 4


def test_budget_picks_the_largest_chunk_that_fits(problem):
    f, x = problem
    one, two = explain.ig_chunk_memory(f, x, 1), explain.ig_chunk_memory(f, x, 2)
    budget = one + 2.5 * (two - one)
    chunk, need = explain.ig_chunk_for_budget(f, x, budget, steps=16)
    assert 1 <= chunk < 16 and need <= budget < explain.ig_chunk_memory(f, x, chunk + 1)
    assert explain.ig_chunk_for_budget(f, x, 1e12, steps=6)[0] == 6
    got = explain.integrated_gradients(f, x, baseline=0.0, steps=6, chunk=chunk)
    want = explain.integrated_gradients(f, x, baseline=0.0, steps=6, chunk="all")
    np.testing.assert_allclose(np.asarray(got.values), np.asarray(want.values), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="one path point already needs"):
        explain.ig_chunk_for_budget(f, x, 1e3, steps=16)
