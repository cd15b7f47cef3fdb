"""jaxretina sweep across devices and processes, and killed midway: each gives the store of one
uninterrupted single-device run.

Every run is the ``jaxretina sweep`` command in its own interpreter: the device count
(``--xla_force_host_platform_device_count``) and ``jax.distributed`` are per-process settings.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxretina import sweep
from tests.test_sweep import write_images

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["ig:steps=8,chunk=4", "gradcam:layers=conv1_2+upsample2", "guided_backprop"]


def _command(data, out, *extra):
    args = [sys.executable, "-m", "jaxretina", "sweep", "--model", "driu", "--data", data, "--out", out,
            "--batch", "4", "--no-progress", "--quiet"]
    for m in METHODS:
        args += ["--method", m]
    return args + list(extra)


def _env(devices=1):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    flags = env.get("XLA_FLAGS", "").replace("--xla_force_host_platform_device_count=", "--ignored=")
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
    return env


def _sweep(data, out, *extra, devices=1):
    done = subprocess.run(_command(data, out, *extra), env=_env(devices), cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """10 good images, a truncated one and a grayscale one; 11 listed -> 3 batches of 4."""
    return write_images(str(tmp_path_factory.mktemp("dist_images")), n=10)


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("dist_ref") / "one.zarr")
    _sweep(dataset, out)
    return out


def _info(store, i, drop=("process",)):
    return {k: v for k, v in store.info(i).items() if k not in drop}


def assert_same_store(a_path, b_path, *, exact):
    """Same examples, status, reasons, hashes, maps and scalars (``seconds`` aside: wall time);
    ``exact``: bit for bit, else to float32 reassociation (:func:`_assert_close_maps`)."""
    a, b = sweep.open_store(a_path), sweep.open_store(b_path)
    assert a.names == b.names and a.map_names == b.map_names
    np.testing.assert_array_equal(a.status(), b.status())
    assert a.status_counts() == {"done": 10, "failed": 2, "pending": 0}
    assert a.meta["config"] == b.meta["config"]
    sa, sb = a.scalars(), b.scalars()
    # IG's delta is f(x) − f(x') − Σ attributions: float32 rounding of the score's size
    scale = float(np.nanmax(np.abs(sa["score"])))
    for name in a.scalar_names:
        if name == "seconds":
            continue
        if exact:
            np.testing.assert_array_equal(sa[name], sb[name], err_msg=name)
        else:
            np.testing.assert_allclose(sa[name], sb[name], rtol=1e-5, atol=1e-6 * scale, err_msg=name)
    for i in range(len(a)):
        assert _info(a, i) == _info(b, i)
        if a.status()[i] != sweep.DONE:
            continue
        ea, eb = a.example(i), b.example(i)
        for name in ea:
            if exact:
                np.testing.assert_array_equal(ea[name], eb[name], err_msg=f"{i} {name}")
            else:
                _assert_close_maps(ea[name], eb[name], f"{i} {name}")


def _assert_close_maps(a, b, what):
    """Float32 reassociation (other per-device batch sizes): within 1e-4 of the map's largest
    magnitude, but for a kink crossed the other way — a ReLU or max-pool near a tie at one IG
    path point moves a small patch, at most 1 % of the values by at most 1e-3 of the top
    (measured on an AMD EPYC, DRIU's IG: 25 of 3072 values, 3.3e-4 of the top)."""
    top = float(np.abs(a).max())
    diff = np.abs(np.asarray(a, np.float64) - b)
    off = diff > 1e-4 * top + 1e-4 * np.abs(b)
    assert off.mean() <= 0.01 and diff.max() <= 1e-3 * top, (
        f"{what}: {int(off.sum())} of {off.size} values off by up to {diff.max() / top:.2e} of the top {top:.3g}")


def test_four_devices_give_the_one_device_store(dataset, reference, tmp_path):
    out = str(tmp_path / "four.zarr")
    _sweep(dataset, out, devices=4)
    assert sweep.open_store(out).meta["summary"]["this_run"]["devices_per_process"] == 4
    assert_same_store(reference, out, exact=False)


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_give_the_one_process_store(dataset, reference, tmp_path):
    out = str(tmp_path / "two.zarr")
    address = f"localhost:{_free_port()}"
    procs = [subprocess.Popen(_command(dataset, out, "--coordinator", address, "--num-processes", "2",
                                       "--process-id", str(k)), env=_env(), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    store = sweep.open_store(out)
    by = {store.info(i)["process"] for i in range(len(store)) if store.status()[i] == sweep.DONE}
    assert by == {0, 1}                                   # both shared the work ...
    assert store.meta["summary"]["this_run"]["processes"] == 2
    assert_same_store(reference, out, exact=False)        # ... and gave the one-process store


def test_killed_midway_and_resumed_gives_the_uninterrupted_store(dataset, reference, tmp_path):
    out = tmp_path / "killed.zarr"
    proc = subprocess.Popen(_command(dataset, str(out)), env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    status_dir = out / "status" / "c"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if status_dir.exists() and any(status_dir.iterdir()):
            done = [int(f.name) for f in status_dir.iterdir() if not f.name.endswith(".partial")]
            if len(done) > 3:          # the listed failures (1) and some computed examples
                break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    counts = sweep.open_store(str(out)).status_counts()
    assert counts["pending"] > 0, f"the run finished before it was killed ({counts}); nothing was tested"
    assert counts["done"] > 0
    print(f"killed with {counts}")
    again = _sweep(dataset, str(out))
    assert "done" in again.stdout
    assert not list(out.rglob("*.partial"))
    assert_same_store(reference, str(out), exact=True)


def test_two_tasks_of_a_simulated_slurm_job_join_by_themselves(dataset, reference, tmp_path):
    # No --coordinator: the sweep sees a SLURM job of two tasks and calls
    # jax.distributed.initialize() with no arguments; JAX reads the job's variables.
    out = str(tmp_path / "slurm.zarr")
    port = _free_port()
    procs = []
    for k in range(2):
        env = dict(_env(), SLURM_JOB_ID="4242", SLURM_STEP_NODELIST="localhost", SLURM_NTASKS="2",
                   SLURM_PROCID=str(k), SLURM_LOCALID=str(k), JAX_COORDINATOR_PORT=str(port))
        procs.append(subprocess.Popen(_command(dataset, out), env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    store = sweep.open_store(out)
    assert store.meta["summary"]["this_run"]["processes"] == 2
    by = {store.info(i)["process"] for i in range(len(store)) if store.status()[i] == sweep.DONE}
    assert by == {0, 1}
    assert_same_store(reference, out, exact=False)


def test_a_second_unjoined_sweep_on_the_same_store_is_stopped(dataset, tmp_path):
    out = tmp_path / "shared.zarr"
    first = subprocess.Popen(_command(dataset, str(out)), env=_env(), cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    lease = out / "lease" / "zarr.json"
    try:
        deadline = time.time() + 300
        while not lease.exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        assert lease.exists(), "the first sweep never took the store's lease"
        os.kill(first.pid, signal.SIGSTOP)   # mid-run (a live holder) for as long as the second takes
        try:
            second = subprocess.run(_command(dataset, str(out)), env=_env(), cwd=ROOT, capture_output=True,
                                    text=True, timeout=600)
            still_running = first.poll() is None
        finally:
            os.kill(first.pid, signal.SIGCONT)
    finally:
        _, err = first.communicate(timeout=600)   # closes its pipes whatever happened
    assert first.returncode == 0, err[-3000:]
    assert still_running, "the first sweep ended before the second started; nothing was tested"
    assert second.returncode == 2
    assert "another sweep is writing" in second.stderr and len(second.stderr.strip().splitlines()) == 1
    assert sweep.open_store(str(out)).status_counts() == {"done": 10, "failed": 2, "pending": 0}
    assert not lease.exists()
