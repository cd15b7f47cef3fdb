"""``jaxretina.sweep.run``: attributions of a whole dataset into a Zarr store, sharded over the
local devices, shared between processes, resumable.

Per (model, input shape, method set) there is one compiled program: the batch's examples are
split over the local devices with ``jax.shard_map`` over a ``data`` mesh axis (each device
``vmap``s the per-example function of :mod:`jaxretina.sweep.methods` over its share; nothing
crosses devices), compiled ahead of time, so a run compiles exactly once per shape group and
logs it.  Several processes (hosts) join through ``jax.distributed.initialize``; batch ``b``
is computed and written by process ``b mod P`` alone (the store must be on a filesystem they
share).  While the devices run batch ``k``, host threads decode batch ``k + 1`` and write
batch ``k − 1``.

Resuming is the same command: examples whose ``status`` chunk says done (or failed) are
skipped, a batch with any pending member is computed again whole — the same members at the same
places, so the same numbers — and only its pending members are written.  An input whose decoding
killed the process (a crashing C decoder) is tried in a child process first at the resume and
recorded as failed if it kills that one too (:mod:`jaxretina.sweep.decoding`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxretina import loading, taps
from jaxretina.models import registry, spec as contract
from jaxretina.explain.memory import compiled_bytes
from jaxretina.sweep import decoding, store as stores
from jaxretina.sweep.config import SweepConfig, sweep_config
from jaxretina.sweep.inputs import BadInput, Inputs, open_inputs
from jaxretina.sweep.lease import Lease
from jaxretina.sweep.methods import Computation, build_computation
from jaxretina.sweep.plan import Batch, Plan, make_plan
from jaxretina.sweep.regions import RegionFiles

__all__ = ["run", "dry_run", "load_model", "join_processes", "cluster_environment"]

log = logging.getLogger("jaxretina.sweep")


# -- processes ---------------------------------------------------------------------------------

def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"sweep: environment variable {name}={value!r:.40} is not an integer") from None


# The cluster environments ``jax.distributed.initialize()`` configures by itself (JAX's own
# detection: jax/_src/clusters), with the variables that say how many tasks the job has.
_SLURM_VARS = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")


def cluster_environment() -> str | None:
    """``"SLURM"`` or ``"Open MPI"`` when this process is one of several tasks of such a job
    (JAX then finds the coordinator, the process count and this process's id itself), else
    ``None``.  A one-task job is not a cluster run."""
    if all(v in os.environ for v in _SLURM_VARS) and (_env_int("SLURM_NTASKS") or 1) > 1:
        return "SLURM"
    if "OMPI_MCA_orte_hnp_uri" in os.environ and (_env_int("OMPI_COMM_WORLD_SIZE") or 1) > 1:
        return "Open MPI"
    return None


def _initialize(**kwargs) -> None:
    if jax.distributed.is_initialized():
        return
    # CPU collectives (the final barrier and gather) go through gloo; GPUs/TPUs ignore this.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(**kwargs)
    except RuntimeError as e:
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise RuntimeError(f"sweep: jax.distributed.initialize({args}) failed — it must run before anything uses "
                           f"JAX: {e}") from None


def join_processes(cfg: SweepConfig) -> tuple[int, int]:
    """``(process id, process count)``, joining the other processes of the sweep first:

    * with a coordinator address (``--coordinator`` or ``JAX_COORDINATOR_ADDRESS``, plus the
      count and id from the config or ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``):
      ``jax.distributed.initialize(address, count, id)``;
    * else inside a SLURM or Open MPI job of several tasks (:func:`cluster_environment`):
      ``jax.distributed.initialize()`` with no arguments — JAX reads the job's variables
      (``JAX_COORDINATOR_PORT`` overrides the port it derives from the job id);
    * else one process alone.  Two unjoined runs on one store are caught by its lease
      (:mod:`jaxretina.sweep.lease`).
    """
    address = cfg.coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    count = cfg.num_processes if cfg.num_processes is not None else _env_int("JAX_NUM_PROCESSES")
    pid = cfg.process_id if cfg.process_id is not None else _env_int("JAX_PROCESS_ID")
    if address is None and count is None and pid is None:
        cluster = cluster_environment()
        if cluster is not None:
            log.info("%s job of several tasks: jax.distributed.initialize() finds the processes", cluster)
            _initialize()
        return jax.process_index(), jax.process_count()
    if address is None and (count or 1) == 1:
        return jax.process_index(), jax.process_count()
    if address is None:
        raise ValueError("sweep: several processes need a coordinator address (--coordinator HOST:PORT or "
                         "JAX_COORDINATOR_ADDRESS)")
    _initialize(coordinator_address=address, num_processes=count, process_id=pid)
    return jax.process_index(), jax.process_count()


def _barrier(name: str, processes: int) -> None:
    if processes > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _gather(values: np.ndarray, processes: int) -> np.ndarray:
    if processes == 1:
        return values[None]
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(values))


# -- model -------------------------------------------------------------------------------------

def load_model(cfg: SweepConfig) -> tuple[Any, Any, dict]:
    """``(model, variables, record)``: the weights file through :func:`jaxretina.load`, or the
    deterministic initialisation (seed ``cfg.seed``) that the record states."""
    from jaxretina import models

    model_spec = registry.get(cfg.model)
    opts = dict(cfg.model_options)
    model_spec.check_options(opts, "sweep: model_options")
    if cfg.weights:
        model, variables = loading.load(model_spec.name, cfg.weights, **opts)
        path = os.path.abspath(cfg.weights)
        weights = {"source": path, "sha256": loading.digest(path), "from_file": True}
    else:
        model = model_spec.build(**opts)
        variables = models.random_variables(model, seed=cfg.seed)   # NumPy draws: nothing to compile
        how = " ".join(filter(None, (f"jaxretina.models.random_variables(seed={cfg.seed})", model_spec.init_note)))
        weights = {"source": None, "from_file": False,
                   "note": f"deterministic initialisation ({how}), not trained weights"}
    return contract.for_explaining(model), variables, weights   # one output map to explain (DS6: no deep supervision)


def _versions() -> dict[str, str]:
    import flax
    import jaxlib
    import zarr

    import jaxretina

    return {"jaxretina": jaxretina.__version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "flax": flax.__version__, "numpy": np.__version__, "zarr": zarr.__version__,
            "python": platform.python_version(), "backend": jax.default_backend()}


# -- programs ----------------------------------------------------------------------------------

def _raw_dtype(inputs: Inputs):
    return np.float32 if inputs.kind == "volumes" else np.uint8


@dataclasses.dataclass(frozen=True)
class _Local:
    """One device's share of a batch: the per-example function ``vmap``-ed, maps cast to the
    store's dtype."""

    fn: Any
    dtype: Any

    def __call__(self, variables, raw, index, regions):
        fn, dtype = self.fn, self.dtype
        maps, scalars = jax.vmap(fn, in_axes=(None, 0, 0, 0))(variables, raw, index, regions)
        return ({k: v.astype(dtype) for k, v in maps.items()},
                {k: v.astype(jnp.float32) for k, v in scalars.items()})


def _region_structs(names, shape) -> dict:
    return {n: jax.ShapeDtypeStruct(tuple(shape[:-1]), jnp.bool_) for n in names}


def _shapes(comp: Computation, variables, inputs: Inputs, shapes, regions=()) -> tuple[dict, dict]:
    """``({input shape: (map shapes, scalar names)}, {rejected input shape: reason})``."""
    ok, rejected = {}, {}
    for shape in shapes:
        raw = jax.ShapeDtypeStruct(shape, _raw_dtype(inputs))
        try:
            maps, scalars = jax.eval_shape(comp.fn, variables, raw, jax.ShapeDtypeStruct((), jnp.int32),
                                           _region_structs(regions, shape))
        except (ValueError, TypeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            rejected[shape] = f"wrong size: the model cannot take input shape {shape}: {first}"
            continue
        ok[shape] = ({k: tuple(v.shape) for k, v in maps.items()}, tuple(scalars))
    if shapes and not ok:  # nothing works: a configuration error, not a property of the inputs
        raise ValueError(f"sweep: the model and methods fail on every input shape {list(shapes)}: "
                         f"{next(iter(rejected.values()))}")
    return ok, rejected


class Runner:
    """One process's part of a sweep (built by :func:`run` and :func:`dry_run`)."""

    def __init__(self, cfg: SweepConfig):
        self.cfg = cfg
        self.pid, self.processes = join_processes(cfg)
        self.model, variables, self.weights = load_model(cfg)
        self.model_spec = registry.get(cfg.model)
        self.regions = {what: RegionFiles(where, what=what) for what, where in (("mask", cfg.masks), ("fov", cfg.fov))
                        if where is not None}
        self.comp = build_computation(self.model_spec, self.model, cfg.methods, cfg.targets, prep=cfg.preprocess,
                                      seed=cfg.seed, metrics=cfg.metrics, regions=tuple(self.regions))
        devices = jax.local_devices()
        # One program call computes ``micro_batch`` examples on each local device; a batch (the
        # unit of loading, writing, resuming and of the processes' shares) is several calls.
        self.step = cfg.micro_batch * len(devices)
        if cfg.batch % self.step:
            raise ValueError(f"sweep: batch {cfg.batch} does not split into calls of micro_batch {cfg.micro_batch} "
                             f"x {len(devices)} local device(s); use a multiple of {self.step}")
        self.mesh = Mesh(np.asarray(devices), ("data",))
        self.replicated = NamedSharding(self.mesh, P())
        self.split = NamedSharding(self.mesh, P("data"))
        # Parameters and statistics only (an init's zero tap perturbations have its input's shape).
        variables = taps.params_only(variables)
        self.variables = jax.device_put(variables, self.replicated)
        self.inputs = open_inputs(cfg.data, volumes=self.model_spec.input == "volume", size=cfg.size,
                                  split=cfg.split, tfds_dir=cfg.tfds_dir)
        shapes = sorted({it.shape for it in self.inputs.items if it.shape is not None})
        self.outputs, rejected = _shapes(self.comp, self.variables, self.inputs, shapes, tuple(self.regions))
        self.plan: Plan = make_plan(self.inputs.items, cfg.batch, rejected)
        self.dtype = np.dtype(cfg.dtype)
        self._compiled: dict[tuple[int, ...], Any] = {}
        self.compile_seconds = 0.0
        # the examples being decoded, kept in the store (a crashing decoder; see sweep.decoding),
        # and those an earlier run was decoding when it stopped: decoded in a child first
        self.journal = decoding.NO_JOURNAL
        self.suspects: set[int] = set()

    # what the store holds
    def map_specs(self) -> dict[str, dict]:
        specs: dict[str, dict] = {}
        for shape, (maps, _) in self.outputs.items():
            for name, s in maps.items():
                spec = specs.setdefault(name, {"shape": s, "shapes": {}})
                spec["shape"] = tuple(max(a, b) for a, b in zip(spec["shape"], s))
                spec["shapes"][stores.shape_key(shape)] = list(s)
        return specs

    def scalar_names(self) -> list[str]:
        names = next(iter(self.outputs.values()))[1] if self.outputs else ()
        return [*names, "seconds"]

    def meta(self) -> dict:
        return {
            "format": 1,
            "config": self.cfg.identity(),
            "model": {"name": self.model_spec.name, "class": type(self.model).__name__,
                      "input": self.model_spec.input, "options": _json(self.model_spec.config_of(self.model))},
            "weights": self.weights,
            "computation": _json(self.comp.description),
            "maps": [n for n in self.map_specs() if ":" not in n],
            "curves": [n for n in self.map_specs() if ":" in n],
            "scalars": self.scalar_names(),
            "dtype": self.cfg.dtype,
            "groups": {stores.shape_key(s): n for s, n in self.plan.groups.items()},
            "batches": len(self.plan.batches),
            "versions": _versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    # programs
    def program(self, shape: tuple[int, ...]) -> "_Programs":
        """The compiled program(s) for a batch of ``shape`` inputs — one per method unless
        ``programs="one"`` — compiled once, ahead of time."""
        if shape not in self._compiled:
            raw = jax.ShapeDtypeStruct((self.step, *shape), _raw_dtype(self.inputs), sharding=self.split)
            index = jax.ShapeDtypeStruct((self.step,), jnp.int32, sharding=self.split)
            regions = {n: jax.ShapeDtypeStruct((self.step, *shape[:-1]), jnp.bool_, sharding=self.split)
                       for n in self.regions}
            t0 = time.perf_counter()
            lowered = [jax.jit(jax.shard_map(_Local(fn, self.dtype), mesh=self.mesh,
                                             in_specs=(P(), P("data"), P("data"), P("data")), out_specs=P("data")))
                       .lower(self.variables, raw, index, regions) for fn in self.comp.parts(self.cfg.programs)]
            # XLA compiles outside Python's lock: the parts compile side by side, one per core
            with ThreadPoolExecutor(max_workers=max(1, min(len(lowered), os.cpu_count() or 1)),
                                    thread_name_prefix="sweep-compile") as pool:
                parts = list(pool.map(lambda low: low.compile(), lowered))
            self._compiled[shape] = _Programs(tuple(parts))
            took = time.perf_counter() - t0
            self.compile_seconds += took
            log.info("compiled %d program(s) for %d x %s (%d per device on %d) in %.1f s (%d of %d shape group(s))",
                     len(parts), self.step, shape, self.cfg.micro_batch, len(self.mesh.devices), took,
                     len(self._compiled), len(self.plan.groups))
        return self._compiled[shape]

    def load_batch(self, batch: Batch) -> tuple[np.ndarray, np.ndarray, dict[int, tuple[str | None, str | None]],
                                                dict[str, np.ndarray]]:
        """``(raw (B, *shape), index (B,), {member: (sha256, reason)}, {region: (B, *spatial)})``:
        bad members and padding slots hold zeros (their results are dropped)."""
        raw = np.zeros((self.cfg.batch, *batch.shape), _raw_dtype(self.inputs))
        index = np.full((self.cfg.batch,), -1, np.int32)
        regions = {n: np.zeros((self.cfg.batch, *batch.shape[:-1]), bool) for n in self.regions}
        loaded = {}
        for slot, i in enumerate(batch.members):
            index[slot] = i
            try:
                if i in self.suspects:
                    self._probe(i)
                with self.journal.decoding(i):
                    array, sha = self.inputs.load(i)   # NaN/inf volumes fail there (read_nifti)
                raw[slot] = array
                loaded[i] = (sha, None)
                for name, files in self.regions.items():
                    regions[name][slot] = files.load(self.inputs.items[i].name, batch.shape[:-1],
                                                     resize=self.cfg.size is not None)
            except BadInput as e:
                loaded[i] = (getattr(e, "sha256", None) or loaded.get(i, (None,))[0], str(e))
        return raw, index, loaded, regions

    def _probe(self, i: int) -> None:
        """Example ``i`` stopped an earlier run while it was decoded: decode it in a child
        process first, and raise :class:`BadInput` if that one dies too."""
        item = self.inputs.items[i]
        if self.inputs.kind == "tfds" or item.problem:
            return
        log.info("example %d (%s) was being decoded when an earlier run stopped: trying it in a separate process",
                 i, item.name)
        reason = decoding.probe(self.inputs.kind, self.inputs.root, item.name, item.shape, self.inputs.size)
        if reason is not None:
            log.warning("example %d (%s): %s", i, item.name, reason)
            raise BadInput(reason)

    def compute(self, batch: Batch, raw: np.ndarray, index: np.ndarray, wanted: np.ndarray | None = None,
                regions: dict[str, np.ndarray] | None = None):
        """Dispatch the batch's program calls (asynchronously): ``[(first slot, outputs)]``.

        Calls whose slots are all padding — or, with ``wanted`` (B,) bool, hold no wanted
        member — are skipped; every call computes the same slots as in any other run."""
        program = self.program(batch.shape)
        calls = []
        for start in range(0, self.cfg.batch, self.step):
            part = slice(start, start + self.step)
            if not (index[part] >= 0).any() or (wanted is not None and not wanted[part].any()):
                continue
            parts = {n: jax.device_put(r[part], self.split) for n, r in (regions or {}).items()}
            calls.append((start, program(self.variables, jax.device_put(raw[part], self.split),
                                         jax.device_put(index[part], self.split), parts)))
        return calls


@dataclasses.dataclass(frozen=True)
class _Programs:
    """A batch shape's compiled parts, called as one: their maps and scalars merged."""

    parts: tuple

    def __call__(self, *args):
        maps, scalars = {}, {}
        for part in self.parts:    # dispatched one after another, without waiting for results
            m, s = part(*args)
            maps.update(m)
            scalars.update(s)
        return maps, scalars

    def memory_bytes(self) -> int | None:
        """XLA's device bytes of the parts' arguments, temporaries and outputs, the outputs of
        every part held together (an upper bound: the parts run one after another)."""
        sizes = [compiled_bytes(p) for p in self.parts]
        if any(s is None for s in sizes):
            return None
        outputs = [p.memory_analysis().output_size_in_bytes for p in self.parts]
        return max(sizes) + sum(outputs) - outputs[sizes.index(max(sizes))]


def _gather_calls(calls) -> dict[int, tuple[dict, dict]]:
    """Host copies of the calls' outputs, by first slot (blocks until they are computed)."""
    return {start: jax.device_get(out) for start, out in calls}


def _json(obj):
    import json

    return json.loads(json.dumps(obj, default=lambda o: list(o) if isinstance(o, tuple) else repr(o)))


# -- run ---------------------------------------------------------------------------------------

def _prepare_store(runner: Runner) -> Lease:
    """Process 0 takes the store's lease, then creates the store or checks that the existing one
    is this sweep's (same configuration, dataset and weights).  Returns the lease."""
    path = runner.cfg.out
    state, _ = stores.store_state(path)
    if state == "file":
        raise FileExistsError(f"sweep: --out {path} is a file; expected a new folder or an existing sweep store")
    if state == "foreign":
        raise FileExistsError(f"sweep: --out {path} exists and was not created by jaxretina (not an empty folder, "
                              "not a jaxretina sweep store); it was left untouched: choose another --out")
    lease = Lease(path)
    lease.acquire()
    try:
        _check_or_create(runner, path)
    except BaseException:
        lease.release()
        raise
    return lease


def _check_or_create(runner: Runner, path: str) -> None:
    state, meta = stores.store_state(path)   # again, now that this run holds the lease
    if state == "creating":
        stores.clear_interrupted(path)
        log.info("%s: redoing an interrupted store creation", path)
        state = "absent"
    if state == "absent":
        stores.create_store(path, meta=runner.meta(), names=[it.name for it in runner.inputs.items],
                            maps=runner.map_specs(), scalar_names=runner.scalar_names(), dtype=runner.cfg.dtype)
        writer = stores.StoreWriter(path)
        for i, reason in sorted(runner.plan.problems.items()):
            writer.failed(i, {"reason": reason, "shape": runner.inputs.items[i].shape})
        log.info("created %s: %d examples, %d listed as failed", path, len(runner.inputs), len(runner.plan.problems))
        return
    if state != "sweep":
        raise FileExistsError(f"sweep: --out {path} changed while this run started ({state}); left untouched")
    want, have = runner.cfg.identity(), meta.get("config", {})
    differ = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
    if differ:
        raise ValueError(f"sweep: {path} holds a sweep with another configuration (differs in {differ}: "
                         + "; ".join(f"{k}: store {have.get(k)!r}, now {want.get(k)!r}" for k in differ)
                         + "); use another --out to start a new sweep")
    then, now = (meta.get("weights") or {}).get("sha256"), runner.weights.get("sha256")
    if then != now:
        raise ValueError(f"sweep: the weights {runner.weights.get('source')} changed since {path} was created "
                         f"(SHA-256 {str(then)[:16]}… then, {str(now)[:16]}… now); resuming would mix two models: "
                         "use another --out")
    names = stores.SweepStore(path).names
    listed = [it.name for it in runner.inputs.items]
    if names != listed:
        first = next((i for i, (a, b) in enumerate(zip(names, listed)) if a != b), min(len(names), len(listed)))
        raise ValueError(f"sweep: the dataset changed since {path} was created ({len(names)} examples then, "
                         f"{len(listed)} now; first difference at example {first})")
    removed = stores.remove_partials(path)
    log.info("resuming %s%s", path, f" (removed {removed} partial chunk file(s))" if removed else "")


def _progress(total: int, runner: Runner):
    from tqdm.auto import tqdm

    enabled = runner.cfg.progress and runner.pid == 0
    bar = tqdm(total=total, unit="ex", dynamic_ncols=True, disable=not enabled, desc="sweep")
    bar.set_postfix(devices=len(runner.mesh.devices), processes=runner.processes, refresh=False)
    return bar


def run(config: SweepConfig | None = None, /, **keys: Any) -> dict:
    """Run (or resume) a sweep; returns its summary (also stored in the store's attributes).

    Args:
      config: a :class:`SweepConfig`, or give its keys: ``model`` (``driu``, ``densenet121``,
        ``inception_v3``, ``unet3d``), ``data`` (folder or ``tfds:NAME``), ``out`` (the store),
        ``methods`` (``["ig:steps=32", "gradcam:layers=all"]``), ``targets`` (default: the
        model's), ``weights`` (default: the deterministic initialisation, which the store's
        metadata says), ``model_options``, ``batch`` [8] (examples loaded, written and given
        to a process together) and ``micro_batch`` [1] (examples per device per program call;
        ``batch`` is a multiple of it times the local devices), ``programs`` [method | one]
        (compile one program per method, or one for them all; a resumed run may change it),
        ``size`` (resize images, e.g. 256 or "256x320"), ``preprocess``, ``dtype``
        [float32 | float16], ``split`` / ``tfds_dir`` (TFDS), ``seed``, ``progress``,
        ``coordinator`` / ``num_processes`` / ``process_id`` (several processes), or
        ``file=`` a TOML/YAML config file.

    Example::

      >>> summary = sweep.run(model="driu", data="images/", out="run.zarr", size=48, batch=2, progress=False,
      ...                     methods=["ig:steps=4", "gradcam:layers=upsample2"])
      >>> summary["counts"], sweep.open_store("run.zarr").example(0)["ig"].shape
      ({'done': 2, 'failed': 0, 'pending': 0}, (48, 48, 3))
    """
    cfg = config if isinstance(config, SweepConfig) else sweep_config(**keys)
    runner = Runner(cfg)
    lease = _prepare_store(runner) if runner.pid == 0 else None
    try:
        return _run(runner, lease)
    finally:
        if lease is not None:
            lease.release()


def _run(runner: Runner, lease: Lease | None) -> dict:
    cfg = runner.cfg
    stopped_in = decoding.leftover(cfg.out)   # every process reads it before any decodes
    _barrier("jaxretina-sweep-store", runner.processes)
    writer = stores.StoreWriter(cfg.out)
    status = writer.status()
    runner.journal = decoding.DecodeJournal(cfg.out, process=runner.pid)
    runner.journal.reset()
    if runner.pid == 0:
        decoding.forget_processes(cfg.out, runner.processes)
    runner.suspects = {i for i in stopped_in if i < len(status)}
    todo = [b for b in runner.plan.owned(runner.pid, runner.processes)
            if any(status[i] == stores.PENDING for i in b.members)]
    n_todo = sum(int((status[list(b.members)] == stores.PENDING).sum()) for b in todo)
    log.info("process %d/%d: %d of %d batch(es) to compute (%d example(s)) on %d device(s); %d shape group(s)",
             runner.pid, runner.processes, len(todo), len(runner.plan.batches), n_todo, len(runner.mesh.devices),
             len(runner.plan.groups))
    for shape in sorted({b.shape for b in todo}):
        runner.program(shape)   # compile up front: no batch's time includes a compile
    t_start = time.perf_counter()
    done = _loop(runner, writer, todo, status, n_todo, lease)
    wall = time.perf_counter() - t_start
    programs = sum(len(p.parts) for p in runner._compiled.values())
    stats = _gather(np.asarray([done, wall, runner.compile_seconds, programs], np.float64),
                    runner.processes)
    _barrier("jaxretina-sweep-end", runner.processes)
    summary = {
        "counts": stores.SweepStore(cfg.out).status_counts() if runner.pid == 0 else None,
        "this_run": {"examples": int(stats[:, 0].sum()), "wall_s": float(stats[:, 1].max()),
                     "compile_s": float(stats[:, 2].sum()), "compiles": int(stats[:, 3].sum()),
                     "processes": runner.processes, "devices_per_process": len(runner.mesh.devices)},
        "groups": {stores.shape_key(s): n for s, n in runner.plan.groups.items()},
    }
    if runner.pid == 0:
        stores.write_summary(cfg.out, summary)
    _barrier("jaxretina-sweep-summary", runner.processes)
    return summary


def _loop(runner: Runner, writer: stores.StoreWriter, todo: list[Batch], status: np.ndarray, total: int,
          lease: Lease | None) -> int:
    bar = _progress(total, runner)
    done = 0
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="sweep-load") as loader, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="sweep-write") as write_pool:
        loads = deque(loader.submit(runner.load_batch, b) for b in todo[:2])
        inflight: deque = deque()
        writes: deque = deque()
        last = time.perf_counter()
        for k, batch in enumerate(todo):
            if lease is not None:
                lease.renew()
            raw, index, loaded, regions = loads.popleft().result()
            if k + 2 < len(todo):
                loads.append(loader.submit(runner.load_batch, todo[k + 2]))
            wanted = np.zeros(runner.cfg.batch, bool)
            wanted[: len(batch.members)] = status[list(batch.members)] == stores.PENDING
            inflight.append((batch, loaded, runner.compute(batch, raw, index, wanted, regions)))
            final = k == len(todo) - 1
            while inflight and (len(inflight) > 1 or final):   # batch k runs while k − 1 is fetched
                b, ld, out = inflight.popleft()
                host = _gather_calls(out)
                now = time.perf_counter()
                seconds, last = (now - last) / max(1, len(b.members)), now
                writes.append(write_pool.submit(_write_batch, writer, runner, b, ld, host, status, seconds))
            while writes and (final or writes[0].done()):
                written = writes.popleft().result()
                done += written
                bar.update(written)
    bar.close()
    return done


def _write_batch(writer, runner, batch, loaded, host, status, seconds) -> int:
    written = 0
    for slot, i in enumerate(batch.members):
        if status[i] != stores.PENDING:
            continue
        start = slot - slot % runner.step
        maps, scalars = host[start]
        at = slot - start
        sha, reason = loaded[i]
        info = {"shape": list(batch.shape), "sha256": sha, "batch": batch.index, "process": runner.pid}
        if reason is not None:
            writer.failed(i, {**info, "reason": reason})
        else:
            writer.done(i, {k: v[at] for k, v in maps.items()},
                        {**{k: float(v[at]) for k, v in scalars.items()}, "seconds": seconds}, info)
        written += 1
    return written


def dry_run(config: SweepConfig | None = None, /, **keys: Any) -> dict:
    """Compile one step (the largest shape group's program) and run it once on real inputs:
    estimated memory per device (XLA's buffer accounting of the compiled program) and seconds
    per example.  Writes nothing."""
    cfg = config if isinstance(config, SweepConfig) else sweep_config(**keys)
    runner = Runner(cfg)
    if not runner.plan.batches:
        raise ValueError(f"sweep --dry-run: no usable example in {cfg.data} "
                         f"({len(runner.plan.problems)} with problems)")
    shape = max(runner.plan.groups, key=runner.plan.groups.get)
    batch = next(b for b in runner.plan.batches if b.shape == shape)
    t0 = time.perf_counter()
    compiled = runner.program(shape)
    compile_s = time.perf_counter() - t0
    memory = compiled.memory_bytes()
    raw, index, loaded, regions = runner.load_batch(batch)
    t1 = time.perf_counter()
    calls = runner.compute(batch, raw, index, regions=regions)
    jax.block_until_ready(calls)
    step = time.perf_counter() - t1
    return {
        "examples": len(runner.inputs), "problems": len(runner.plan.problems),
        "groups": {stores.shape_key(s): n for s, n in runner.plan.groups.items()},
        "compiles_needed": len(runner.plan.groups) * len(compiled.parts), "batches": len(runner.plan.batches),
        "batch": cfg.batch, "devices": len(runner.mesh.devices), "processes": runner.processes,
        "shape": list(shape), "compile_s": compile_s, "step_s": step,
        "seconds_per_example": step / (len(calls) * runner.step), "micro_batch": cfg.micro_batch,
        "memory_per_device_bytes": memory,
        "maps": {k: list(v["shape"]) for k, v in runner.map_specs().items()},
        "store_bytes_per_example": int(sum(np.prod(v["shape"]) for v in runner.map_specs().values())
                                       * runner.dtype.itemsize),
    }

