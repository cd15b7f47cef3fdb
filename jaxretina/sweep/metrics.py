"""Evaluation metrics inside a sweep (``--metric kind:key=value``): every map the sweep makes is
scored in the same compiled program that made it — no map leaves the device to be scored.

A metric sees each map as a spatial map of the input's size: an attribution of the input's
shape summed over its channels, a layer's map (CAMs at their layer's resolution, layer
attributions; summed over channels if it has them) resized linearly to the input's spatial
shape.  ``maps`` [all] restricts a metric to some maps: names or method names joined with
``+`` (``maps=ig+gradcam``: the ``ig`` map and every ``gradcam/<layer>`` map).

Scalars are stored as ``<map>:<kind>`` (``gradcam/upsample2:pointing_game``), curves as
``<map>:<kind>`` among the store's curves.  Metrics (:mod:`jaxretina.evaluate`; defaults in
brackets; ``baseline``: ``black`` [the preprocessed black image; 0 for volumes], ``gray`` [the
preprocessed 128 gray], ``blur`` [the input blurred with σ = ``sigma`` pixels, default 5],
``zero`` or a number):

* ``deletion`` / ``insertion`` — :func:`~jaxretina.evaluate.perturbation_curve`: ``steps``
  [20], ``order`` [morf; lerf], ``baseline`` [black], ``chunk`` [16].  Scalars ``…:deletion``
  (the curve's area) and ``…:deletion_aopc`` (deletion only); curve ``…:deletion``.
* ``road`` — :func:`~jaxretina.evaluate.road_combined`: ``fractions`` [0.1+…+0.9], ``noise``
  [0.01], ``chunk`` [9].
* ``faithfulness_correlation`` — ``runs`` [20], ``subset`` [224, at most a quarter of the
  positions], ``baseline`` [black], ``chunk`` [16].
* Their draws come from ``fold_in(fold_in(fold_in(key(seed), example index), METRIC_STREAM),
  the metric's place in the list)``: any batching gives the same numbers.
* ``sparseness``, ``entropy``, ``effective_complexity`` (``eps`` [1e-5]) — complexity.
* with ``masks`` given (:mod:`jaxretina.sweep.regions`), inside ``fov`` if given:
  ``pointing_game``, ``energy_pointing_game``, ``relevance_mass``, ``relevance_rank``, ``auroc``,
  ``auprc``, ``top_k_intersection`` (``k`` [1000, at most the positions]), ``iou`` and ``dice``
  (after ``threshold`` [otsu; or top: the ``top`` [0.05] share of the field of view]).

:data:`BETTER` says which direction of each scalar is better (the report's rankings).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxretina import evaluate, preprocess
from jaxretina.sweep.config import Spec, finite_number, positive_int

__all__ = ["METRIC_KINDS", "BETTER", "METRIC_STREAM", "metric_options", "needs_masks", "score_maps", "spatial_view"]

METRIC_STREAM = 0x6D6574   # the metrics' random stream, apart from the methods' fold_in(key(seed), index)

_FAITHFUL = {"steps": 20, "order": "morf", "baseline": "black", "chunk": 16, "sigma": 5.0}
_OPTIONS: dict[str, dict[str, Any]] = {
    "deletion": _FAITHFUL, "insertion": _FAITHFUL,
    "road": {"fractions": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), "noise": 0.01, "chunk": 9},
    "faithfulness_correlation": {"runs": 20, "subset": 224, "baseline": "black", "chunk": 16, "sigma": 5.0},
    "sparseness": {}, "entropy": {}, "effective_complexity": {"eps": 1e-5},
    "pointing_game": {}, "energy_pointing_game": {}, "relevance_mass": {}, "relevance_rank": {}, "auroc": {},
    "auprc": {}, "top_k_intersection": {"k": 1000}, "iou": {"threshold": "otsu", "top": 0.05},
    "dice": {"threshold": "otsu", "top": 0.05},
}
METRIC_KINDS = tuple(_OPTIONS)
_MASKED = ("pointing_game", "energy_pointing_game", "relevance_mass", "relevance_rank", "auroc", "auprc",
           "top_k_intersection", "iou", "dice")
BETTER = {**{k: "higher" for k in METRIC_KINDS}, "deletion": "lower", "entropy": "lower",
          "effective_complexity": "lower"}
BETTER["deletion_aopc"] = "higher"


def _fractions(v) -> bool:
    v = v if isinstance(v, tuple) else (v,)
    return all(finite_number(f) and 0 < f < 1 for f in v)


_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "steps": (positive_int, "a positive integer"),
    "order": (lambda v: v in evaluate.faithfulness.ORDERS, f"one of {list(evaluate.faithfulness.ORDERS)}"),
    "baseline": (lambda v: v in ("black", "gray", "blur", "zero") or finite_number(v),
                 "'black', 'gray', 'blur', 'zero' or a number"),
    "sigma": (lambda v: finite_number(v) and v > 0, "a positive number (pixels)"),
    "chunk": (lambda v: positive_int(v) or v == "all", "a positive integer or 'all'"),
    "fractions": (_fractions, "shares in (0, 1) joined with '+'"),
    "noise": (lambda v: finite_number(v) and v >= 0, "a non-negative number"),
    "runs": (lambda v: positive_int(v) and v >= 2, "an integer ≥ 2"),
    "subset": (positive_int, "a positive integer"),
    "eps": (lambda v: finite_number(v) and v >= 0, "a non-negative number"),
    "k": (positive_int, "a positive integer"),
    "threshold": (lambda v: v in ("otsu", "top"), "'otsu' or 'top'"),
    "top": (lambda v: finite_number(v) and 0 < v < 1, "a share in (0, 1)"),
    "maps": (lambda v: isinstance(v, str) or (isinstance(v, tuple) and all(isinstance(x, str) for x in v)),
             "'all', a map or method name, or names joined with '+'"),
}


def metric_options(spec: Spec) -> dict[str, Any]:
    """The spec's options over the metric's defaults; unknown kinds, options and values of the
    wrong type are errors naming them."""
    if spec.kind not in _OPTIONS:
        raise ValueError(f"sweep: unknown metric {spec.kind!r}; expected one of {list(METRIC_KINDS)}")
    known = {**_OPTIONS[spec.kind], "maps": "all"}
    given = dict(spec.opts)
    bad = sorted(set(given) - set(known))
    if bad:
        raise ValueError(f"sweep: metric {spec.text()!r}: unknown options {bad}; {spec.kind} takes {sorted(known)}")
    for key, value in given.items():
        check, expected = _TYPES[key]
        if not check(value):
            raise ValueError(f"sweep: metric {spec.text()!r}: option {key}={value!r:.60} is not {expected}")
    return {**known, **given}


def needs_masks(kind: str) -> bool:
    return kind in _MASKED


def spatial_view(m: jax.Array, x: jax.Array, *, name: str) -> jax.Array:
    """The map ``m`` as a float32 map of ``x``'s spatial shape (module docstring)."""
    spatial = x.shape[:-1]
    m = m.astype(jnp.float32)
    if m.ndim == len(spatial) + 1:
        m = m.sum(-1)
    if m.ndim != len(spatial):
        raise ValueError(f"sweep: metrics need maps with the input's spatial axes {spatial}; map {name!r} has "
                         f"shape {m.shape}")
    return m if m.shape == spatial else jax.image.resize(m, spatial, "linear")


