"""Sweeps pointed at strangers' folders and stores: foreign --out targets are refused and left
untouched, absurd or unreadable inputs are recorded as failed while the sweep goes on, changed
weights stop a resume, bad configuration is one clear error (one line from the CLI), and a
second unjoined sweep on the same store is stopped by the store's lease."""

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

import jaxretina
from jaxretina import sweep
from jaxretina.cli import main
from jaxretina.loading import digest
from jaxretina.sweep.lease import Lease, StoreBusy
from tests.test_sweep import write_images

RUN = dict(model="driu", methods=["saliency"], batch=2, progress=False)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_images(str(tmp_path_factory.mktemp("hostile_images")), n=2)


def _snapshot(path):
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(Path(path).rglob("*")) if p.is_file()}


# -- the store's folder ------------------------------------------------------------------------

def test_foreign_zarr_group_folder_and_file_are_refused_untouched(images, tmp_path):
    import zarr

    group = tmp_path / "theirs.zarr"
    root = zarr.create_group(str(group), zarr_format=3, attributes={"owner": "someone else"})
    root.create_array("data", shape=(3,), dtype="f4")[:] = [1, 2, 3]
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("keep me")
    plain = tmp_path / "file.zarr"
    plain.write_text("not a folder")
    for out, message in ((group, "not created by jaxretina"), (folder, "not created by jaxretina"),
                         (plain, "is a file")):
        before = _snapshot(out) if out.is_dir() else out.read_bytes()
        with pytest.raises(FileExistsError, match=message):
            sweep.run(data=images, out=str(out), **RUN)
        assert (_snapshot(out) if out.is_dir() else out.read_bytes()) == before


def test_an_interrupted_creation_of_ours_is_redone(images, tmp_path):
    import zarr

    out = tmp_path / "ours.zarr"
    zarr.create_group(str(out), zarr_format=3, attributes={"jaxretina_creating": {"pid": 1}})
    (out / "stale").mkdir()
    summary = sweep.run(data=images, out=str(out), **RUN)
    assert summary["counts"] == {"done": 2, "failed": 2, "pending": 0}
    assert not (out / "stale").exists() and not (out / "lease").exists()


# -- inputs ------------------------------------------------------------------------------------

def _png_header_only(width, height):
    """A PNG whose IHDR promises width x height RGB pixels, with one tiny IDAT: a few hundred
    bytes that would decode to width * height * 3 bytes."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _nifti_header_only(path, shape):
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_dtype(np.float32)
    header.set_data_shape(shape)
    header["vox_offset"] = 352
    with open(path, "wb") as fh:
        fh.write(header.binaryblock + b"\0" * 4)


def test_absurd_sizes_fifos_and_bad_names_are_recorded_and_the_sweep_goes_on(images, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in os.listdir(images):
        (data / name).write_bytes(Path(images, name).read_bytes())
    (data / "huge.png").write_bytes(_png_header_only(20000, 20000))
    os.mkfifo(data / "pipe.png")                                   # would block a reader forever
    fd = os.open(os.fsencode(data) + b"/bad\xffname.png", os.O_CREAT | os.O_WRONLY)
    os.write(fd, (data / "img00.png").read_bytes())
    os.close(fd)
    out = str(tmp_path / "s.zarr")
    done = subprocess.run(
        [sys.executable, "-c", "import sys, json; from jaxretina import sweep; "
         f"print(json.dumps(sweep.run(model='driu', data={str(data)!r}, out={out!r}, methods=['saliency'], batch=2, "
         "progress=False)['counts']))"],
        capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"done": 2, "failed": 5, "pending": 0}
    reasons = {n: r for _, n, r in sweep.open_store(out).failed()}
    assert "too large" in reasons["huge.png"] and "400000000 pixels" in reasons["huge.png"]
    assert "not a regular file" in reasons["pipe.png"]
    assert "not valid UTF-8" in reasons["bad\\xffname.png"]


def test_a_4096_cubed_nifti_header_is_recorded_not_read(tmp_path):
    from jaxretina import data

    folder = tmp_path / "vols"
    folder.mkdir()
    _nifti_header_only(folder / "huge.nii", (4096, 4096, 4096))
    data.write_nifti(folder / "ok.nii.gz", np.random.default_rng(0).random((16, 16, 16)).astype(np.float32))
    inputs = sweep.open_inputs(str(folder), volumes=True)
    huge = inputs.items[[it.name for it in inputs.items].index("huge.nii")]
    assert huge.shape is None and "too large" in huge.problem and "4096" in huge.problem
    with pytest.raises(ValueError, match="over the limit"):
        data.read_nifti(folder / "huge.nii")


# A stand-in for a C decoder that crashes on a crafted file: in the processes that get this
# folder on their PYTHONPATH, decoding the pixels of a PNG with the text chunk
# "jaxretina-test: crash" kills the process with SIGSEGV (its header still reads).
_CRASHING_DECODER = """
import glob, os, signal, threading, time
from PIL import ImageFile
_load = ImageFile.ImageFile.load
def _crashing_load(self):
    if self.info.get("jaxretina-test") == "crash":
        # what the store's journals held when the reader crashed, for the test's message
        journals = {f: open(f).read() for f in glob.glob(os.environ["JAXRETINA_TEST_OUT"] + "/decoding/p*/zarr.json")}
        with open(os.environ["JAXRETINA_TEST_CRASHED"], "w") as fh:
            fh.write(repr(journals))
        # like a fault in C: the signal hits this thread, which never returns (a process-wide
        # kill can be handled by another thread — a crash handler — while this one goes on
        # decoding and clears the journal before the process dies)
        signal.pthread_kill(threading.get_ident(), signal.SIGSEGV)
        time.sleep(60)
    return _load(self)
