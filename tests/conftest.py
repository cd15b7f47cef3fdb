"""Test settings: strict dtype promotion (an implicit float64 or int->float mix is a bug here),
warnings as errors (pyproject's filterwarnings), small shared DRIU fixtures, and the XLA
compile time of each test (JAX's backend-compile events), summed at the end of the run."""

import collections
import os

# LLVM at -O1 for the tests' programs: the tests are compile-bound and -O1 compiles faster with
# the same speed of the generated code here (a width-2 U-Net layer-wise test: 41.7 s -> 27.7 s of
# compilation; the DRIU IG parity test runs in 28 s at -O2 and -O1, 75 s at -O0).  XLA's graph
# passes, and so the arithmetic, are the same.  The experiments' smoke runs inherit it;
# benchmarks, the demo and users are untouched.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=1".strip()

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxretina  # noqa: F401  (applies the XLA defaults before a backend starts)

jax.config.update("jax_numpy_dtype_promotion", "strict")

_COMPILE = collections.defaultdict(lambda: [0, 0.0])  # test id -> [programs, seconds]
_CURRENT = ["(outside tests)"]


def _on_event(event, seconds, **_):
    if event == "/jax/core/compile/backend_compile_duration":
        entry = _COMPILE[_CURRENT[0]]
        entry[0] += 1
        entry[1] += seconds


jax.monitoring.register_event_duration_secs_listener(_on_event)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):  # setup (fixtures), call and teardown
    _CURRENT[0] = item.nodeid
    try:
        return (yield)
    finally:
        _CURRENT[0] = "(outside tests)"


def pytest_collection_modifyitems(items):
    """The experiments' smoke runs (subprocesses, the longest tests) first, so that with
    ``pytest -n 2`` (make test) they overlap the rest instead of ending the run alone."""
    items.sort(key=lambda item: not item.nodeid.startswith("tests/test_experiments.py"))


def pytest_sessionfinish(session):
    if hasattr(session.config, "workeroutput"):  # a pytest-xdist worker: hand the figures over
        session.config.workeroutput["xla_compile"] = {k: list(v) for k, v in _COMPILE.items()}


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):  # pytest-xdist's controller: a worker's figures
    for test, (n, t) in getattr(node, "workeroutput", {}).get("xla_compile", {}).items():
        _COMPILE[test][0] += n
        _COMPILE[test][1] += t


def pytest_terminal_summary(terminalreporter):
    if not _COMPILE:
        return
    programs = sum(n for n, _ in _COMPILE.values())
    seconds = sum(t for _, t in _COMPILE.values())
    terminalreporter.section("XLA compile time (test processes; not the experiments' subprocesses)")
    terminalreporter.write_line(f"{programs} programs, {seconds:.1f} s; the most:")
    for test, (n, t) in sorted(_COMPILE.items(), key=lambda kv: -kv[1][1])[:10]:
        terminalreporter.write_line(f"  {t:7.1f} s  {n:4d} programs  {test}")


@pytest.fixture(scope="session")
def driu_small():
    """A vessel DRIU, its variables (deterministic init) and one odd-sized input (37, 45, 3)."""
    from jaxretina.models import DRIU

    model = DRIU()
    x = jnp.asarray(np.random.default_rng(0).normal(0, 40, (37, 45, 3)), jnp.float32)
    variables = jax.jit(model.init)(jax.random.key(0), x[None])
    return model, variables, x


def random_variables(model, example_shape, seed=0):
    """Variables of ``model`` without compiling its init (3D U-Net inits compile for ~10 s on
    CPU): shapes from ``eval_shape``, kernels N(0, 1/fan_in), biases N(0, 0.1), BatchNorm
    identity (mean 0, var 1, scale 1, bias 0)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(example_shape, jnp.float32))
    shapes = {k: v for k, v in shapes.items() if k in ("params", "batch_stats")}

    def fill(path, s):
        name = jax.tree_util.keystr(path)
        if "kernel" in name:
            return jnp.asarray(rng.normal(0, 1 / np.sqrt(np.prod(s.shape[:-1])), s.shape), s.dtype)
        if "var" in name or "scale" in name:
            return jnp.ones(s.shape, s.dtype)
        if "mean" in name:
            return jnp.zeros(s.shape, s.dtype)
        return jnp.asarray(rng.normal(0, 0.1, s.shape), s.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.fixture(scope="session")
def unet_small():
    """A width-2 DS6 U-Net (main output only) and random variables, shared by the 3D tests."""
    from jaxretina.models import UNet3D

    model = UNet3D(base_width=2, deep_supervision=False)
    return model, random_variables(model, (1, 16, 16, 16, 1), seed=3)
