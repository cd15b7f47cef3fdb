"""Keras applications' VGG16 (without its classifier: a "notop" file) and ResNet50 built by
Keras 3 itself (JAX backend) with random weights, saved by Keras (``.weights.h5``, the legacy
whole-model ``.h5``, a ``.keras`` archive), loaded here with h5py and compared with Keras's own
outputs (VGG16 with its classifier: tests/test_keras_models.py); crafted HDF5 files get one
clear error each."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np
import pytest
import jax
import jax.numpy as jnp

import jaxretina

keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")


def randomize(model, seed=0):
    """Random kernels ~ N(0, 1/fan_in), BatchNorm statistics and affines away from 0/1."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        new = []
        for v in layer.weights:
            shape = tuple(v.shape)
            if v.path.endswith(("gamma", "moving_variance")):
                new.append(rng.uniform(0.5, 1.5, shape))
            elif v.path.endswith(("beta", "moving_mean", "bias")):
                new.append(rng.uniform(-0.3, 0.3, shape))
            else:
                new.append(rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1])))
        if new:
            layer.set_weights([w.astype(np.float32) for w in new])
    return model


# name -> (keras.applications class, its preprocessing module, input side, include_top)
KERAS_APPLICATIONS = {"vgg16": ("VGG16", "vgg16", 64, False), "resnet50": ("ResNet50", "resnet", 64, True)}


# Anchor: Keras 3.15.1's own applications on its JAX backend, same weights; tolerance 1e-4 of
# the largest logit.  jaxretina's models take the 0..255 RGB pixels (Keras's "caffe"
# preprocessing happens inside), Keras's take preprocess_input of them.
@pytest.mark.parametrize("name", ["vgg16", "resnet50"])
def test_logits_match_keras_in_every_file_format(name, tmp_path):
    cls, module, size, top = KERAS_APPLICATIONS[name]
    reference = randomize(getattr(keras.applications, cls)(weights=None, input_shape=(size, size, 3), classes=6,
                                                           classifier_activation=None, include_top=top))
    files = {"weights.h5": tmp_path / f"{name}.weights.h5", "legacy .h5": tmp_path / f"{name}.h5",
             ".keras": tmp_path / f"{name}.keras"}
    reference.save_weights(files["weights.h5"])
    reference.save(files["legacy .h5"])
    reference.save(files[".keras"])
    x = np.random.default_rng(1).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    want = np.asarray(reference(getattr(keras.applications, module).preprocess_input(x.copy())))
    for fmt, path in files.items():
        model, variables = jaxretina.load(name, path)
        assert model.input_bgr and model.include_top == top and (model.num_classes == 6 or not top)
        with jax.default_matmul_precision("highest"):
            got = np.asarray(jax.jit(model.apply)(variables, jnp.asarray(x)))
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max(), fmt
    # Keras's layer names resolve to the same activations as Keras computes
    names = ["block5_pool", "block3_conv2"] if name == "vgg16" else ["conv5_block3_out", "conv3_block1_out"]
    probe = keras.Model(reference.input, [reference.get_layer(n).output for n in names])
    keras_acts = probe(getattr(keras.applications, module).preprocess_input(x.copy()))
    _, acts = jaxretina.taps.activations(model, variables, jnp.asarray(x),
                                         [model.layer_aliases()[n] for n in names])
    for n, k in zip(names, keras_acts):
        got, ref = np.asarray(acts[model.layer_aliases()[n]]), np.asarray(k)
        assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max(), n


def write(path, build):
    with h5py.File(path, "w") as f:
        build(f)
    return path


def keras2(f, layers):
    f.attrs["layer_names"] = [n.encode() for n in layers]
    for name, arrays in layers.items():
        g = f.create_group(name)
        g.attrs["weight_names"] = [f"{name}/{k}".encode() for k in arrays]
        for k, a in arrays.items():
            if a is not None:
                g[f"{name}/{k}"] = a


def test_crafted_hdf5_files_get_one_clear_error_each(tmp_path):
    secret = write(tmp_path / "other.h5", lambda f: f.create_dataset("w", data=np.ones((3, 3, 3, 64), np.float32)))

    def external(f):
        keras2(f, {"block1_conv1": {"kernel": None}})
        f["block1_conv1"]["block1_conv1/kernel"] = h5py.ExternalLink(str(secret), "w")

    def soft(f):
        keras2(f, {"block1_conv1": {"kernel": np.ones((2,), np.float32)}})
        f["block1_conv1"]["alias"] = h5py.SoftLink("/block1_conv1/block1_conv1/kernel")
        f["block1_conv1"].attrs["weight_names"] = [b"alias"]

    def bomb(f):   # 8 GiB of zeros in a few kB: compressed, never written
        keras2(f, {"fc1": {"kernel": None}})
        f["fc1"].create_dataset("fc1/kernel", shape=((1 << 31) + 16,), dtype=np.float32, compression="gzip")

    cases = {
        "external": (external, "ExternalLink; only arrays stored in the file itself are read"),
        "soft": (soft, "SoftLink; only arrays stored in the file itself are read"),
        "ints": (lambda f: keras2(f, {"fc1": {"kernel": np.ones((4, 4), np.int64)}}),
                 "expected float16/32/64 weights; found dtype int64"),
        "rank": (lambda f: keras2(f, {"fc1": {"kernel": np.ones((1,) * 6, np.float32)}}),
                 r"expected an array of rank <= 5; found shape \(1, 1, 1, 1, 1, 1\)"),
        "missing": (lambda f: keras2(f, {"fc1": {"kernel": None}}), "is listed but absent"),
        "not keras": (lambda f: f.create_dataset("data", data=np.zeros(3)),
                      "an HDF5 file without Keras weights"),
        "bomb": (bomb, "hold 8589934656 bytes, more than the 8589934592-byte limit"),
    }
    for case, (build, message) in cases.items():
        path = write(tmp_path / f"{case}.h5", build)
        with pytest.raises(ValueError, match=message):
            jaxretina.load("vgg16", path)
    whole = (tmp_path / "ints.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(whole[: len(whole) // 3])
    with pytest.raises(ValueError, match="cut.h5: not a readable Keras HDF5 file"):
        jaxretina.load("vgg16", tmp_path / "cut.h5")
    good = write(tmp_path / "good.h5", lambda f: keras2(f, {"fc1": {"kernel": np.ones((4, 4), np.float32)}}))
    with pytest.raises(ValueError, match="a Keras weights file; densenet121 weights come from PyTorch"):
        jaxretina.load("densenet121", good)
    with pytest.raises(ValueError, match=r"good.h5: the number of convolutions matches no VGG depth \[11, 13, 16, 19\]"):
        jaxretina.load("vgg16", good, num_classes=2)
