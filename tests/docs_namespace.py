"""What the package's docstring examples and the README's Python blocks run with: small models
and inputs under the names the examples use, and the files they open (a random-weight DRIU
``.caffemodel``, a DenseNet ``.pth``, a DS6 ``.safetensors``, a fake DRIVE tree in ``~/DRIVE``,
a folder of fundus images, a finished sweep store) in a temporary working folder and home."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np

SIZE = 32   # the examples' image side, and the volume side


def write_keras_vgg16(path: Path, classes: int = 10) -> None:
    """A Keras 2 HDF5 weights file with keras.applications.VGG16's layout (layer_names,
    weight_names, ``<layer>/<layer>/kernel:0``), constant weights, written with h5py: compressed
    fill values, a few kB on disk."""
    import h5py

    from jaxretina.models.vgg import layout_of

    layers = {}
    channels = 3
    for kind, _, feats, keras_name in layout_of(16, False):
        if kind == "conv":
            layers[keras_name] = {"kernel:0": (3, 3, channels, feats), "bias:0": (feats,)}
            channels = feats
        else:
            layers[keras_name] = {}
    layers.update(flatten={}, fc1={"kernel:0": (25088, 4096), "bias:0": (4096,)},
                  fc2={"kernel:0": (4096, 4096), "bias:0": (4096,)},
                  predictions={"kernel:0": (4096, classes), "bias:0": (classes,)})
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [n.encode() for n in layers]
        for name, weights in layers.items():
            g = f.create_group(name)
            g.attrs["weight_names"] = [f"{name}/{w}".encode() for w in weights]
            for w, shape in weights.items():
                g.create_dataset(f"{name}/{w}", shape=shape, dtype=np.float32, fillvalue=1e-3, compression="gzip")


def make_files(root: Path) -> None:
    """Write the files the examples name into ``root`` (the working folder and ``$HOME``)."""
    import torch
    import torchvision

    from jaxretina import data
    from tests.reference.caffe_writer import driu_net_bytes
    from tests.reference.driu_torch import random_driu_weights

    from safetensors.numpy import save_file

    from tests.reference.ds6_torch import UNetDeepSup

    write_keras_vgg16(root / "vgg16_weights_tf_dim_ordering_tf_kernels.h5")
    (root / "DRIU_DRIVE.caffemodel").write_bytes(driu_net_bytes(random_driu_weights("vessel", seed=1)))
    torch.save(torchvision.models.densenet121(num_classes=5).state_dict(), root / "grader.pth")
    ds6 = UNetDeepSup(width=2)
    save_file({k: v.numpy() for k, v in ds6.state_dict().items() if v.dtype != torch.int64},
              str(root / "model.safetensors"))
    rng = np.random.default_rng(0)
    data.write_nifti(root / "sub-01_TOF.nii.gz", rng.random((SIZE, SIZE, SIZE)).astype(np.float32))
    data.make_fake_drive(root / "DRIVE", n_train=2, n_test=2, height=SIZE + 5, width=SIZE + 3)
    os.makedirs(root / "Downloads", exist_ok=True)
    os.symlink(root / "DRIVE", root / "Downloads" / "DRIVE")
    with contextlib.redirect_stdout(io.StringIO()):   # TFDS says where it prepared the split
        data.drive_tfds(root / "tensorflow_datasets", "test", manual_dir=root / "DRIVE")
    data.make_fake_dataset(root / "fake_kaggle", per_class=2, test_per_class=1, size=48)
    os.symlink(root / "fake_kaggle" / "manual", root / "eyepacs")
    os.makedirs(root / "images", exist_ok=True)
    from PIL import Image
    from skimage import data as skdata

    retina = skdata.retina()
    for i in range(2):
        Image.fromarray(retina[400 + 100 * i : 700 + 100 * i, 400:700]).resize((SIZE, SIZE)).save(
            root / "images" / f"img{i}.png")


def namespace(root: Path) -> dict:
    """The names the examples use (each docstring gets a fresh copy)."""
    import jax
    import jax.numpy as jnp
    from jax.tree_util import Partial

    import jaxretina
    from jaxretina import (data, evaluate, explain, intervention, metrics, models, preprocess, sweep, targets, taps, train,
                           views, viz, volumes)
    from jaxretina.models import DRIU, DenseNet, DenseNet121, InceptionV3, UNet3D

    from skimage import data as skdata
    from PIL import Image

    rgb = np.asarray(Image.fromarray(skdata.retina()[300:900, 300:900]).resize((SIZE, SIZE)))
    model = DRIU()
    variables = models.random_variables(model, (1, SIZE, SIZE, 3), seed=0)
    x = preprocess.driu_caffe_input(rgb)
    grader = DenseNet(num_classes=5, growth_rate=8, block_config=(2, 2), num_init_features=16, bn_size=2,
                      normalization=preprocess.imagenet_normalization(255.0))
    z = jnp.asarray(np.asarray(Image.fromarray(rgb).resize((64, 64))), jnp.float32)   # 0..255 RGB
    unet = UNet3D(base_width=2, deep_supervision=False)
    rng = np.random.default_rng(0)
    volume = jnp.asarray(rng.random((SIZE, SIZE, SIZE, 1)), jnp.float32)
    return {
        "jax": jax, "jnp": jnp, "np": np, "Partial": Partial, "jaxretina": jaxretina, "data": data, "evaluate": evaluate, "explain": explain,
        "intervention": intervention, "metrics": metrics, "models": models, "preprocess": preprocess, "sweep": sweep,
        "targets": targets, "taps": taps, "train": train, "views": views, "viz": viz, "volumes": volumes,
        "DRIU": DRIU, "DenseNet": DenseNet, "DenseNet121": DenseNet121, "InceptionV3": InceptionV3, "UNet3D": UNet3D,
        "rgb": rgb, "model": model, "variables": variables, "x": x, "xs": jnp.stack([x, x[::-1]]),
        "target": targets.segmentation_sum(), "unet": unet, "grader": grader, "z": z,
        "grader_variables": models.random_variables(grader, (1, 64, 64, 3), seed=0),
        "unet_variables": models.random_variables(unet, (1, 16, 16, 16, 1), seed=0), "volume": volume,
        "root": str(root),
    }
