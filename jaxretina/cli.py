"""The ``jaxretina`` command.

    jaxretina demo [--out DIR] [--size N] [--steps N] [--chunk N] [--weights PATH] [--image PATH]
    jaxretina convert SRC --model MODEL --out DIR [--variant V] [--num-classes N] [--model-option K=V ...]
                      [--backend {auto,torch,jaxretina}] [--no-parity]
    jaxretina sweep --model M --data DIR --method SPEC [--method SPEC ...] --out STORE [--batch N]
                    [--size N|HxW] [--weights FILE] [--target SPEC ...] [--config FILE] [--dry-run] ...
    jaxretina report STORE [--out DIR] [--html]

Every error is one line on stderr with exit code 2 (``JAXRETINA_DEBUG=1`` re-raises it with
its traceback).
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; found {text}")
    return value


def _chunk(text: str) -> int | str:
    return "all" if text == "all" else _positive_int(text)


def _add_cache_flag(parser) -> None:
    parser.add_argument("--compilation-cache", default=None, metavar="DIR|off",
                        help="JAX's persistent compilation cache: a second run loads its programs instead of "
                             "compiling them (default: $JAXRETINA_COMPILATION_CACHE, else ~/.cache/jaxretina/xla)")


def build_parser() -> argparse.ArgumentParser:
    """The parser; ``--model`` offers every model registered when it is built."""
    from jaxretina.models import registry

    models = registry.names()
    parser = argparse.ArgumentParser(prog="jaxretina", description=__doc__.strip().splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="all-layer Grad-CAM and IG of DRIU on a bundled fundus image")
    demo.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    demo.add_argument("--size", type=_positive_int, default=384,
                      help="longer image side in pixels after resizing (default: 384)")
    demo.add_argument("--steps", type=_positive_int, default=16,
                      help="IG steps (default: 16 Gauss-Legendre nodes; the completeness error is printed)")
    demo.add_argument("--chunk", type=_chunk, default=8,
                      help="IG steps per compiled chunk, or 'all' (default: 8)")
    demo.add_argument("--weights", default=None,
                      help="DRIU weights: .caffemodel, .pth/.pt, .safetensors or a converted "
                           "checkpoint directory (default: deterministic init)")
    demo.add_argument("--image", default=None, help="RGB fundus image (default: skimage's retina.jpg)")
    demo.add_argument("--variant", default=None, choices=["vessel", "optic_disc"],
                      help="DRIU variant (default: from --weights, else vessel)")
    _add_cache_flag(demo)
    conv = sub.add_parser("convert", help="convert Caffe / PyTorch weights to an Orbax checkpoint + JSON record")
    conv.add_argument("src", help="a .caffemodel, .pth/.pt or .safetensors file")
    conv.add_argument("--model", required=True, choices=models, help="a registered model")
    conv.add_argument("--out", required=True, help="new output directory")
    conv.add_argument("--variant", default=None, choices=["vessel", "optic_disc"],
                      help="DRIU variant (default: from the file)")
    conv.add_argument("--num-classes", type=_positive_int, default=None,
                      help="DenseNet classes (default: from the file)")
    conv.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                      help="model option, e.g. num_classes=5, transform_input=true (repeat for several)")
    conv.add_argument("--backend", default="auto", choices=["auto", "torch", "jaxretina"],
                      help="PyTorch file reader (default: torch's weights_only loader when installed)")
    conv.add_argument("--no-parity", action="store_true", help="skip the reference comparison")
    _add_cache_flag(conv)
    _add_sweep(sub, models)
    rep = sub.add_parser("report", help="summarise a sweep store: statistics, slowest and failed examples, "
                                        "contact sheet")
    rep.add_argument("store", help="the sweep's Zarr store")
    rep.add_argument("--out", default=None, help="output folder (default: STORE_report next to the store)")
    rep.add_argument("--rows", type=_positive_int, default=6, help="examples in the contact sheet (default: 6)")
    rep.add_argument("--html", action="store_true", help="also write report.html: one self-contained page to "
                                                         "browse examples x methods x layers, curves and metric tables")
    return parser


def _add_sweep(sub, models: tuple[str, ...]) -> None:
    sw = sub.add_parser("sweep", help="attributions of a whole dataset into a Zarr store (sharded, resumable)",
                        description="Flags override the --config file's keys. Methods and targets are "
                                    "KIND:key=value,...; lists are joined with '+'. See jaxretina.sweep.")
    sw.add_argument("--config", help="TOML or YAML file with the same keys as these flags")
    sw.add_argument("--model", choices=models, help="a registered model")
    sw.add_argument("--data", help="folder of images (or NIfTI volumes for unet3d), or tfds:drive / "
                                   "tfds:diabetic_retinopathy_detection")
    sw.add_argument("--out", help="the Zarr store to create or resume")
    sw.add_argument("--method", action="append", default=[],
                    help="e.g. ig:steps=32  gradcam:layers=all  guided_backprop  (repeat for several)")
    sw.add_argument("--target", action="append", default=[],
                    help="e.g. segmentation_sum (segmenters' default), top_class (classifiers'), class_logit:c=4")
    sw.add_argument("--metric", action="append", default=[],
                    help="score every map in the same program, e.g. deletion:steps=16  road  sparseness  "
                         "pointing_game (needs --masks); see jaxretina.sweep.metrics (repeat for several)")
    sw.add_argument("--masks", help="each example's region mask (vessels, lesions, NIfTI labels): a folder of "
                                    "<stem>.png/.gif/.nii.gz, or a template like DRIVE/1st_manual/{prefix}_manual1.gif")
    sw.add_argument("--fov", help="each example's field of view, as --masks (e.g. DRIVE/mask/{prefix}_training_mask.gif)")
    sw.add_argument("--weights", help="weight file or converted checkpoint (default: deterministic init, "
                                      "recorded as such)")
    sw.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                    help="model option, e.g. variant=vessel, num_classes=5, base_width=16")
    sw.add_argument("--batch", type=_positive_int, help="examples loaded, written and shared between processes "
                                                        "together (default: 8)")
    sw.add_argument("--micro-batch", type=_positive_int,
                    help="examples per device per program call (default: 1; batch is a multiple of it x the "
                         "local devices)")
    sw.add_argument("--programs", choices=["method", "one"],
                    help="compile one program per method (default: compile time linear in the methods, a method "
                         "added later compiles alone) or one for them all")
    sw.add_argument("--size", help="resize images to N or HxW (default: keep, one compile per shape)")
    sw.add_argument("--preprocess", help="driu_caffe | imagenet | unit | pixels | none (default: the model's)")
    sw.add_argument("--dtype", choices=["float16", "float32"], help="map dtype in the store (default: float32)")
    sw.add_argument("--split", help="TFDS split (default: test)")
    sw.add_argument("--tfds-dir", help="TFDS data_dir")
    sw.add_argument("--seed", type=int, help="initialisation / SmoothGrad noise seed (default: 0)")
    sw.add_argument("--coordinator", help="HOST:PORT of process 0 (several processes; or JAX_COORDINATOR_ADDRESS)")
    sw.add_argument("--num-processes", type=_positive_int, help="processes in all (or JAX_NUM_PROCESSES)")
    sw.add_argument("--process-id", type=int, help="this process's id (or JAX_PROCESS_ID)")
    sw.add_argument("--no-progress", action="store_true", help="no progress bar")
    sw.add_argument("--dry-run", action="store_true",
                    help="compile one step, report memory per device and time per example, write nothing")
    sw.add_argument("--quiet", action="store_true", help="log warnings only")
    _add_cache_flag(sw)


def _model_options(pairs: list[str]) -> dict | None:
    from jaxretina.sweep.config import parse_value

    out = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq:
            raise ValueError(f"--model-option expects KEY=VALUE; found {pair!r}")
        out[key.strip()] = parse_value(value.strip())
    return out or None


def _sweep(args) -> None:
    import json
    import logging

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    logging.getLogger("jax").setLevel(logging.WARNING)   # not "Unable to initialize backend 'tpu'"
    from jaxretina import sweep

    cfg = sweep.sweep_config(args.config, model=args.model, data=args.data, out=args.out or (
        "dry-run" if args.dry_run else None), methods=args.method, targets=args.target, metrics=args.metric,
        masks=args.masks, fov=args.fov, weights=args.weights,
        model_options=_model_options(args.model_option), batch=args.batch, micro_batch=args.micro_batch,
        programs=args.programs, size=args.size,
        preprocess=args.preprocess, dtype=args.dtype, split=args.split, tfds_dir=args.tfds_dir, seed=args.seed,
        progress=False if args.no_progress else None, coordinator=args.coordinator,
        num_processes=args.num_processes, process_id=args.process_id)
    if args.dry_run:
        result = sweep.dry_run(cfg)
        mem = result["memory_per_device_bytes"]
        print(f"{result['examples']} examples ({result['problems']} unusable) in {len(result['groups'])} shape "
              f"group(s) -> {result['compiles_needed']} compile(s), {result['batches']} batch(es) of "
              f"{result['batch']} on {result['devices']} device(s) x {result['processes']} process(es)")
        print(f"one step on {result['shape']}: compile {result['compile_s']:.1f} s, run {result['step_s']:.2f} s "
              f"= {result['seconds_per_example']:.3f} s per example; memory per device "
              f"{'unknown' if mem is None else f'{mem / 2**30:.2f} GiB'}; store "
              f"{result['store_bytes_per_example'] / 2**20:.2f} MiB per example")
        print(json.dumps(result))
        return
    summary = sweep.run(cfg)
    run, counts = summary["this_run"], summary["counts"]
    if counts is not None:
        print(f"{cfg.out}: {counts['done']} done, {counts['failed']} failed, {counts['pending']} pending; this run "
              f"{run['examples']} example(s) in {run['wall_s']:.1f} s, {run['compiles']} compile(s) "
              f"({run['compile_s']:.1f} s), {run['processes']} process(es) x {run['devices_per_process']} device(s)")


# Errors that say what was wrong with the user's input: one line, no traceback.  Anything else
# is a bug of ours: one line too, with the way to see its traceback.
_INPUT_ERRORS = (ValueError, OSError, UnicodeError, LookupError, pickle.UnpicklingError, RuntimeError)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 4000 else text[:4000] + " …"


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit code (2 for an error, printed as one line)."""
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print(f"jaxretina {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the command line shows one line, never a traceback
        if os.environ.get("JAXRETINA_DEBUG"):
            raise
        hint = "" if isinstance(err, _INPUT_ERRORS) else (
            f" ({type(err).__name__}; set JAXRETINA_DEBUG=1 for the traceback)")
        print(f"jaxretina {args.command}: error: {_one_line(err)}{hint}", file=sys.stderr)
        return 2


def _dispatch(args) -> int:
    if args.command in ("demo", "sweep", "convert"):
        from jaxretina import compilation_cache

        compilation_cache.enable(args.compilation_cache)
    if args.command == "demo":
        from jaxretina.demo import run_demo

        summary = run_demo(out=args.out, size=args.size, steps=args.steps, chunk=args.chunk,
                           weights=args.weights, image=args.image, variant=args.variant, verbose=True)
        ig, cam, xla = summary["integrated_gradients"], summary["grad_cam_all_layers"], summary["xla"]
        print(f"DRIU on {summary['image']}, input {summary['input_shape']}, {summary['weights']}")
        print(f"Grad-CAM, {cam['layers']} layers in one pass: compile {cam['compile_s']:.2f} s, "
              f"run {cam['run_s']:.2f} s")
        print(f"Integrated Gradients, {ig['steps']} steps: compile {ig['compile_s']:.2f} s, "
              f"run {ig['run_s']:.2f} s, completeness error {ig['relative_delta']:.2%} of "
              f"|f(x) - f(baseline)|")
        print(f"XLA: {xla['compiled']} program(s) compiled, {xla['from_cache']} loaded from the compilation cache "
              f"({xla['cache_dir'] or 'off'}); {summary['wall_s']:.1f} s in all")
        print("wrote:")
        for path in summary["files"].values():
            print(f"  {path}")
    elif args.command == "convert":
        from converters.convert import convert

        kwargs = _model_options(args.model_option) or {}
        if args.variant is not None:
            kwargs["variant"] = args.variant
        if args.num_classes is not None:
            kwargs["num_classes"] = args.num_classes
        record = convert(args.src, args.model, args.out, backend=args.backend, parity=not args.no_parity, **kwargs)
        mapping, check = record["mapping"], record["parity"]
        print(f"{args.src} ({mapping['source_format']}, sha256 {record['source']['sha256'][:12]}…) -> {args.out}")
        print(f"  {mapping['mapped']} arrays mapped; ignored {len(mapping['ignored'])}; "
              f"unexpected {mapping['unexpected'] or 'none'}; options {record['config']}")
        if check["available"]:
            print(f"  parity vs {check['reference']}: max abs {check['max_abs']:.3g}, max rel {check['max_rel']:.3g}")
        else:
            print(f"  parity: {check['reason']}")
    elif args.command == "sweep":
        _sweep(args)
    elif args.command == "report":
        from jaxretina.sweep import report

        summary = report(args.store, args.out, rows=args.rows, html=args.html)
        counts = summary["counts"]
        print(f"{args.store}: {counts['done']} done, {counts['failed']} failed, {counts['pending']} pending")
        for f in summary["failed"][:10]:
            print(f"  failed {f['name']}: {f['reason']}")
        print("wrote:")
        for path in summary["files"].values():
            print(f"  {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
