"""Localisation: does an attribution map point at the region an expert marked (a lesion, the
vessels)?  One example per call (batch with ``jax.vmap``), any number of axes (2-D images, 3-D
volumes); a map with channels is summed first (``a.sum(-1)``) to compare it with a spatial mask.

With ``a`` the map, ``S`` the region and ``V`` the field of view (every position by default;
positions outside it are left out of every count, sort and sum), ``n = |V|``, ``m = |S ∩ V|``:

=================================  ================================================================
metric                             definition (NaN when ``S ∩ V`` is empty)
=================================  ================================================================
:func:`pointing_game`              1 if a maximum of ``a`` over ``V`` lies in ``S`` (any of tied
                                   maxima), else 0 (Zhang et al. 2018); ``weighted``: a hit scores
                                   ``1 − m / n`` (Quantus' documented variant)
:func:`energy_pointing_game`       ``Σ_S a⁺ / Σ_V a⁺`` (Wang et al.'s Score-CAM; Kohlbrenner et al.'s
                                   attribution localisation); ``weighted``: times ``n / m``
:func:`relevance_mass`             ``Σ_S a / Σ_V a`` (Arras et al. 2022, signed)
:func:`relevance_rank`             the fraction of the ``m`` highest-ranked positions that lie in
                                   ``S`` (Arras et al. 2022)
:func:`top_k_intersection`         the fraction of the ``k`` highest positions in ``S`` (Theiner et
                                   al.); ``concept_influence``: divided by ``m / n``
:func:`localisation_auroc`         ``P(a_i > a_j) + ½ P(a_i = a_j)``, ``i ∈ S``, ``j ∈ V \\ S``
:func:`localisation_auprc`         average precision: ``Σ_t (R_t − R_{t−1}) P_t`` over the distinct
                                   values ``t`` of ``a``, high to low (scikit-learn's)
:func:`threshold_overlap`          IoU and Dice of ``S`` and ``{a > θ}``, ``θ`` Otsu's threshold
                                   (scikit-image's, 256 bins) or the ``1 − q`` quantile (top-q)
=================================  ================================================================

A map that carries no information scores :func:`~jaxretina.evaluate.chance_level` (``m / n``) on
average on all but AUROC (0.5) — report both.  The anchors (Quantus 0.6) differ in places, on
purpose: Quantus' weighted pointing game returns a boolean (it writes the weight into a boolean
array), and its weighted attribution localisation divides by ``x_batch[2:].size`` (examples
from the third on) instead of an example's size; the unweighted forms agree (tests/test_evaluate).

Example::

    >>> a = jnp.zeros((8, 8)).at[2, 3].set(1.0)
    >>> lesion = jnp.zeros((8, 8), bool).at[1:4, 2:5].set(True)
    >>> float(evaluate.pointing_game(a, lesion)), float(evaluate.localisation_auroc(a, lesion))
    (1.0, 0.5...)
    >>> jax.vmap(evaluate.relevance_mass)(jnp.stack([a, 1 - a]), jnp.stack([lesion, lesion])).tolist()
    [1.0, 0.1269...]
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxretina.evaluate.regions import check_map, check_region
from jaxretina.metrics import histogram, roc_auc

__all__ = ["pointing_game", "energy_pointing_game", "relevance_mass", "relevance_rank", "top_k_intersection",
           "localisation_auroc", "localisation_auprc", "threshold_overlap", "otsu_threshold", "Overlap"]


def _inputs(a, mask, fov, who):
    a = check_map(a, who=who)
    region = check_region(mask, a.shape, who=who)
    view = jnp.ones(a.shape, bool) if fov is None else check_region(fov, a.shape, who=who, name="fov")
    return a.reshape(-1), (region & view).reshape(-1), view.reshape(-1)


def _nan_if_empty(value, inside):
    return jnp.where(inside.any(), value, jnp.nan)


def _count(b, dtype):
    """How many entries of the boolean ``b`` are true, as ``dtype`` (strict promotion: no mixing)."""
    return b.sum(dtype=dtype)


def pointing_game(a: Any, mask: Any, *, fov: Any = None, weighted: bool = False) -> jax.Array:
    """1.0 if a largest value of ``a`` (inside ``fov``) lies in ``mask``, else 0.0; NaN for an
    empty region.  ``weighted``: a hit scores ``1 − |mask| / |fov|``."""
    a, s, v = _inputs(a, mask, fov, "pointing_game")
    top = jnp.where(v, a, -jnp.inf)
    hit = (s & (top == top.max())).any()
    score = jnp.where(hit, 1 - _count(s, a.dtype) / _count(v, a.dtype) if weighted else 1, 0).astype(a.dtype)
    return _nan_if_empty(score, s)


def energy_pointing_game(a: Any, mask: Any, *, fov: Any = None, weighted: bool = False) -> jax.Array:
    """``Σ_mask a⁺ / Σ_fov a⁺``: the share of positive attribution inside the region; NaN for an
    empty region or a map without positive values.  ``weighted``: times ``|fov| / |mask|``."""
    a, s, v = _inputs(a, mask, fov, "energy_pointing_game")
    pos = jnp.where(v, jnp.maximum(a, 0), 0)
    score = jnp.where(s, pos, 0).sum() / pos.sum()
    if weighted:
        score = score * _count(v, a.dtype) / _count(s, a.dtype)
    return _nan_if_empty(score, s)


def relevance_mass(a: Any, mask: Any, *, fov: Any = None) -> jax.Array:
    """``Σ_mask a / Σ_fov a`` (signed values, as Arras et al. define it); NaN for an empty region."""
    a, s, v = _inputs(a, mask, fov, "relevance_mass")
    return _nan_if_empty(jnp.where(s, a, 0).sum() / jnp.where(v, a, 0).sum(), s)


def _descending(a, v):
    """Positions ordered by decreasing ``a`` (ties by position), those outside ``v`` last."""
    return jnp.argsort(jnp.where(v, -a, jnp.inf), stable=True)


def relevance_rank(a: Any, mask: Any, *, fov: Any = None) -> jax.Array:
    """The fraction of the ``|mask|`` highest-valued positions (inside ``fov``) that lie in the
    region; NaN for an empty region.  Tied values are ranked by position (row-major)."""
    a, s, v = _inputs(a, mask, fov, "relevance_rank")
    hits = s[_descending(a, v)] & (jnp.arange(a.size, dtype=jnp.int32) < s.sum(dtype=jnp.int32))
    return _nan_if_empty(_count(hits, a.dtype) / _count(s, a.dtype), s)


def top_k_intersection(a: Any, mask: Any, *, k: int, fov: Any = None, concept_influence: bool = False) -> jax.Array:
    """The fraction of the ``k`` highest-valued positions (inside ``fov``) that lie in the region;
    ``concept_influence``: divided by ``|mask| / |fov|``.  NaN for an empty region."""
    a, s, v = _inputs(a, mask, fov, "top_k_intersection")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= a.size:
        raise ValueError(f"top_k_intersection: k must be an integer in [1, {a.size}] (the map's size); found {k!r}")
    score = _count(s[_descending(a, v)[:k]], a.dtype) / k
    if concept_influence:
        score = score * _count(v, a.dtype) / _count(s, a.dtype)
    return _nan_if_empty(score, s)


def localisation_auroc(a: Any, mask: Any, *, fov: Any = None) -> jax.Array:
    """Area under the ROC curve of the map as a detector of the region (inside ``fov``), ties
    counted half (:func:`jaxretina.metrics.roc_auc`); NaN for an empty region or an empty rest."""
    a, s, v = _inputs(a, mask, fov, "localisation_auroc")
    return roc_auc(s, a, valid=v)


def localisation_auprc(a: Any, mask: Any, *, fov: Any = None) -> jax.Array:
    """Average precision of the map as a detector of the region (inside ``fov``), the step-wise
    area under the precision–recall curve scikit-learn's ``average_precision_score`` computes:
    thresholds at the distinct values, tied positions entering together; NaN for an empty region."""
    a, s, v = _inputs(a, mask, fov, "localisation_auprc")
    order = _descending(a, v)
    value, pos, neg = jnp.where(v, a, -jnp.inf)[order], s[order], (v & ~s)[order]
    tp, fp = jnp.cumsum(pos, dtype=a.dtype), jnp.cumsum(neg, dtype=a.dtype)
    last_of_tie = jnp.append(value[1:] != value[:-1], True)   # a threshold ends with its tie group
    tp_at = jnp.where(last_of_tie, tp, 0)
    before = jnp.concatenate([jnp.zeros(1, tp.dtype), jax.lax.cummax(tp_at)[:-1]])   # tp at the previous threshold
    precision = tp / jnp.maximum(tp + fp, 1)
    gained = jnp.where(last_of_tie, tp - before, 0)
    return _nan_if_empty((gained * precision).sum() / _count(s, a.dtype), s)


def otsu_threshold(a: Any, *, fov: Any = None, bins: int = 256) -> jax.Array:
    """Otsu's threshold of the values inside ``fov``, as scikit-image's ``threshold_otsu``
    computes it: a ``bins``-bin histogram over [min, max] (NumPy's bin edges), the bin centre
    that maximises the between-class variance; the value itself when all are equal."""
    a = check_map(a, who="otsu_threshold")
    v = jnp.ones(a.shape, bool) if fov is None else check_region(fov, a.shape, who="otsu_threshold", name="fov")
    return _otsu(a.reshape(-1), v.reshape(-1), bins)


def _otsu(a, v, bins):
    """:func:`otsu_threshold` of the checked flat values ``a`` inside the flat view ``v``."""
    lo, hi = jnp.where(v, a, jnp.inf).min(), jnp.where(v, a, -jnp.inf).max()
    hist, edges = histogram(a, v, bins)     # NumPy's bins (scikit-image's threshold_otsu uses them)
    centres = (edges[:-1] + edges[1:]) / 2
    w1, w2 = jnp.cumsum(hist), jnp.cumsum(hist[::-1])[::-1]
    m1 = jnp.cumsum(hist * centres) / jnp.where(w1 > 0, w1, 1)
    m2 = (jnp.cumsum((hist * centres)[::-1]) / jnp.where(w2[::-1] > 0, w2[::-1], 1))[::-1]
    between = w1[:-1] * w2[1:] * (m1[:-1] - m2[1:]) ** 2
    return jnp.where(hi > lo, centres[jnp.argmax(between)], lo)


class Overlap(NamedTuple):
    """:func:`threshold_overlap`'s result (scalars)."""
    iou: jax.Array
    dice: jax.Array
    threshold: jax.Array


def threshold_overlap(a: Any, mask: Any, *, fov: Any = None, method: str = "otsu", top: float = 0.05) -> Overlap:
    """IoU ``|S ∩ T| / |S ∪ T|`` and Dice ``2|S ∩ T| / (|S| + |T|)`` of the region ``S`` and the
    thresholded map ``T = {a > θ}`` inside ``fov``: ``method="otsu"`` (:func:`otsu_threshold`) or
    ``"top"`` (the ``top`` fraction of the field of view with the highest values, ties by
    position).  NaN for an empty region."""
    who = "threshold_overlap"
    if method not in ("otsu", "top"):
        raise ValueError(f"{who}: method must be 'otsu' or 'top'; found {method!r}")
    if method == "top" and not (isinstance(top, (int, float)) and 0 < top <= 1):
        raise ValueError(f"{who}: top must be a fraction in (0, 1]; found {top!r}")
    a, s, v = _inputs(a, mask, fov, who)
    if method == "otsu":
        theta = _otsu(a, v, 256)
        t = v & (a > theta)
    else:
        count = jnp.ceil(top * _count(v, a.dtype)).astype(jnp.int32)
        order = _descending(a, v)
        t = jnp.zeros(a.size, bool).at[order].set(jnp.arange(a.size, dtype=jnp.int32) < count)
        theta = jnp.where(count > 0, a[order[jnp.maximum(count - 1, 0)]], jnp.inf)
    both, either = _count(s & t, a.dtype), _count(s | t, a.dtype)
    iou = _nan_if_empty(both / either, s)
    dice = _nan_if_empty(2 * both / (_count(s, a.dtype) + _count(t, a.dtype)), s)
    return Overlap(iou, dice, theta)
