"""Attribution sweeps: a dataset × methods × targets into one chunked Zarr v3 store, sharded over
the local devices and over processes (``jax.distributed``), resumable after being killed.

* :func:`run` / ``jaxretina sweep`` — compute (or finish) a sweep; :func:`dry_run` /
  ``--dry-run`` — compile one step, report memory per device and seconds per example.
* :func:`open_store` — read results back (:class:`SweepStore`: ``example(i)``, ``scalars()``,
  ``failed()``); :func:`report` / ``jaxretina report STORE`` — statistics and a contact sheet.
* :func:`sweep_config` / :class:`SweepConfig` — flags or a TOML/YAML file; method and target
  specs ``kind:key=value,...`` (:mod:`jaxretina.sweep.methods` lists them).

Example::

    >>> from jaxretina import sweep
    >>> summary = sweep.run(model="driu", data="images/", out="driu.zarr", size=48, batch=2, progress=False,
    ...                     methods=["ig:steps=4", "gradcam:layers=upsample2"])
    >>> store = sweep.open_store("driu.zarr")
    >>> store.status_counts(), store.example("img1.png")["gradcam/upsample2"].shape
    ({'done': 2, 'failed': 0, 'pending': 0}, (48, 48))
"""

from jaxretina.sweep.config import Spec, SweepConfig, parse_spec, read_config_file, sweep_config
from jaxretina.sweep.inputs import BadInput, open_inputs
from jaxretina.sweep.methods import METHODS, PREPROCESSING, TARGETS
from jaxretina.sweep.plan import make_plan
from jaxretina.sweep.report import report
from jaxretina.sweep.runner import dry_run, load_model, run
from jaxretina.sweep.store import DONE, FAILED, PENDING, SweepStore, open_store

__all__ = ["BadInput", "DONE", "FAILED", "METHODS", "PENDING", "PREPROCESSING", "Spec", "SweepConfig", "SweepStore",
           "TARGETS", "dry_run", "load_model", "make_plan", "open_inputs", "open_store", "parse_spec",
           "read_config_file", "report", "run", "sweep_config"]
