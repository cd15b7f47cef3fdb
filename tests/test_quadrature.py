import numpy as np
import pytest

from jaxretina.explain import RULES, quadrature


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("n", [2, 5, 16])
def test_weights_sum_and_nodes_in_unit_interval(rule, n):
    alphas, weights = quadrature(rule, n)
    assert alphas.shape == weights.shape == (n,)
    assert np.all((alphas >= 0) & (alphas <= 1))
    assert np.all(weights > 0)
    expected = (n - 1) / n if rule == "captum_trapezoid" else 1.0
    np.testing.assert_allclose(weights.sum(), expected, rtol=1e-12)


def test_riemann_nodes_closed_form():
    n = 4
    np.testing.assert_allclose(quadrature("riemann_left", n)[0], [0, 0.25, 0.5, 0.75])
    np.testing.assert_allclose(quadrature("riemann_right", n)[0], [0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(quadrature("riemann_middle", n)[0], [0.125, 0.375, 0.625, 0.875])
    a, w = quadrature("riemann_trapezoid", n)
    np.testing.assert_allclose(a, [0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(w, [1 / 6, 1 / 3, 1 / 3, 1 / 6])
    a, w = quadrature("captum_trapezoid", n)  # Captum: linspace(0, 1, n), 1/n halved at ends
    np.testing.assert_allclose(a, [0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(w, [1 / 8, 1 / 4, 1 / 4, 1 / 8])


@pytest.mark.parametrize("n", [1, 3, 8])
def test_gauss_legendre_exact_to_degree_2n_minus_1(n):
    a, w = quadrature("gausslegendre", n)
    for degree in range(2 * n):
        np.testing.assert_allclose((w * a**degree).sum(), 1 / (degree + 1), rtol=1e-12)


def test_trapezoid_exact_for_linear_and_middle_second_order():
    a, w = quadrature("riemann_trapezoid", 7)
    np.testing.assert_allclose((w * (3 * a + 1)).sum(), 2.5)
    errs = [abs((quadrature("riemann_middle", n)[1] * np.exp(quadrature("riemann_middle", n)[0])).sum()
                - (np.e - 1)) for n in (8, 16)]
    assert 3.5 < errs[0] / errs[1] < 4.5  # O(1/n^2)


def test_errors():
    with pytest.raises(ValueError, match="unknown integration rule 'simpson'.*gausslegendre"):
        quadrature("simpson", 4)
    with pytest.raises(ValueError, match="needs steps >= 2; found 1"):
        quadrature("riemann_trapezoid", 1)
    with pytest.raises(TypeError, match="steps must be an int"):
        quadrature("gausslegendre", 4.0)


@pytest.mark.parametrize("n", [2, 3, 4, 9, 16, 17])
def test_clenshaw_curtis_exact_to_degree_n_minus_1_and_nested(n):
    alphas, weights = quadrature("clenshaw_curtis", n)
    for degree in range(n):
        assert abs((weights * alphas**degree).sum() - 1 / (degree + 1)) < 1e-13
    assert alphas[0] == 0 and alphas[-1] == 1 and np.all(np.diff(alphas) > 0)
    # nodes of 2^j + 1 are the even nodes of 2^(j+1) + 1 (what adaptive IG reuses)
    finer, _ = quadrature("clenshaw_curtis", 2 * (n - 1) + 1)
    np.testing.assert_allclose(finer[0::2], alphas, atol=1e-15)
