"""Which attribution methods can a DR grader's user trust?  A ranking of methods by evaluation
metrics on lesion data — faithfulness (deletion, insertion, ROAD, faithfulness correlation),
localisation against the lesion masks (pointing game, relevance mass, AUROC, AUPRC, IoU after
Otsu) and complexity (sparseness) — each with bootstrap 95 % intervals and p_best.

Run (the generated fake lesion dataset unless --images/--masks are given; --quick: CI-sized):

    python experiments/method_ranking.py --out runs/ranking [--images folder/ --masks masks/ \
        [--fov fov/] --weights densenet121.pth] [--size 224]

One sweep (:mod:`jaxretina.sweep`) computes every method's map and scores it with every metric
in one compiled program per method; the report (:func:`jaxretina.sweep.report`) gives the tables.
Writes ``ranking.json`` (the tables), ``ranking.md``, ``ranking.png`` (each metric's means and
intervals per method), the store, ``report/report.html`` (the browsable page) and, when
Debian's ``chromium`` is installed, ``report/report.png`` (its screenshot).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, start  # noqa: E402

METHODS = ["saliency", "gradient_x_input", "ig:steps=16,chunk=8", "smoothgrad:samples=8,chunk=8",
           "guided_backprop", "lrp", "gradcam:layers=norm5", "occlusion:window=24,strides=12,chunk=16"]
METRICS = ["deletion:steps=16", "insertion:steps=16,baseline=blur", "road", "faithfulness_correlation",
           "sparseness", "pointing_game", "relevance_mass", "auroc", "auprc", "iou"]
QUICK_METHODS = ["saliency", "gradcam:layers=norm5"]
QUICK_METRICS = ["deletion:steps=4", "road:fractions=0.5", "sparseness", "pointing_game", "auroc"]
SMALL = {"num_classes": 5, "growth_rate": 8, "block_config": (2, 2), "num_init_features": 16, "bn_size": 2}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--images", help="folder of fundus images (default: the generated fake lesion dataset)")
    p.add_argument("--masks", help="lesion masks: a folder of <image stem>.png or a template with {stem}")
    p.add_argument("--fov", help="fields of view, as --masks")
    p.add_argument("--weights", help="a DenseNet121 grader's weights (default: random, recorded as such)")
    p.add_argument("--size", type=int, default=128, help="network input side")
    p.add_argument("--per-class", type=int, default=6, help="fake images per grade")
    p.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    args = p.parse_args(argv)
    if (args.images is None) != (args.masks is None):
        p.error("--images and --masks go together")
    if args.quick:
        args.size, args.per_class = 32, 1
    return args


def _figure(tables: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxretina import viz

    metrics = list(tables)
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.6 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        rows = sorted(tables[metric]["rows"], key=lambda r: r["map"])
        means = np.array([r["mean"] for r in rows])
        err = np.array([[r["mean"] - r["low"] for r in rows], [r["high"] - r["mean"] for r in rows]])
        ax.barh(range(len(rows)), means, xerr=np.nan_to_num(err), color="#4a7fc1")
        ax.set_yticks(range(len(rows)), [r["map"] for r in rows], fontsize=7)
        ax.set_title(f"{metric}\n({tables[metric]['better']} is better)", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    viz.save_figure(fig, path, dpi=90)


def _screenshot(page: str, png: Path) -> bool:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return False
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={png.parent / '.chromium'}", "--window-size=1280,1000", f"--screenshot={png}"]
    done = subprocess.run([chromium, *flags, f"file://{page}"], capture_output=True, timeout=300)
    shutil.rmtree(png.parent / ".chromium", ignore_errors=True)
    return done.returncode == 0 and png.exists()


def main(argv=None) -> Path:
    args = parse_args(argv)
    from jaxretina import data, sweep

    out, timer, record = start(args, "method_ranking")
    if args.images is None:
        root = data.make_fake_dataset(out / "fake_lesions", per_class=args.per_class, size=max(args.size, 64))
        images, masks = str(root / "folder" / "images"), str(root / "masks")
        record["data"] = {"kind": "generated fake lesion dataset", "images": 5 * args.per_class}
    else:
        images, masks = args.images, args.masks
        record["data"] = {"kind": "given", "images": images, "masks": masks, "fov": args.fov}
    store = out / "ranking.zarr"
    if store.exists():
        shutil.rmtree(store)
    options = SMALL if args.quick else {"num_classes": 5}
    methods, metrics = (QUICK_METHODS, QUICK_METRICS) if args.quick else (METHODS, METRICS)
    with timer("sweep"):
        summary = sweep.run(model="densenet121", model_options=options, weights=args.weights, data=images,
                            out=str(store), masks=masks, fov=args.fov, size=args.size, batch=2, progress=not args.quick,
                            methods=methods, metrics=metrics)
    with timer("report"):
        rep = sweep.report(store, out / "report", html=True, rows=4)
    record["sweep"] = {"counts": summary["counts"], "run": summary["this_run"], "methods": methods,
                       "metrics": metrics, "weights": args.weights or "random initialisation"}
    record["tables"] = rep["metrics"]
    record["best"] = {m: t["rows"][0]["map"] for m, t in rep["metrics"].items()}
    (out / "ranking.md").write_text(Path(rep["files"]["metrics"]).read_text())
    _figure(rep["metrics"], out / "ranking.png")
    record["screenshot"] = _screenshot(rep["files"]["html"], out / "report" / "report.png")
    path = finish(out, "ranking", record, timer)
    print(f"{summary['counts']['done']} images, {len(methods)} methods x {len(metrics)} metrics in "
          f"{summary['this_run']['wall_s']:.1f} s (+ {summary['this_run']['compile_s']:.1f} s compile); best by metric: "
          f"{record['best']}; wrote {path}, ranking.md, ranking.png, report/report.html")
    return path


if __name__ == "__main__":
    main()
