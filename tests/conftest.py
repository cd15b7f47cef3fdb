"""Test settings: strict dtype promotion (an implicit float64 or int->float mix is a bug here),
warnings as errors (pyproject's filterwarnings), small shared DRIU fixtures, one persistent XLA
compilation cache per run, and the XLA compile time of each test (JAX's backend-compile
events), summed at the end of the run."""

import collections
import os
import shutil
import tempfile

# LLVM at -O1 for the tests' programs: the tests are compile-bound and -O1 compiles faster with
# the same speed of the generated code here (a width-2 U-Net layer-wise test: 41.7 s -> 27.7 s of
# compilation; the DRIU IG parity test runs in 28 s at -O2 and -O1, 75 s at -O0).  XLA's graph
# passes, and so the arithmetic, are the same.  The experiments' smoke runs inherit it;
# benchmarks, the demo and users are untouched.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=1".strip()

# One persistent compilation cache for the whole run: its processes (the two pytest-xdist
# workers, the experiments' smoke subprocesses) compile many of the same programs (shared
# fixtures, the same model at the same size); the second compile is a disk read.  A fresh
# directory per run, removed at its end — nothing carries over between runs.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxretina-tests-xla-")
    os.environ["JAXRETINA_TEST_CACHE_OWNER"] = str(os.getpid())
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxretina  # noqa: F401  (applies the XLA defaults before a backend starts)

jax.config.update("jax_numpy_dtype_promotion", "strict")

_COMPILE = collections.defaultdict(lambda: [0, 0.0])  # test id -> [programs, seconds]
_CURRENT = ["(outside tests)"]


_CACHE = [0, 0.0]  # persistent-cache hits, compile seconds they saved


def _on_event(event, seconds, **_):
    if event == "/jax/core/compile/backend_compile_duration":
        entry = _COMPILE[_CURRENT[0]]
        entry[0] += 1
        entry[1] += seconds
    elif event == "/jax/compilation_cache/compile_time_saved_sec":
        _CACHE[0] += 1
        _CACHE[1] += seconds


jax.monitoring.register_event_duration_secs_listener(_on_event)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):  # setup (fixtures), call and teardown
    _CURRENT[0] = item.nodeid
    try:
        return (yield)
    finally:
        _CURRENT[0] = "(outside tests)"


_FIRST = ("tests/test_experiments.py", "tests/test_readme.py")   # the longest tests


def pytest_collection_modifyitems(items):
    """The experiments' smoke runs (subprocesses) and the README's blocks (one test of ~2 min)
    first, so that with ``pytest -n 2`` (make test) they overlap the rest instead of ending the
    run alone."""
    items.sort(key=lambda item: not item.nodeid.startswith(_FIRST))


def pytest_sessionfinish(session):
    if hasattr(session.config, "workeroutput"):  # a pytest-xdist worker: hand the figures over
        session.config.workeroutput["xla_compile"] = {k: list(v) for k, v in _COMPILE.items()}
        session.config.workeroutput["xla_cache"] = list(_CACHE)


def pytest_unconfigure(config):
    if os.environ.get("JAXRETINA_TEST_CACHE_OWNER") == str(os.getpid()):
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):  # pytest-xdist's controller: a worker's figures
    output = getattr(node, "workeroutput", {})
    for test, (n, t) in output.get("xla_compile", {}).items():
        _COMPILE[test][0] += n
        _COMPILE[test][1] += t
    hits, saved = output.get("xla_cache", (0, 0.0))
    _CACHE[0] += hits
    _CACHE[1] += saved


def pytest_terminal_summary(terminalreporter):
    if not _COMPILE:
        return
    programs = sum(n for n, _ in _COMPILE.values())
    seconds = sum(t for _, t in _COMPILE.values())
    terminalreporter.section("XLA compile time (test processes; not the experiments' subprocesses)")
    terminalreporter.write_line(f"{programs} programs, {seconds:.1f} s; {_CACHE[0]} more from the run's persistent "
                                f"cache (saving {_CACHE[1]:.1f} s); the most:")
    for test, (n, t) in sorted(_COMPILE.items(), key=lambda kv: -kv[1][1])[:25]:
        terminalreporter.write_line(f"  {t:7.1f} s  {n:4d} programs  {test}")


@pytest.fixture(scope="session")
def driu_small():
    """A vessel DRIU, its variables (deterministic init) and one odd-sized input (37, 45, 3)."""
    from jaxretina.models import DRIU

    model = DRIU()
    x = jnp.asarray(np.random.default_rng(0).normal(0, 40, (37, 45, 3)), jnp.float32)
    variables = jax.jit(model.init)(jax.random.key(0), x[None])
    return model, variables, x


@pytest.fixture(scope="session")
def unet_small():
    """A width-2 DS6 U-Net (main output only) and random variables, shared by the 3D tests."""
    from jaxretina.models import UNet3D, random_variables

    model = UNet3D(base_width=2, deep_supervision=False)
    return model, random_variables(model, (1, 16, 16, 16, 1), seed=3)


@pytest.fixture(scope="session")
def torch_dense():
    """The small DenseNet in jaxretina and PyTorch on the same weights (tests/anchor_pairs.py)."""
    pytest.importorskip("torchvision")
    from tests.anchor_pairs import dense_pair

    return dense_pair()


@pytest.fixture(scope="session")
def torch_resnet():
    """A ResNet-18 in jaxretina and PyTorch on the same weights (tests/anchor_pairs.py)."""
    pytest.importorskip("torchvision")
    from tests.anchor_pairs import resnet_pair

    return resnet_pair()


@pytest.fixture(scope="session")
def torch_driu():
    """The full-width DRIU in jaxretina and PyTorch on the same weights (tests/anchor_pairs.py)."""
    pytest.importorskip("torch")
    from tests.anchor_pairs import driu_pair

    return driu_pair()
