"""The ``jaxretina`` command.

    jaxretina demo [--out DIR] [--size N] [--steps N] [--chunk N] [--weights PATH] [--image PATH]
    jaxretina convert SRC --model {driu,densenet121,inception_v3} --out DIR [--variant V] [--num-classes N]
                      [--backend {auto,torch,jaxretina}] [--no-parity]
"""

from __future__ import annotations

import argparse
import sys


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; found {text}")
    return value


def _chunk(text: str) -> int | str:
    return "all" if text == "all" else _positive_int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxretina", description=__doc__.strip().splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="all-layer Grad-CAM and IG of DRIU on a bundled fundus image")
    demo.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    demo.add_argument("--size", type=_positive_int, default=384,
                      help="longer image side in pixels after resizing (default: 384)")
    demo.add_argument("--steps", type=_positive_int, default=32, help="IG steps (default: 32)")
    demo.add_argument("--chunk", type=_chunk, default=8,
                      help="IG steps per compiled chunk, or 'all' (default: 8)")
    demo.add_argument("--weights", default=None,
                      help="DRIU weights: .caffemodel, .pth/.pt, .safetensors or a converted "
                           "checkpoint directory (default: deterministic init)")
    demo.add_argument("--image", default=None, help="RGB fundus image (default: skimage's retina.jpg)")
    demo.add_argument("--variant", default=None, choices=["vessel", "optic_disc"],
                      help="DRIU variant (default: from --weights, else vessel)")
    conv = sub.add_parser("convert", help="convert Caffe / PyTorch weights to an Orbax checkpoint + JSON record")
    conv.add_argument("src", help="a .caffemodel, .pth/.pt or .safetensors file")
    conv.add_argument("--model", required=True, choices=["driu", "densenet121", "inception_v3", "unet3d"])
    conv.add_argument("--out", required=True, help="new output directory")
    conv.add_argument("--variant", default=None, choices=["vessel", "optic_disc"],
                      help="DRIU variant (default: from the file)")
    conv.add_argument("--num-classes", type=_positive_int, default=None,
                      help="DenseNet classes (default: from the file)")
    conv.add_argument("--backend", default="auto", choices=["auto", "torch", "jaxretina"],
                      help="PyTorch file reader (default: torch's weights_only loader when installed)")
    conv.add_argument("--no-parity", action="store_true", help="skip the reference comparison")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from jaxretina.demo import run_demo

        summary = run_demo(out=args.out, size=args.size, steps=args.steps, chunk=args.chunk,
                           weights=args.weights, image=args.image, variant=args.variant)
        ig, cam = summary["integrated_gradients"], summary["grad_cam_all_layers"]
        print(f"DRIU on {summary['image']}, input {summary['input_shape']}, {summary['weights']}")
        print(f"Grad-CAM, {cam['layers']} layers in one pass: compile {cam['compile_s']:.2f} s, "
              f"run {cam['run_s']:.2f} s")
        print(f"Integrated Gradients, {ig['steps']} steps: compile {ig['compile_s']:.2f} s, "
              f"run {ig['run_s']:.2f} s, completeness error {ig['relative_delta']:.2%} of "
              f"|f(x) - f(baseline)|")
        print("wrote:")
        for path in summary["files"].values():
            print(f"  {path}")
    elif args.command == "convert":
        from converters.convert import convert

        kwargs = {}
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
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
