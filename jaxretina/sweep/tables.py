"""Metric tables of a sweep's store: per map (method × layer) and metric, the mean over the done
examples with a bootstrap 95 % confidence interval, its rank, and how often it is the best.

For a metric with values ``v_1 … v_n`` of one map (the finite ones: an example with an empty
lesion mask has no pointing game), the interval is the 2.5 and 97.5 percentiles of the means of
``resamples`` resamples of the ``n`` values drawn with replacement (Efron's percentile
bootstrap).  Ranks order the maps by their means, the better direction first
(:data:`jaxretina.sweep.metrics.BETTER`).  ``p_best`` is the share of paired resamples —
the same examples for every map, those where every map has a value — in which the map has the
best mean (tied maps share it): a map whose lead is noise has a ``p_best`` well below 1.

Example::

    >>> rows = sweep.tables.metric_table({"ig:auroc": np.array([0.9, 0.8, 0.85]),
    ...                                   "saliency:auroc": np.array([0.6, 0.7, 0.65])}, resamples=200)
    >>> [(r["map"], r["rank"]) for r in rows["auroc"]["rows"]]
    [('ig', 1), ('saliency', 2)]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxretina.sweep.metrics import BETTER

__all__ = ["metric_table", "split_name", "markdown"]


def split_name(scalar: str) -> tuple[str, str] | None:
    """``"gradcam/upsample2:pointing_game"`` -> ``("gradcam/upsample2", "pointing_game")``; None
    for a scalar that is not a metric's."""
    if ":" not in scalar:
        return None
    map_name, _, metric = scalar.rpartition(":")
    return map_name, metric


def _interval(values: np.ndarray, resamples: int, rng: np.random.Generator) -> tuple[float, float]:
    if values.size == 0:
        return float("nan"), float("nan")
    means = values[rng.integers(0, values.size, (resamples, values.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def metric_table(scalars: dict[str, np.ndarray], *, resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """``{metric: {"better": "higher"|"lower", "rows": [{map, n, mean, low, high, rank, p_best}]}}``
    from ``{"<map>:<metric>": (N,) values}`` (NaN: not done or undefined), rows by rank."""
    by_metric: dict[str, dict[str, np.ndarray]] = {}
    for name, values in scalars.items():
        parts = split_name(name)
        if parts is not None:
            by_metric.setdefault(parts[1], {})[parts[0]] = np.asarray(values, np.float64)
    out = {}
    for m_index, (metric, maps) in enumerate(sorted(by_metric.items())):
        rng = np.random.default_rng([seed, m_index])
        better = BETTER.get(metric, "higher")
        sign = 1.0 if better == "higher" else -1.0
        names = sorted(maps)
        rows = []
        for name in names:
            v = maps[name][np.isfinite(maps[name])]
            low, high = _interval(v, resamples, rng)
            rows.append({"map": name, "n": int(v.size), "mean": float(v.mean()) if v.size else float("nan"),
                         "low": low, "high": high})
        table = np.stack([maps[n] for n in names], axis=1)               # (N, maps)
        complete = table[np.isfinite(table).all(axis=1)]
        wins = np.zeros(len(names))
        if len(complete):
            picks = rng.integers(0, len(complete), (resamples, len(complete)))
            means = sign * complete[picks].mean(axis=1)                  # (resamples, maps)
            best = means == means.max(axis=1, keepdims=True)               # ties share the win
            wins = (best / best.sum(axis=1, keepdims=True)).mean(axis=0)
        order = sorted(range(len(rows)), key=lambda k: (not np.isfinite(rows[k]["mean"]), -sign * rows[k]["mean"]
                                                        if np.isfinite(rows[k]["mean"]) else 0.0))
        for rank, k in enumerate(order, 1):
            rows[k].update(rank=rank, p_best=float(wins[k]) if len(complete) else float("nan"))
        out[metric] = {"better": better, "examples_complete": int(len(complete)), "rows": [rows[k] for k in order]}
    return out


def markdown(tables: dict[str, Any]) -> str:
    """The tables as Markdown: one per metric, maps by rank."""
    lines = []
    for metric, t in tables.items():
        lines += [f"### {metric} ({t['better']} is better; p_best over {t['examples_complete']} complete examples)",
                  "", "| rank | map | n | mean | 95 % CI | p_best |", "|---|---|---|---|---|---|"]
        for r in t["rows"]:
            lines.append(f"| {r['rank']} | {r['map']} | {r['n']} | {r['mean']:.4g} | [{r['low']:.4g}, {r['high']:.4g}] "
                         f"| {r['p_best']:.2f} |")
        lines.append("")
    return "\n".join(lines)
