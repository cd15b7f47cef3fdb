"""Conversion speed and memory: a VGG-sized .caffemodel and a DenseNet121 state dict.

    python -m benchmarks.conversion [--repeats 3] [--out benchmarks/results/conversion.json]

(needs the test extra: protobuf writes the .caffemodel, torch the .pth).  Every case runs in
its own subprocess, after its imports; peak memory is resident memory sampled every
millisecond, over what the imports left.  "first" is the first run in the process (for
``load`` it includes tracing the model's variable shapes, cached afterwards); "best" the best of
``--repeats`` runs.  Every case runs twice: with a warm page cache, and "cold" with the
file's pages dropped (``posix_fadvise(DONTNEED)``) before each run.  The yardstick is reading
the file's bytes in the same condition: the target is conversion within 2× of it.

Cases:
* ``read bytes``: ``open(path, "rb").read()``;
* ``caffe: wire decoder``: :func:`converters.caffe.read_caffemodel` (blobs as numpy views);
* ``caffe: protobuf runtime``: ``NetParameter.ParseFromString`` with a schema subset, then each
  blob's data to numpy — the alternative the decoder was chosen over;
* ``load(...)``: the whole :func:`jaxretina.load` (read, decode, map, check, transfer to the
  default device), for DRIU from the .caffemodel and DenseNet121 from the .pth with both
  PyTorch readers.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

from benchmarks._memory import PeakSampler, rss_mb
from benchmarks._process import run_case, write_results

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _evict(path: str) -> None:
    """Drop the file's pages from the page cache (Linux; no root needed for one's own file)."""
    if hasattr(os, "posix_fadvise"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _case(kind: str, path: str, repeats: int, cold: bool = False) -> dict:
    """Runs inside the subprocess."""
    import jaxretina  # noqa: F401 - imports (and JAX backend start) before the baseline
    import jax

    jax.devices()
    if kind == "caffe_protobuf":
        from tests.reference.caffe_proto import messages

        net_cls = messages(True)["NetParameter"]
    if kind.startswith("load"):
        import converters.formats  # noqa: F401
    base = rss_mb()

    def run():
        if kind == "read":
            with open(path, "rb") as fh:
                return fh.read()
        if kind == "caffe_wire":
            from converters.caffe import read_caffemodel

            return read_caffemodel(path)
        if kind == "caffe_protobuf":
            with open(path, "rb") as fh:
                net = net_cls.FromString(fh.read())
            return [np.asarray(b.data, np.float32).reshape(tuple(b.shape.dim)) for l in net.layer for b in l.blobs]
        if kind == "load_driu":
            return jax.block_until_ready(jaxretina.load("driu", path)[1])
        if kind == "load_densenet_torch":
            return jax.block_until_ready(jaxretina.load("densenet121", path, backend="torch")[1])
        if kind == "load_densenet_jaxretina":
            return jax.block_until_ready(jaxretina.load("densenet121", path, backend="jaxretina")[1])
        raise ValueError(kind)

    times, peaks = [], []
    for _ in range(repeats):
        if cold:
            _evict(path)
        with PeakSampler() as mem:
            t0 = time.perf_counter()
            result = run()
            times.append(time.perf_counter() - t0)
        peaks.append(mem.peak - base)
        del result
    return {"seconds": min(times), "first_seconds": times[0], "peak_mb_over_imports": max(peaks)}


def _write_files(folder: str) -> tuple[str, str]:
    import torch
    import torchvision

    sys.path.insert(0, _ROOT)
    from tests.reference.caffe_writer import driu_net_bytes
    from tests.reference.driu_torch import random_driu_weights

    weights = random_driu_weights("optic_disc", seed=0)
    # fc6 of VGG16 (4096 × 4096) as an extra layer: brings the file to VGG size (~130 MB) and
    # exercises Caffe's "ignore unknown layers" path.
    fc6 = np.random.default_rng(1).normal(0, 0.01, (4096, 4096)).astype(np.float32)
    caffe = os.path.join(folder, "driu_vgg_sized.caffemodel")
    with open(caffe, "wb") as fh:
        fh.write(driu_net_bytes(weights, extra_layers=[("fc6", "InnerProduct", [fc6])]))
    pth = os.path.join(folder, "densenet121.pth")
    torch.save({"state_dict": torchvision.models.densenet121(num_classes=5).state_dict()}, pth)
    return caffe, pth


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(_ROOT, "benchmarks", "results", "conversion.json"))
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        caffe, pth = _write_files(folder)
        plan = [(caffe, "read", "read bytes"), (caffe, "caffe_wire", "caffe: wire decoder"),
                (caffe, "caffe_protobuf", "caffe: protobuf runtime"), (caffe, "load_driu", "load('driu', .caffemodel)"),
                (pth, "read", "read bytes"), (pth, "load_densenet_jaxretina", "load('densenet121', backend='jaxretina')"),
                (pth, "load_densenet_torch", "load('densenet121', backend='torch')")]
        for cache in ("warm", "cold"):
            for path, kind, label in plan:
                res = run_case("benchmarks.conversion", "_case", kind, path, args.repeats, cache == "cold")
                rows.append({"file": os.path.basename(path), "mb": os.path.getsize(path) / 1e6, "cache": cache,
                             "case": label, **res})
    print(f"{'file':26s} {'MB':>6s} {'cache':5s} {'case':42s} {'first s':>8s} {'best s':>7s} {'× read':>7s} "
          f"{'peak MB':>8s}")
    for r in rows:
        read = next(x["seconds"] for x in rows
                    if x["file"] == r["file"] and x["cache"] == r["cache"] and x["case"] == "read bytes")
        r["ratio_to_read"] = r["seconds"] / read
        print(f"{r['file']:26s} {r['mb']:6.1f} {r['cache']:5s} {r['case']:42s} {r['first_seconds']:8.3f} "
              f"{r['seconds']:7.3f} {r['ratio_to_read']:7.2f} {r['peak_mb_over_imports']:8.0f}")
    write_results(args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
