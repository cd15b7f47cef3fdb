"""``jaxretina report STORE --html``: one self-contained page (no network, no files beside it) to
browse a sweep — examples × methods × layers as overlays, the metrics' curves, and the metric
tables with their confidence intervals and ranks.

Images are PNGs inlined as ``data:`` URLs, curves inline SVG, the controls a few lines of inline
script: choose an example and a method, and the page shows that example's maps of that method
(every layer), each with its curves.  Every name from the store is HTML-escaped (file names are
a stranger's).  The page marks ``<body data-ready="1">`` once its script has run and lists any
script error in ``data-errors`` (what the Chromium test checks).

Example::

    >>> _ = sweep.run(model="driu", data="images/", out="page.zarr", methods=["saliency"], batch=2, size=32,
    ...               progress=False, metrics=["sparseness"])
    >>> summary = sweep.report("page.zarr", html=True)
    >>> from pathlib import Path
    >>> Path(summary["files"]["html"]).read_text().count('class="cell"')
    2
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from typing import Any

import numpy as np

from jaxretina.sweep.report import map_panel
from jaxretina.sweep.store import DONE, SweepStore

__all__ = ["write_html"]

_STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0 1em}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
th{background:#f3f3f3}td.name{text-align:left}.controls{position:sticky;top:0;background:#fff;padding:.5em 0}
.grid{display:flex;flex-wrap:wrap;gap:10px}.cell{border:1px solid #ddd;padding:4px;width:200px}
.cell img{width:192px;image-rendering:pixelated}.cell .label{font-size:12px;word-break:break-all}
.tables{display:flex;flex-wrap:wrap;gap:0 24px}.example{display:none}.example.shown{display:block}.cell.hidden{display:none}svg{background:#fafafa}
"""

_SCRIPT = """
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
function show() {
  var ex = document.getElementById('example').value, m = document.getElementById('method').value;
  document.querySelectorAll('.example').forEach(function (el) {
    el.classList.toggle('shown', el.dataset.example === ex);
  });
  document.querySelectorAll('.cell').forEach(function (el) {
    el.classList.toggle('hidden', m !== '*' && el.dataset.method !== m);
  });
}
document.addEventListener('DOMContentLoaded', function () {
  document.getElementById('example').addEventListener('change', show);
  document.getElementById('method').addEventListener('change', show);
  show();
  document.body.dataset.errors = window.__errors.join('; ');
  document.body.dataset.ready = '1';
});
"""


