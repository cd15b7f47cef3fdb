import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from jaxretina import explain
from jaxretina.explain import RULES

RNG = np.random.default_rng(1)
X = jnp.asarray(RNG.normal(size=(5, 4, 3)), jnp.float32)
B = jnp.asarray(RNG.normal(size=(5, 4, 3)), jnp.float32)
A = jnp.asarray(RNG.normal(size=(5, 4, 3)), jnp.float32)


def linear(z):
    return (A * z).sum()


def quadratic(z):
    return (A * z * z).sum()


@pytest.mark.parametrize("rule", RULES)
def test_exact_on_linear_function(rule):
    ig = explain.integrated_gradients(linear, X, baseline=B, steps=4, rule=rule)
    scale = 3 / 4 if rule == "captum_trapezoid" else 1.0  # Captum's weights sum to (n-1)/n
    np.testing.assert_allclose(ig.values, scale * A * (X - B), rtol=1e-5, atol=1e-6)
    if rule != "captum_trapezoid":
        assert abs(float(ig.delta)) < 1e-4


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_middle", "riemann_trapezoid"])
def test_quadratic_closed_form_and_completeness(rule):
    # Along the path the gradient 2A(b + a(x-b)) is linear in a: these rules integrate it exactly,
    # giving IG = A (x^2 - b^2); completeness: sum IG = f(x) - f(b).
    ig = explain.integrated_gradients(quadratic, X, baseline=B, steps=3, rule=rule)
    np.testing.assert_allclose(ig.values, A * (X * X - B * B), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(ig.delta), 0.0, atol=1e-4)


def test_completeness_error_shrinks_with_steps():
    f = lambda z: jnp.tanh(z).sum() + (A * jnp.sin(2 * z)).sum()  # noqa: E731
    deltas = [abs(float(explain.integrated_gradients(f, X, baseline=B, steps=n, rule="riemann_left").delta))
              for n in (4, 16, 64)]
    assert deltas[0] > deltas[1] > deltas[2]


def test_delta_matches_definition():
    f = lambda z: jnp.tanh(z).sum()  # noqa: E731
    ig = explain.integrated_gradients(f, X, baseline=B, steps=5, rule="riemann_right")
    np.testing.assert_allclose(float(ig.delta), float(ig.values.sum() - (f(X) - f(B))), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 3, 7, 8, 100, None])
