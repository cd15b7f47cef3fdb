"""Checkpoint directories (Orbax + jaxretina.json) get the checks converted files get: wrong
shapes, non-float dtypes, NaN/inf and a missing, malformed or foreign record are each one clear
error naming what is wrong, and nothing in the directory is changed."""

import json
import os

import jax
import numpy as np
import pytest

import jaxretina
from jaxretina.checkpoint import save_variables
from jaxretina.loading import RECORD_NAME, digest
from jaxretina.models import registry
from jaxretina.models import UNet3D, random_variables

MODEL = UNet3D(base_width=2, deep_supervision=False)


@pytest.fixture(scope="module")
def variables():
    return random_variables(MODEL, seed=0)


def _save_edited(tmp_path, variables, edit, *, record=None):
    flat = {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(variables)}
    key = sorted(k for k in flat if "kernel" in k)[0]
    tree = jax.tree_util.tree_map_with_path(lambda k, v: edit(np.asarray(v)) if jax.tree_util.keystr(k) == key
                                            else np.asarray(v), variables)
    out = save_variables(tmp_path / "ckpt", tree)
    rec = record if record is not None else {"model": "unet3d", "config": registry.get("unet3d").config_of(MODEL)}
    if rec is not False:
        with open(os.path.join(out, RECORD_NAME), "w") as fh:
            fh.write(rec if isinstance(rec, str) else json.dumps(rec))
    return out, key


def test_a_saved_model_round_trips(tmp_path, variables):
    out = jaxretina.save("unet3d", MODEL, variables, tmp_path / "ok")
    model, loaded = jaxretina.load("unet3d", out)
    assert model == MODEL
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(variables)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("edit,message", [
    (lambda k: np.where(np.arange(k.size).reshape(k.shape) == 1, np.nan, k).astype(k.dtype), "NaN or infinite"),
    (lambda k: np.full_like(k, np.inf), "NaN or infinite"),
    (lambda k: np.ones(k.shape, np.int32), "holds int32 values; expected floating-point"),
    (lambda k: np.ones(k.shape, bool), "holds bool values"),
    (lambda k: np.ones(k.shape[:-1] + (k.shape[-1] + 1,), k.dtype), "mis-shaped"),
])
def test_bad_arrays_are_refused_naming_the_path(tmp_path, variables, edit, message):
    out, key = _save_edited(tmp_path, variables, edit)
    before = digest(out)
    with pytest.raises(ValueError, match=message) as err:
        jaxretina.load("unet3d", out)
    assert key.split("'")[-2] in str(err.value)  # the leaf's name, e.g. kernel
    assert digest(out) == before


@pytest.mark.parametrize("record,message", [
    (False, "no jaxretina.json record"),
    ("{not json", "malformed record"),
    ('["a", "list"]', "not a jaxretina record"),
    ({"config": {}}, "not a jaxretina record"),
    ({"model": "resnet9000", "config": {}}, "unknown model 'resnet9000'"),
    ({"model": "driu", "config": {}}, "holds a 'driu' model; asked to load it as 'unet3d'"),
    ({"model": "unet3d", "config": {"base_width": "2"}}, "option base_width='2' is a str; expected a int"),
    ({"model": "unet3d", "config": {"width": 2}}, r"unknown unet3d options \['width'\]"),
    ({"model": "unet3d", "config": []}, "not a jaxretina record"),
])
def test_missing_malformed_or_foreign_records(tmp_path, variables, record, message):
    out, _ = _save_edited(tmp_path, variables, lambda k: k, record=record)
    with pytest.raises(ValueError, match=message):
        jaxretina.load("unet3d", out)
