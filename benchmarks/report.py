"""The README's anchor table from ``benchmarks/results/anchors.json`` (written by ``make bench``).

    .venv/bin/python -m benchmarks.report [path/to/anchors.json]

One row per comparison: for IG, each (model, steps, rule) with Captum's best
``internal_batch_size`` against jaxretina's best chunk (and the default chunk 8), FLOP rates
and peaks at equal chunk size; the XLA-options rows; time to 1 % completeness; all-layer
Grad-CAM.
"""

from __future__ import annotations

import json
import os
import sys

_DEFAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "anchors.json")


def _gb(mb: float) -> str:
    return f"{mb / 1024:.2f}"


def _ig_rows(rows: list[dict]) -> list[str]:
    out = []
    keys = sorted({(r["model"], r["steps"], r["rule"]) for r in rows if r["case"] == "ig" and "xla" not in r},
                  key=lambda k: (k[0] != "driu", k[1], k[2]))
    for model, steps, rule in keys:
        group = [r for r in rows if r["case"] == "ig" and "xla" not in r
                 and (r["model"], r["steps"], r["rule"]) == (model, steps, rule)]
        captum = [r for r in group if r["contender"] == "captum"]
        ours = [r for r in group if r["contender"] == "jaxretina"]
        best_c = min(captum, key=lambda r: r["best_s"])
        best_o = min(ours, key=lambda r: r["best_s"])
        default = next((r for r in ours if r["chunk"] == 8), best_o)
        peaks = {r["ibs"]: r["peak_mb"] for r in captum}
        same = "; ".join(f"{_gb(peaks[r['chunk']])} / {_gb(r['peak_mb'])} at {r['chunk']}"
                         for r in ours if r["chunk"] in peaks)
        every = ", ".join(f"{r['chunk']}: {r['best_s']:.2f} s, {_gb(r['peak_mb'])} GB" for r in ours)
        out.append(
            f"| {model} IG {steps} {rule} | {best_c['best_s']:.2f} s (ibs {best_c['ibs']}, "
            f"{best_c['gflops_per_s']:.0f} GFLOP/s) | {default['best_s']:.2f} s (chunk 8, +{default['compile_s']:.1f} s "
            f"compile, {default['gflops_per_s']:.0f} GFLOP/s); best {best_o['best_s']:.2f} s (chunk {best_o['chunk']}) "
            f"| **{best_c['best_s'] / default['best_s']:.2f}×** / {best_c['best_s'] / best_o['best_s']:.2f}× "
            f"| {same} | {default['max_rel_diff']:.1e} |")
        out.append(f"| &nbsp;&nbsp;jaxretina chunks | | {every} | | | |")
    return out


def table(record: dict) -> str:
    rows = record["rows"]
    jm = record["machine"]["matmul_flops_per_s"]
    lines = [
        f"Machine: {record['machine']['platform']}, {record['machine']['cpus']} CPUs, device "
        f"{record.get('device')}; matmul 4096² float32: JAX {jm['jax'] / 1e9:.0f} GFLOP/s, "
        f"PyTorch {jm['torch'] / 1e9:.0f} GFLOP/s.",
        "",
        "| case | anchor best | jaxretina | ratio (default / best) | peak GB anchor / ours at equal batch | max rel diff |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += _ig_rows(rows)
    for r in rows:
        if r["case"] == "ig" and r.get("xla") and "speedup" in r:
            lines.append(f"| {r['model']} IG 16, chunk 8, XLA options `{r['xla']}` | {r['anchor_best_s']:.2f} s "
                         f"(XLA's own defaults) | {r['best_s']:.2f} s, {_gb(r['peak_mb'])} GB | "
                         f"**{r['speedup']:.2f}×** | | {r['max_rel_diff']:.1e} |")
    for model in ("driu", "densenet121"):
        tol = [r for r in rows if r["case"] == "ig_tol" and r["model"] == model]
        ours = next((r for r in tol if r["contender"] == "jaxretina"), None)
        for c in (r for r in tol if r["contender"] == "captum" and ours is not None):
            how = (f"told the {c['steps']} steps jaxretina found, batches of 1" if "steps" in c
                   else "Captum defaults: 50 GL steps, one batch")
            ratio = (f"{c['best_s'] / ours['best_s']:.2f}×" if c["rel_delta"] <= 0.01
                     else "— (misses 1 %)")
            lines.append(
                f"| {model} IG to \\|delta\\| ≤ 1 % | {c['best_s']:.2f} s ({how}; {100 * c['rel_delta']:.2f} %) | "
                f"{ours['best_s']:.2f} s (`steps=\"auto\"`: {ours['steps_used']} steps, "
                f"{100 * ours['rel_delta']:.2f} %) | {ratio} | {_gb(c['peak_mb'])} / {_gb(ours['peak_mb'])} | |")
        cam = {r["contender"]: r for r in rows if r["case"] == "gradcam" and r["model"] == model}
        if len(cam) == 2:
            c, o = cam["pytorch-grad-cam"], cam["jaxretina"]
            lines.append(
                f"| {model} Grad-CAM, all {c['layers']} layers | {c['best_s']:.2f} s ({c['layers']} calls) | "
                f"{o['best_s']:.2f} s (one call, +{o['compile_s']:.1f} s compile) | **{o['speedup']:.0f}×** | "
                f"{_gb(c['peak_mb'])} / {_gb(o['peak_mb'])} | {o['max_rel_diff']:.1e} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0] if argv else _DEFAULT) as fh:
        print(table(json.load(fh)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