def test_chunked_equals_unchunked(chunk):
    f = lambda z: jnp.tanh(z * A).sum()  # noqa: E731
    whole = explain.integrated_gradients(f, X, baseline=0.0, steps=8, chunk="all")
    part = explain.integrated_gradients(f, X, baseline=0.0, steps=8, chunk=chunk)
    np.testing.assert_allclose(part.values, whole.values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(part.delta, whole.delta, atol=1e-5)


def test_batched_equals_per_example():
    f = lambda z: jnp.tanh(z * A).sum()  # noqa: E731
    xs = jnp.stack([X, B, X * 2])
    batched = jax.vmap(lambda xi: explain.integrated_gradients(f, xi, baseline=0.5, steps=6, chunk=4))(xs)
    for i in range(3):
        one = explain.integrated_gradients(f, xs[i], baseline=0.5, steps=6, chunk=4)
        np.testing.assert_allclose(batched.values[i], one.values, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(batched.delta[i], one.delta, atol=1e-5)


def test_partial_passes_data_and_equals_closure():
    def scaled(a, z):
        return (a * jnp.tanh(z)).sum()

    via_partial = explain.integrated_gradients(Partial(scaled, A), X, baseline=B, steps=5)
    via_closure = explain.integrated_gradients(lambda z: scaled(A, z), X, baseline=B, steps=5)
    np.testing.assert_allclose(via_partial.values, via_closure.values, rtol=1e-6)


def test_traces_once_per_shape():
    traces = []

    def f(z):
        traces.append(z.shape)
        return jnp.tanh(z).sum()

    for _ in range(3):
        explain.integrated_gradients(f, X, baseline=0.0, steps=8, chunk=4)
    n_first = len(traces)
    assert n_first >= 1
    explain.integrated_gradients(f, X + 1, baseline=0.0, steps=8, chunk=4)
    assert len(traces) == n_first  # same shape: no retrace
    explain.integrated_gradients(f, X[:2], baseline=0.0, steps=8, chunk=4)
    assert len(traces) > n_first  # new shape: traced anew


def test_saliency_and_gradient_x_input():
    np.testing.assert_allclose(explain.saliency(quadratic, X, abs=False), 2 * A * X, rtol=1e-6)
    np.testing.assert_allclose(explain.saliency(quadratic, X), jnp.abs(2 * A * X), rtol=1e-6)
    np.testing.assert_allclose(explain.gradient_x_input(linear, X), A * X, rtol=1e-6)


def test_smoothgrad():
    key = jax.random.key(3)
    sal = lambda z: explain.saliency(quadratic, z, abs=False)  # noqa: E731
    whole = explain.smoothgrad(sal, X, key=key, samples=12, sigma=0.3, chunk="all")
    for chunk in (5, None):
        chunked = explain.smoothgrad(sal, X, key=key, samples=12, sigma=0.3, chunk=chunk)
        np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)
    # The gradient 2A(x + e) is linear in the noise: the mean equals 2A(x + mean e), and the mean
    # noise over 12 samples is far from zero at sigma=0.3 only with tiny probability.
    assert float(jnp.abs(whole - 2 * A * X).max()) < 2 * float(jnp.abs(A).max()) * 0.3
    assert not np.allclose(whole, 2 * A * X, atol=1e-6)  # noise was really added
    zero = explain.smoothgrad(sal, X, key=key, samples=3, sigma=0.0)
    np.testing.assert_allclose(zero, 2 * A * X, rtol=1e-6)
    ig = explain.smoothgrad(lambda z: explain.integrated_gradients(linear, z, baseline=0.0, steps=2),
                            X, key=key, samples=4, sigma=0.1, chunk=2)
    assert isinstance(ig, explain.Attribution) and ig.values.shape == X.shape


def test_errors():
    with pytest.raises(ValueError, match="unknown integration rule"):
        explain.integrated_gradients(linear, X, baseline=0.0, rule="simpson")
    with pytest.raises(ValueError, match="expected finite values; found 1 NaN"):
        explain.integrated_gradients(linear, X.at[0, 0, 0].set(jnp.nan), baseline=0.0)
    with pytest.raises(ValueError, match="expected finite values; found 0 NaN and 1 inf"):
        explain.integrated_gradients(linear, np.where(np.arange(60).reshape(5, 4, 3) == 7, np.inf, 1.0).astype(np.float32), baseline=0.0)
    with pytest.raises(ValueError, match=r"baseline of shape \(2,\) does not broadcast"):
        explain.integrated_gradients(linear, X, baseline=jnp.zeros(2))
    with pytest.raises(ValueError, match=r"must map one example to a scalar; it returned shape \(5, 4, 3\)"):
        explain.integrated_gradients(lambda z: z, X, baseline=0.0)
    with pytest.raises(ValueError, match="chunk must be a positive int"):
        explain.integrated_gradients(linear, X, baseline=0.0, chunk=0)
    with pytest.raises(TypeError, match="expected a floating-point array"):
        explain.integrated_gradients(linear, jnp.ones((3,), jnp.int32), baseline=0)
    with pytest.raises(ValueError, match="a baseline is required"):
        explain.integrated_gradients(linear, X, baseline=None)


def _steep(z):
    # Smooth but strongly curved along the path: needs many nodes for a small delta.
    return jnp.tanh(3.0 * (A * z).sum()) + (jnp.sin(4.0 * z) * A).sum()


@pytest.mark.parametrize("rule", ["gausslegendre", "clenshaw_curtis"])
def test_auto_steps_reaches_tolerance_with_the_fewest_doublings(rule):
    for tol in (1e-2, 1e-4):
        ig = explain.integrated_gradients(_steep, X, baseline=B, steps="auto", tol=tol, rule=rule)
        span = abs(float(_steep(X) - _steep(B)))
        assert abs(float(ig.delta)) <= tol * span
        # the same as asking for that many steps (the nested rule reassembles its rounds'
        # gradients), and one doubling fewer would not have been enough
        fixed = explain.integrated_gradients(_steep, X, baseline=B, steps=ig.steps, rule=rule)
        np.testing.assert_allclose(ig.values, fixed.values, rtol=1e-5, atol=1e-6)
        if ig.steps > 9:
            fewer = ig.steps // 2 + (ig.steps % 2)  # 32 -> 16; 33 -> 17
            half = explain.integrated_gradients(_steep, X, baseline=B, steps=fewer, rule=rule)
            assert abs(float(half.delta)) > tol * span
    # a cubic is integrated exactly by 8 Gauss-Legendre nodes: the first round stops
    cubic = explain.integrated_gradients(lambda z: (A * z**3).sum(), X, baseline=B, steps="auto", tol=1e-5)
    assert cubic.steps == 8


def test_auto_steps_compiles_one_chunk_program_and_respects_max_steps():
    traces = []

    def f(z):
        traces.append(z.shape)
        return jnp.tanh(5.0 * z).sum() + jnp.sin(9.0 * z).sum()

    ig = explain.integrated_gradients(f, X, baseline=B, steps="auto", tol=1e-9, max_steps=64)
    assert ig.steps == 64  # the tolerance is out of reach: stops at max_steps, says so
    # one trace for the chunk program and one for the endpoints, whatever the number of rounds
    assert len(traces) <= 3
    with pytest.raises(ValueError, match="steps must be a positive int or 'auto'"):
        explain.integrated_gradients(f, X, baseline=B, steps="adaptive")
    with pytest.raises(ValueError, match="tol must be a positive number"):
        explain.integrated_gradients(f, X, baseline=B, steps="auto", tol=0)
    assert explain.integrated_gradients(f, X, baseline=B, steps=8).steps is None