def _png(rgb: np.ndarray, side: int = 192) -> str:
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(rgb, np.uint8))
    scale = side / max(im.size)
    if scale < 1:
        im = im.resize((max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _svg_curve(ys: np.ndarray, *, width: int = 192, height: int = 64, title: str = "") -> str:
    ys = np.asarray(ys, np.float64)
    ok = np.isfinite(ys)
    if ys.size < 2 or not ok.any():
        return ""
    lo, hi = float(ys[ok].min()), float(ys[ok].max())
    span = hi - lo or 1.0
    xs = np.linspace(2, width - 2, ys.size)
    pts = " ".join(f"{x:.1f},{height - 2 - (y - lo) / span * (height - 4):.1f}" for x, y in zip(xs, ys) if np.isfinite(y))
    return (f'<svg class="curve" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
            f"<title>{html.escape(title)} ({lo:.3g} … {hi:.3g})</title>"
            f'<polyline fill="none" stroke="#1f5fbf" stroke-width="1.5" points="{pts}"/></svg>')


def _inputs(store: SweepStore, volume: bool):
    """``i -> uint8 RGB`` of the examples' inputs when the data folder is still readable, else None."""
    if volume:
        return None
    config = store.meta.get("config", {})
    from jaxretina.sweep.inputs import BadInput, open_inputs

    size = config.get("size")
    try:
        inputs = open_inputs(config["data"], volumes=False, size=tuple(size) if size else None,
                             split=config.get("split"), tfds_dir=config.get("tfds_dir"))
    except Exception:  # noqa: BLE001 - the data may be gone or moved: the page shows the maps alone
        return None
    by_name = {it.name: k for k, it in enumerate(inputs.items)}

    def load(i: int):
        k = by_name.get(store.names[i])
        if k is None:
            return None
        try:
            return inputs.load(k)[0]
        except BadInput:
            return None

    return load


def _blend(image, panel):
    if image is None or image.shape[:2] != panel.shape[:2]:
        return panel
    return (0.45 * image + 0.55 * panel).round().astype(np.uint8)


def _table(metric: str, t: dict) -> str:
    head = (f'<h3 id="metric-{html.escape(metric)}">{html.escape(metric)} <small>({t["better"]} is better; '
            f'p_best over {t["examples_complete"]} complete examples)</small></h3>'
            '<table class="metric"><tr><th>rank</th><th>map</th><th>n</th><th>mean</th><th>95 % CI</th>'
            "<th>p_best</th></tr>")
    rows = "".join(f'<tr><td>{r["rank"]}</td><td class="name">{html.escape(r["map"])}</td><td>{r["n"]}</td>'
                   f'<td>{r["mean"]:.4g}</td><td>[{r["low"]:.4g}, {r["high"]:.4g}]</td><td>{r["p_best"]:.2f}</td></tr>'
                   for r in t["rows"])
    return head + rows + "</table>"


def write_html(store: SweepStore, summary: dict[str, Any], path: str, *, volume: bool, examples: int = 12) -> str:
    """Write the page for ``store`` (``summary``: :func:`jaxretina.sweep.report`'s) to ``path``."""
    done = [int(i) for i in np.flatnonzero(store.status() == DONE)][:examples]
    methods = sorted({n.split("/")[0] for n in store.map_names})
    load = _inputs(store, volume)
    sections, curves_seen = [], {c: [] for c in store.curve_names}
    for i in done:
        image = load(i) if load is not None else None
        cells = []
        if image is not None:
            cells.append(f'<div class="cell input" data-method="input"><img alt="input" src="{_png(image)}">'
                         '<div class="label">input</div></div>')
        maps = store.example(i, store.map_names + store.curve_names)
        for c in store.curve_names:
            curves_seen[c].append(maps[c])
        for name in store.map_names:
            panel = map_panel(maps[name], volume)
            curves = "".join(_svg_curve(maps[c], title=c) + f'<div class="label">{html.escape(c.rpartition(":")[2])}</div>'
                             for c in store.curve_names if c.rpartition(":")[0] == name)
            cells.append(f'<div class="cell" data-method="{html.escape(name.split("/")[0])}">'
                         f'<img alt="{html.escape(name)}" src="{_png(_blend(image, panel))}">'
                         f'<div class="label">{html.escape(name)}</div>{curves}</div>')
        sections.append(f'<section class="example" data-example="{i}"><h2>{html.escape(store.names[i])}</h2>'
                        f'<div class="grid">{"".join(cells)}</div></section>')
    mean_curves = [f'<div class="cell" data-method="{html.escape(c.split("/")[0])}">'
                   f'{_svg_curve(np.stack(seen).astype(np.float64).mean(0), title=c)}'
                   f'<div class="label">{html.escape(c)} (mean of {len(seen)})</div></div>'
                   for c, seen in curves_seen.items() if seen]
    counts = summary["counts"]
    model = summary["model"].get("name", "?")
    options = "".join(f'<option value="{i}">{html.escape(store.names[i])}</option>' for i in done)
    method_options = '<option value="*">all methods</option>' + "".join(
        f'<option value="{html.escape(m)}">{html.escape(m)}</option>' for m in methods)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>jaxretina sweep report — {html.escape(model)}</title>
<style>{_STYLE}</style><script>{_SCRIPT}</script></head>
<body data-ready="0" data-errors="">
<h1>Sweep report: {html.escape(model)} — {html.escape(os.path.basename(summary["store"]))}</h1>
<p id="counts">{counts["done"]} done, {counts["failed"]} failed, {counts["pending"]} pending;
maps: {len(store.map_names)}; metric curves: {len(store.curve_names)}; metrics: {len(summary["metrics"])}.</p>
<h2>Examples</h2>
<div class="controls">example <select id="example">{options}</select>
method <select id="method">{method_options}</select></div>
{"".join(sections)}
<h2>Metrics</h2><div class="tables">{"".join(f'<div>{_table(m, t)}</div>' for m, t in summary["metrics"].items())
                                      or "<p>No metrics in this store.</p>"}</div>
{('<h2>Mean curves</h2><div class="grid">' + "".join(mean_curves) + "</div>") if mean_curves else ""}
<script type="application/json" id="summary">{html.escape(json.dumps({"counts": counts, "maps": store.map_names}))}</script>
</body></html>
"""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(page)
    return path