def _chosen(names, maps_option) -> list[str]:
    if maps_option == "all":
        return list(names)
    wanted = maps_option if isinstance(maps_option, tuple) else (maps_option,)
    return [n for n in names if n in wanted or n.split("/")[0] in wanted]


def _reference(o, x, black, gray):
    base = o["baseline"]
    if base == "black":
        return black
    if base == "gray":
        return gray
    if base == "blur":
        if x.ndim != 3:
            raise ValueError("sweep: baseline=blur is for images (H, W, C); use black, gray, zero or a number")
        return preprocess.gaussian_blur(x, float(o["sigma"]))
    return 0.0 if base == "zero" else float(base)


def score_maps(metrics, maps: dict, x, f, *, key, black, gray, regions: dict, scalars: dict, curves: dict) -> None:
    """Add every metric's scalars and curves for the ``maps`` of one target (see the module
    docstring); ``metrics``: ``(kind, sorted options)`` pairs; ``regions``: ``mask`` and ``fov``
    booleans of the input's spatial shape where the sweep has them."""
    for m_index, (kind, opts) in enumerate(metrics):
        o = dict(opts)
        for name in _chosen(maps, o["maps"]):
            a = spatial_view(maps[name], x, name=name)
            out = f"{name}:{kind}"
            if kind in ("deletion", "insertion"):
                curve = evaluate.perturbation_curve(f, x, a, steps=min(int(o["steps"]), a.size), mode=kind,
                                                    order=o["order"], baseline=_reference(o, x, black, gray),
                                                    chunk=o["chunk"])
                scalars[out], curves[out] = curve.auc, curve.scores
                if kind == "deletion":
                    scalars[f"{out}_aopc"] = evaluate.aopc(curve)
            elif kind == "road":
                fr = o["fractions"] if isinstance(o["fractions"], tuple) else (o["fractions"],)
                scalars[out] = evaluate.road_combined(f, x, a, fractions=fr, noise=float(o["noise"]),
                                                      key=jax.random.fold_in(key, m_index), chunk=o["chunk"])
            elif kind == "faithfulness_correlation":
                scalars[out] = evaluate.faithfulness_correlation(
                    f, x, a, key=jax.random.fold_in(key, m_index), runs=int(o["runs"]),
                    subset=min(int(o["subset"]), max(1, a.size // 4)), baseline=_reference(o, x, black, gray),
                    chunk=o["chunk"])
            elif kind == "sparseness":
                scalars[out] = evaluate.sparseness(a, fov=regions.get("fov"))
            elif kind == "entropy":
                scalars[out] = evaluate.entropy(a, fov=regions.get("fov"))
            elif kind == "effective_complexity":
                scalars[out] = evaluate.effective_complexity(a, fov=regions.get("fov"), eps=float(o["eps"]))
            else:
                scalars[out] = _localisation(kind, o, a, regions)


def _localisation(kind, o, a, regions):
    mask, fov = regions["mask"], regions.get("fov")
    if kind in ("pointing_game", "energy_pointing_game", "relevance_mass", "relevance_rank"):
        return getattr(evaluate, kind)(a, mask, fov=fov)
    if kind in ("auroc", "auprc"):
        return getattr(evaluate, f"localisation_{kind}")(a, mask, fov=fov)
    if kind == "top_k_intersection":
        return evaluate.top_k_intersection(a, mask, k=min(int(o["k"]), a.size), fov=fov)
    overlap = evaluate.threshold_overlap(a, mask, fov=fov, method=o["threshold"], top=float(o["top"]))
    return getattr(overlap, kind)