ImageFile.ImageFile.load = _crashing_load
"""


def test_an_input_that_crashes_its_decoder_stops_one_run_not_every_resume(images, tmp_path, monkeypatch):
    from PIL import Image, PngImagePlugin

    from jaxretina.sweep.decoding import DecodeJournal, leftover

    data = tmp_path / "data"
    data.mkdir()
    for name in ("img00.png", "img01.png"):
        (data / name).write_bytes(Path(images, name).read_bytes())
    marker = PngImagePlugin.PngInfo()
    marker.add_text("jaxretina-test", "crash")
    Image.open(data / "img00.png").save(data / "crash.png", pnginfo=marker)     # example 0
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_CRASHING_DECODER)
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(repo)]))
    out = str(tmp_path / "s.zarr")
    crashed = tmp_path / "crashed"
    monkeypatch.setenv("JAXRETINA_TEST_OUT", out)
    monkeypatch.setenv("JAXRETINA_TEST_CRASHED", str(crashed))
    first = subprocess.run([sys.executable, "-m", "jaxretina", "sweep", "--model", "driu", "--data", str(data),
                            "--out", out, "--method", "saliency", "--batch", "2", "--no-progress"],
                           capture_output=True, text=True, timeout=300, cwd=repo)
    assert first.returncode == -11, (first.returncode, first.stderr[-2000:])   # a real SIGSEGV
    assert crashed.exists(), ("the process crashed elsewhere than in the crafted decoder", first.stderr[-3000:])
    # it died decoding crash.png, and the store says so
    assert 0 in leftover(out), (crashed.read_text(), os.listdir(Path(out, "decoding")), first.stderr[-3000:])
    DecodeJournal(out, process=1).decoding(2).__enter__()   # and a second process died decoding img01.png
    summary = sweep.run(data=str(data), out=out, **RUN)     # the resume: the decoder still crashes on it
    assert summary["counts"] == {"done": 2, "failed": 1, "pending": 0}
    (_, name, reason), = sweep.open_store(out).failed()
    assert name == "crash.png" and "crashed the reader (SIGSEGV)" in reason
    assert leftover(out) == set() and sorted(os.listdir(Path(out, "decoding"))) == ["p0", "zarr.json"]
    again = sweep.run(data=str(data), out=out, **RUN)
    assert again["this_run"]["examples"] == 0 and again["counts"] == summary["counts"]


# -- weights, configuration, command line ------------------------------------------------------

def test_resuming_after_the_weights_changed_is_refused(images, tmp_path):
    model, variables, _ = sweep.load_model(sweep.sweep_config(data=images, out="x", **RUN))
    weights = jaxretina.save("driu", model, variables, tmp_path / "w")
    out = str(tmp_path / "s.zarr")
    sweep.run(data=images, out=out, weights=weights, **RUN)
    with open(os.path.join(weights, "jaxretina.json"), "a") as fh:   # same path, other bytes
        fh.write(" ")
    with pytest.raises(ValueError, match="weights .*w changed since"):
        sweep.run(data=images, out=out, weights=weights, **RUN)


@pytest.mark.parametrize("keys,match", [
    (dict(batch="8"), "batch must be a positive integer"),
    (dict(seed="x"), "seed must be a non-negative integer"),
    (dict(model=5), "model must be a model name"),
    (dict(methods=5), "methods must be a list"),
    (dict(size={"h": 3}), "size must be an image size"),
    (dict(progress="yes"), "progress must be true or false"),
    (dict(methods=["ig:steps=abc"]), "option steps='abc' is not a positive integer"),
    (dict(methods=["gradcam:relu=maybe"]), "option relu='maybe' is not true or false"),
    (dict(methods=["ig:rule=simpson"]), "option rule='simpson' is not one of"),
    (dict(methods=["neuron_conductance:layer=conv1_2"]), "needs neuron=<a flat index"),
    (dict(methods=["neuron_conductance:neuron=-3"]), "option neuron=-3 is not a flat index"),
    (dict(methods=["guided_gradcam:interpolate=cubic"]), "option interpolate='cubic' is not 'nearest' or 'linear'"),
    (dict(methods=["smoothgrad:variant=dual"]), "option variant='dual' is not one of \\['smoothgrad'"),
    (dict(methods=["extremal_perturbation:variant=vargrad"]), "option variant='vargrad' is not one of \\['preserve'"),
    (dict(methods=["occlusion_sensitivity:mode=blur"]), "option mode='blur' is not a number or one of"),
    (dict(methods=["rise:p=1.5"]), "option p=1.5 is not a number between 0 and 1"),
    (dict(methods=["lime:kernel_width=0"]), "option kernel_width=0 is not a positive number"),
    (dict(methods=["occlusion:window=0"]), "option window=0 is not a positive integer"),
    (dict(methods=["kernel_shap:permutations=3"]), "unknown options \\['permutations'\\]"),
    (dict(model_options={"base_width": "wide"}), "unknown driu options|option base_width"),
])
def test_config_values_of_the_wrong_type_name_the_key(images, tmp_path, keys, match):
    with pytest.raises(ValueError, match=match):
        sweep.run(**{**dict(RUN, data=images, out=str(tmp_path / "s.zarr")), **keys})
    assert not (tmp_path / "s.zarr").exists()


def _cli_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_cli_errors_are_one_line(images, tmp_path, capsys):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nmodel: driu\n")
    base = ["sweep", "--model", "driu", "--data", images, "--method", "saliency", "--no-progress", "--quiet"]
    assert "aliases" in _cli_error(capsys, base + ["--out", str(tmp_path / "o"), "--config", str(bomb)])
    fifo = tmp_path / "cfg.yaml"
    os.mkfifo(fifo)
    assert "not a regular file" in _cli_error(capsys, base + ["--out", str(tmp_path / "o"), "--config", str(fifo)])
    typed = tmp_path / "typed.toml"
    typed.write_text('batch = "eight"\n')
    assert "batch must be" in _cli_error(capsys, base + ["--out", str(tmp_path / "o"), "--config", str(typed)])
    target = tmp_path / "a_file"
    target.write_text("x")
    assert "is a file" in _cli_error(capsys, base + ["--out", str(target)])
    assert "option steps" in _cli_error(capsys, base[:-3] + ["ig:steps=-3", "--out", str(tmp_path / "o")])
    missing = _cli_error(capsys, ["convert", str(tmp_path / "nope.pth"), "--model", "driu", "--out", str(tmp_path / "c")])
    assert "nope.pth" in missing
    assert not (tmp_path / "o").exists() and target.read_text() == "x"


# -- the lease ---------------------------------------------------------------------------------

def test_the_lease_stops_a_second_run_and_is_taken_over_from_the_dead(tmp_path):
    store = str(tmp_path / "s.zarr")
    first = Lease(store)
    first.acquire()
    with pytest.raises(StoreBusy, match=f"process {os.getpid()}"):
        Lease(store).acquire()
    first.renew(force=True)
    first.release()
    assert not os.path.exists(os.path.join(store, "lease"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    holder = {"run": "old", "host": os.uname().nodename, "pid": int(dead.stdout), "started": "then"}
    os.makedirs(os.path.join(store, "lease"))
    with open(os.path.join(store, "lease", "zarr.json"), "w") as fh:
        json.dump({"zarr_format": 3, "node_type": "group", "attributes": {"jaxretina_lease": holder}}, fh)
    second = Lease(store)
    second.acquire()                                   # the holder's process is gone: taken over
    assert second.holder()["pid"] == os.getpid()
    other_host = dict(holder, host="elsewhere", pid=1)
    with open(os.path.join(store, "lease", "zarr.json"), "w") as fh:
        json.dump({"zarr_format": 3, "node_type": "group", "attributes": {"jaxretina_lease": other_host}}, fh)
    with pytest.raises(StoreBusy, match="lost the lease"):
        second.renew(force=True)
    with pytest.raises(StoreBusy, match="elsewhere"):
        Lease(store).acquire()                         # alive as far as anyone here can tell ...
    os.utime(os.path.join(store, "lease", "zarr.json"), (0, 0))
    Lease(store, ttl=60).acquire()                     # ... until it is not renewed for a ttl
