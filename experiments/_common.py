"""Shared plumbing of the seed experiments: data sources from the command line, weights,
JSON output.  Not part of the library API."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np


def add_data_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data (default: a generated fake dataset)")
    g.add_argument("--data", help="Kaggle's extracted download = TFDS manual dir (train/, trainLabels.csv, "
                                  "optionally test/ + retinopathy_solution.csv)")
    g.add_argument("--folder", help="a plain folder of images (with --labels, a Kaggle-style CSV)")
    g.add_argument("--labels", help="labels CSV for --folder (default: trainLabels.csv in or next to it)")
    g.add_argument("--tfds-dir", help="a prepared TFDS diabetic_retinopathy_detection data_dir")
    g.add_argument("--fake-per-class", type=int, default=6, help="fake dataset: training images per grade")
    parser.add_argument("--out", default="runs/experiment", help="output folder (figures, JSON)")
    parser.add_argument("--seed", type=int, default=0)


def open_sources(args: argparse.Namespace, *, eval_split: bool = True) -> tuple[Any, Any, dict]:
    """``(train, evaluation, description)``; evaluation is the validation split when the data
    has one (Kaggle test labels, TFDS), else a stratified 20 % of the training images."""
    from jaxretina import data

    out = Path(args.out)
    if args.tfds_dir:
        train = data.tfds_source(args.tfds_dir, "train")
        try:
            held = data.tfds_source(args.tfds_dir, "validation")
        except FileNotFoundError:
            train, held = data.split(train, 0.8, seed=args.seed)
        return train, held, {"kind": "tfds", "path": args.tfds_dir}
    if args.data:
        train = data.kaggle_manual_dir(args.data, "train")
        desc = {"kind": "kaggle manual dir", "path": os.path.abspath(args.data)}
        try:
            held = data.kaggle_manual_dir(args.data, "validation")
            desc["evaluation"] = "validation split (retinopathy_solution.csv, Usage=Public)"
        except FileNotFoundError:
            train, held = data.split(train, 0.8, seed=args.seed)
            desc["evaluation"] = "stratified 20 % of train"
        return train, held, desc
    if args.folder:
        full = data.kaggle_folder(args.folder, args.labels)
        train, held = data.split(full, 0.8, seed=args.seed)
        return train, held, {"kind": "folder", "path": os.path.abspath(args.folder),
                             "evaluation": "stratified 20 % of the folder"}
    root = out / "fake_data"
    if not (root / "manual" / "trainLabels.csv").exists():
        data.make_fake_dataset(root, per_class=args.fake_per_class, test_per_class=2, size=128, seed=args.seed)
    train = data.kaggle_manual_dir(root / "manual", "train")
    held = data.kaggle_manual_dir(root / "manual", "validation") if eval_split else train
    return train, held, {"kind": "generated fake dataset", "path": str(root.resolve()),
                         "note": "synthetic images; numbers say nothing about real DR grading"}


def start(args: argparse.Namespace, seed_id: str) -> tuple[Path, "Timer", dict]:
    """The output folder (created), a timer and the JSON record's head."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return out, Timer(), {"seed": seed_id, "args": vars(args)}


def build_model(name: str, model: Any, args: argparse.Namespace, *, own_init: bool = False,
                weights: str | None = "args") -> tuple[Any, Any, dict]:
    """``(model, variables, description)``: an Orbax directory saved by an experiment loads as it
    is; a weight file (e.g. torchvision's ImageNet .pth) fills every matching layer of ``model``
    and the rest (the new head) starts fresh; no ``--weights``: random initialisation — NumPy
    draws (:func:`jaxretina.models.random_variables`, no compile), or with ``own_init`` the
    model's own ``init`` (DRIU's fixed bilinear upsampling kernels)."""
    import jax
    import jaxretina
    from jaxretina import train

    weights = args.weights if weights == "args" else weights   # or this model's own file
    if weights and Path(weights).is_dir():
        model, variables = jaxretina.load(name, weights)
        return model, variables, {"weights": weights, "reinitialised": []}
    if weights:
        _, pretrained = jaxretina.load(name, weights)
        variables, fresh = train.transfer_variables(pretrained, model, seed=args.seed)
        return model, variables, {"weights": weights, "reinitialised": fresh}
    if own_init:
        from jaxretina.models import spec

        probe, example = spec.shape_probe(model, "an experiment's own initialisation")
        variables = jax.jit(probe.init)(jax.random.key(args.seed), example)
        return model, variables, {"weights": None, "note": "the model's own initialisation (no --weights)"}
    from jaxretina.models import random_variables

    variables = random_variables(model, seed=args.seed)  # NumPy draws: no compile of the model's init
    return model, variables, {"weights": None, "note": "random initialisation (no --weights): kernels N(0, 1/fan_in), "
                                                       "biases N(0, 0.01), BatchNorm identity"}


def finish(out: Path, name: str, record: dict, timer: "Timer") -> Path:
    """Add the timings and write ``out/<name>.json``."""
    record["seconds"] = timer.seconds
    return write_json(out / f"{name}.json", record)


def pick_examples(labels: np.ndarray, predictions: np.ndarray, wanted: dict[str, tuple[int, int | None]]) -> dict:
    """``{role: index}``: the first example with (true grade, predicted grade or None); falls
    back to any example of the grade, then to the highest grade present."""
    chosen = {}
    for role, (grade, pred) in wanted.items():
        hits = np.flatnonzero((labels == grade) & ((predictions == pred) if pred is not None else True))
        if hits.size == 0:
            hits = np.flatnonzero(labels == grade)
        if hits.size == 0:
            hits = np.flatnonzero(labels == labels.max())
        chosen[role] = int(hits[0])
    return chosen


def write_json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, default=_plain))
    return path


def _plain(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


class Timer:
    """``with timer("name"):`` accumulates wall seconds per name (results are blocked on)."""

    def __init__(self, verbose: bool = True):
        self.seconds: dict[str, float] = {}
        self.verbose = verbose

    def __call__(self, name: str):
        timer = self

        class _T:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                timer.seconds[name] = round(timer.seconds.get(name, 0.0) + time.perf_counter() - self.t0, 3)
                if timer.verbose:
                    print(f"{name}: {timer.seconds[name]:.1f} s", flush=True)

        return _T()
