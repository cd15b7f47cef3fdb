"""``jaxretina report STORE``: a sweep's summary — per-method statistics, the slowest and the
failed examples, and a contact sheet of maps.

Writes into ``out`` (default ``STORE/../<store name>_report``):

* ``report.json`` — counts; for every map: over the done examples, the mean, mean |value|,
  min, max and the number of non-finite values; for every scalar: mean, std, min, median,
  max; the ``slowest`` examples (by ``seconds``) and every ``failed`` one with its reason;
* ``contact_sheet.png`` — one row per example (the first ``rows`` done ones), one column per
  map (at most ``cols``): signed maps green (+) / red (−), 3-channel attributions summed over
  channels, volumes shown as a maximum-intensity projection of |map| along depth;
* with metrics in the store (``--metric``): ``report.json``'s ``metrics`` and ``metrics.md`` —
  per metric, every map's mean with a bootstrap 95 % interval, its rank and ``p_best``
  (:mod:`jaxretina.sweep.tables`);
* with ``html=True`` (``--html``): ``report.html``, one self-contained page
  (:mod:`jaxretina.sweep.html`).

Example::

    >>> _ = sweep.run(model="driu", data="images/", out="seen.zarr", methods=["saliency"], batch=2, progress=False)
    >>> summary = sweep.report("seen.zarr")
    >>> summary["counts"], sorted(summary["files"])
    ({'done': 2, 'failed': 0, 'pending': 0}, ['contact_sheet', 'report'])
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from jaxretina.sweep.store import DONE, open_store
from jaxretina.sweep.tables import markdown, metric_table


__all__ = ["report", "map_panel", "input_kind"]


def input_kind(model_meta: dict) -> str:
    """"image" or "volume": recorded by the sweep (stores before the registry: the model's entry)."""
    if "input" in model_meta:
        return model_meta["input"]
    from jaxretina.models import registry

    try:
        return registry.get(model_meta["name"]).input
    except ValueError:
        return "image"


def _stats(values: np.ndarray) -> dict[str, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {"count": 0}
    return {"count": int(finite.size), "mean": float(finite.mean()), "std": float(finite.std()),
            "min": float(finite.min()), "median": float(np.median(finite)), "max": float(finite.max())}


def map_panel(m: np.ndarray, volume: bool) -> np.ndarray:
    from jaxretina import viz

    m = np.asarray(m, np.float64)
    if volume:
        m = np.abs(m[..., 0] if m.ndim == 4 else m).max(axis=0)   # MIP of |map| along depth
        return viz.heatmap_rgb(m, cmap="magma")
    if m.ndim == 3:
        m = m.sum(-1)
    return viz.signed_map(m) if m.min() < 0 else viz.heatmap_rgb(m, cmap="jet")


def _columns(names: list[str], cols: int) -> list[str]:
    """Whole-input maps first (IG, guided backprop, ...), then layers spread evenly over the rest."""
    whole = [n for n in names if "/" not in n][:cols]
    layered = [n for n in names if "/" in n]
    room = cols - len(whole)
    if room <= 0 or not layered:
        return whole
    picks = np.unique(np.linspace(0, len(layered) - 1, min(room, len(layered))).round().astype(int))
    return whole + [layered[k] for k in picks]


def report(store_path: str | os.PathLike, out: str | os.PathLike | None = None, *, rows: int = 6, cols: int = 8,
           slowest: int = 10, html: bool = False, resamples: int = 2000) -> dict[str, Any]:
    """Summarise a sweep's store into ``out`` (see the module docstring); returns the summary."""
    from jaxretina import viz

    store = open_store(store_path)
    path = os.path.abspath(os.fspath(store_path)).rstrip(os.sep)
    out = os.fspath(out) if out is not None else os.path.splitext(path)[0] + "_report"
    os.makedirs(out, exist_ok=True)
    status = store.status()
    done = np.flatnonzero(status == DONE)
    volume = input_kind(store.meta["model"]) == "volume"

    map_stats = {}
    for name in store.map_names:
        acc = {"mean": [], "mean_abs": [], "min": [], "max": [], "nonfinite": 0}
        for i in done:
            m = store.example(int(i), [name])[name].astype(np.float64)
            finite = m[np.isfinite(m)]
            acc["nonfinite"] += int(m.size - finite.size)
            if finite.size:
                acc["mean"].append(finite.mean())
                acc["mean_abs"].append(np.abs(finite).mean())
                acc["min"].append(finite.min())
                acc["max"].append(finite.max())
        map_stats[name] = ({"examples": len(done), "mean": float(np.mean(acc["mean"])),
                            "mean_abs": float(np.mean(acc["mean_abs"])), "min": float(np.min(acc["min"])),
                            "max": float(np.max(acc["max"])), "nonfinite": acc["nonfinite"]}
                           if acc["mean"] else {"examples": len(done), "nonfinite": acc["nonfinite"]})
    scalars = store.scalars()
    seconds = scalars.get("seconds", np.full(len(store), np.nan))
    order = [int(i) for i in np.argsort(-np.nan_to_num(seconds, nan=-1.0)) if np.isfinite(seconds[i])][:slowest]
    summary = {
        "store": path,
        "model": store.meta["model"], "weights": store.meta["weights"],
        "computation": store.meta["computation"],
        "counts": store.status_counts(),
        "maps": map_stats,
        "scalars": {k: _stats(v) for k, v in scalars.items()},
        "slowest": [{"index": i, "name": store.names[i], "seconds": float(seconds[i])} for i in order],
        "failed": [{"index": i, "name": n, "reason": r} for i, n, r in store.failed()],
        "metrics": metric_table(scalars, resamples=resamples),
        "files": {},
    }
    if summary["metrics"]:
        summary["files"]["metrics"] = os.path.join(out, "metrics.md")
        with open(summary["files"]["metrics"], "w") as fh:
            fh.write(markdown(summary["metrics"]))
    shown = [int(i) for i in done[:rows]]
    names = _columns(store.map_names, cols)
    if shown and names:
        grid = [[map_panel(store.example(i, [n])[n], volume) for n in names] for i in shown]
        fig = viz.image_grid(grid, row_titles=[store.names[i][-24:] for i in shown],
                             col_titles=[n[-22:] for n in names],
                             title=f"{store.meta['model']['name']} — {os.path.basename(path)} "
                                   f"({summary['counts']['done']} done, {summary['counts']['failed']} failed)")
        summary["files"]["contact_sheet"] = viz.save_figure(fig, os.path.join(out, "contact_sheet.png"), dpi=80)
    if html:
        from jaxretina.sweep.html import write_html

        summary["files"]["html"] = write_html(store, summary, os.path.join(out, "report.html"), volume=volume)
    summary["files"]["report"] = os.path.join(out, "report.json")
    with open(summary["files"]["report"], "w") as fh:
        json.dump(summary, fh, indent=1)
    return summary
