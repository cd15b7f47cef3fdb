"""Quadrature rules for the path integral of Integrated Gradients.

``∫₀¹ g(α) dα ≈ Σ_k w_k · g(α_k)`` with nodes ``α_k`` and weights ``w_k`` from a named rule:

=====================  ==============================  ==============================
rule                   nodes α_k (k = 0 … n−1)          weights w_k
=====================  ==============================  ==============================
``riemann_left``       k / n                           1 / n
``riemann_right``      (k + 1) / n                     1 / n
``riemann_middle``     (k + ½) / n                     1 / n
``riemann_trapezoid``  k / (n − 1)                     1 / (n − 1), halved at both ends
``captum_trapezoid``   k / (n − 1)                     1 / n, halved at both ends
``gausslegendre``      (1 + ξ_k) / 2, ξ Legendre roots  (Gauss weights) / 2
``clenshaw_curtis``    (1 − cos(kπ/(n − 1))) / 2       (Clenshaw–Curtis weights) / 2
=====================  ==============================  ==============================

All weights sum to 1 except ``captum_trapezoid``, which reproduces Captum's
``riemann_trapezoid`` exactly — its weights sum to (n − 1)/n — so that parity tests compare
like with like.  ``gausslegendre`` is exact for polynomials of degree ≤ 2n − 1 in α;
``clenshaw_curtis`` (endpoints included) for degree ≤ n − 1, converges nearly as fast on
smooth paths, and is **nested**: the nodes of n = 2^j + 1 are among those of 2^(j+1) + 1, so
the adaptive IG (``steps="auto"``) reuses every gradient when it doubles.

Example::

    >>> alphas, weights = quadrature("riemann_trapezoid", 5)
    >>> float(weights.sum())
    1.0
"""

from __future__ import annotations

import numpy as np

__all__ = ["RULES", "quadrature"]

RULES = (
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
    "captum_trapezoid",
    "gausslegendre",
    "clenshaw_curtis",
)


def quadrature(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights ``(alphas, weights)``, float64 arrays of shape (steps,)."""
    if rule not in RULES:
        raise ValueError(f"unknown integration rule {rule!r}; expected one of {list(RULES)}")
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool):
        raise TypeError(f"steps must be an int; found {type(steps).__name__} {steps!r}")
    minimum = 2 if rule in ("riemann_trapezoid", "captum_trapezoid", "clenshaw_curtis") else 1
    if steps < minimum:
        raise ValueError(f"rule {rule!r} needs steps >= {minimum}; found {steps}")
    n = int(steps)
    k = np.arange(n, dtype=np.float64)
    if rule == "gausslegendre":
        xi, w = np.polynomial.legendre.leggauss(n)
        return 0.5 * (1.0 + xi), 0.5 * w
    if rule == "clenshaw_curtis":
        return _clenshaw_curtis(n - 1)
    if rule == "riemann_left":
        return k / n, np.full(n, 1.0 / n)
    if rule == "riemann_right":
        return (k + 1) / n, np.full(n, 1.0 / n)
    if rule == "riemann_middle":
        return (k + 0.5) / n, np.full(n, 1.0 / n)
    step = 1.0 / (n - 1) if rule == "riemann_trapezoid" else 1.0 / n
    weights = np.full(n, step)
    weights[[0, -1]] *= 0.5
    return k / (n - 1), weights


def _clenshaw_curtis(intervals: int) -> tuple[np.ndarray, np.ndarray]:
    """Clenshaw–Curtis on [0, 1] with ``intervals + 1`` nodes (Trefethen's explicit weights)."""
    m = intervals
    theta = np.pi * np.arange(m + 1) / m
    w = np.zeros(m + 1)
    v = np.ones(m - 1)
    inner = theta[1:-1]
    if m % 2 == 0:
        w[0] = w[m] = 1.0 / (m * m - 1)
        for j in range(1, m // 2):
            v -= 2.0 * np.cos(2 * j * inner) / (4 * j * j - 1)
        v -= np.cos(m * inner) / (m * m - 1)
    else:
        w[0] = w[m] = 1.0 / (m * m)
        for j in range(1, (m - 1) // 2 + 1):
            v -= 2.0 * np.cos(2 * j * inner) / (4 * j * j - 1)
    w[1:-1] = 2.0 * v / m
    return 0.5 * (1.0 - np.cos(theta)), 0.5 * w
