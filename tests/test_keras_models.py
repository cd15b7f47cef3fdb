"""Keras 3 models explained as they are (JAX backend): a Keras VGG16 with random weights, wrapped
with ``jaxretina.models.from_keras``, gives the maps of jaxretina's Flax VGG16 loaded from the
same weights — Grad-CAM at every layer, IG, guided backprop, LRP — and the Keras model is untouched."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np
import pytest
import jax
import jax.numpy as jnp

import jaxretina
from jaxretina import explain, targets, taps

keras = pytest.importorskip("keras")
pytest.importorskip("h5py")

@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    # Keras's own random initialisation (its zero biases: the bias mapping is checked with random
    # biases in tests/test_keras_weights.py, at a cheaper size)
    keras.utils.set_random_seed(2)
    net = keras.applications.VGG16(weights=None, classes=5, classifier_activation=None)
    before = [np.asarray(w).copy() for w in net.get_weights()]
    path = tmp_path_factory.mktemp("kvgg") / "vgg16.weights.h5"
    net.save_weights(path)
    flax_model, flax_variables = jaxretina.load("vgg16", path)            # takes 0..255 RGB
    keras_model, keras_variables = jaxretina.models.from_keras(net)      # takes preprocess_input(x)
    rgb = np.random.default_rng(0).uniform(0, 255, (224, 224, 3)).astype(np.float32)
    pre = jnp.asarray(keras.applications.vgg16.preprocess_input(rgb[None].copy())[0])
    yield net, before, (keras_model, keras_variables, pre), (flax_model, flax_variables, jnp.asarray(rgb))


def test_the_wrapped_keras_model_is_keras_and_keeps_its_layer_names(pair):
    net, before, (km, kv, pre), _ = pair
    assert km.spatial_dims == 2
    names = taps.layer_names(km, (1, 224, 224, 3))
    assert names == tuple(layer.name for layer in net.layers[1:])     # every layer but the input, in order
    got = np.asarray(jax.jit(km.apply)(kv, pre[None]))
    want = np.asarray(jax.jit(net.stateless_call)([v.value for v in net.trainable_variables],
                                                  [v.value for v in net.non_trainable_variables], pre[None])[0])
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
    # the input gradient equals the one of Keras's own stateless call (anchor: Keras 3.15.1)
    trainable = [v.value for v in net.trainable_variables]
    frozen = [v.value for v in net.non_trainable_variables]
    logit = lambda tv, ntv, z: net.stateless_call(tv, ntv, z[None])[0][0, 3]   # noqa: E731 - weights as arguments
    keras_grad = jax.jit(jax.grad(logit, argnums=2))(trainable, frozen, pre)
    ours = explain.saliency(explain.model_fn(km, kv, targets.class_logit(3)), pre, abs=False)
    np.testing.assert_allclose(ours, keras_grad, rtol=1e-4, atol=1e-6 * float(jnp.abs(keras_grad).max()))


# Anchor: jaxretina's own VGG16 with the same weights (itself checked against Keras 3 and
# torchvision, tests/test_keras_weights.py, tests/test_resnet_vgg.py); tolerance 2e-3 relative
# to each map's largest value (float32, two differently ordered programs through 16 layers).
def test_maps_equal_the_flax_vgg16_with_the_same_weights(pair):
    net, before, (km, kv, pre), (fm, fv, rgb) = pair
    target = targets.class_logit(3)

    def close(a, b):
        a, b = np.asarray(a), np.asarray(b)
        assert np.abs(a - b).max() <= 2e-3 * max(np.abs(b).max(), 1e-12)

    keras_cams = explain.grad_cam(km, kv, pre, target)                  # every Keras layer with a map
    assert list(keras_cams) == [n for n in taps.layer_names(km, (1, 224, 224, 3)) if n.startswith("block")]
    flax_cams = explain.grad_cam(fm, fv, rgb, target, layers=list(keras_cams))   # Keras names as aliases
    for name in keras_cams:
        close(keras_cams[name], flax_cams[name])
    # IG: the Keras input is the BGR flip of the pixels minus a constant, so the pixels' IG is
    # the flip of the Keras input's IG (same path, same steps)
    baseline = jnp.asarray(keras.applications.vgg16.preprocess_input(np.zeros((1, 224, 224, 3), np.float32))[0])
    np.testing.assert_allclose(jax.jit(fm.apply)(fv, rgb[None]), jax.jit(km.apply)(kv, pre[None]), rtol=1e-4,
                               atol=1e-4 * float(jnp.abs(km.apply(kv, pre[None])).max()))   # the logits
    ig_keras = explain.integrated_gradients(explain.model_fn(km, kv, target), pre, baseline=baseline, steps=4)
    ig_flax = explain.integrated_gradients(explain.model_fn(fm, fv, target), rgb, baseline=0.0, steps=4)
    # Near the black baseline (the first Gauss-Legendre node, α = 0.07) a few ReLUs sit within
    # float32 rounding of zero and switch between the two programs: measured 0.53 % relative L2
    # on random weights and biases (4.8e-6 of 9.3e-5 at the worst pixel of that step's gradient),
    # 0.4 % on the attributions' sum with Keras's own initialisation; bounds 2 % and 1 %
    a, b = np.asarray(ig_keras.values[..., ::-1]), np.asarray(ig_flax.values)
    assert np.linalg.norm(a - b) <= 2e-2 * np.linalg.norm(b)
    np.testing.assert_allclose(a.sum(), b.sum(), rtol=1e-2)
    close(explain.guided_backprop(km, kv, pre, target)[..., ::-1], explain.guided_backprop(fm, fv, rgb, target))
    # LRP (epsilon_plus_flat) through the rule mechanism on the Keras graph: its layers are found
    # as sites like the Flax model's (the Flax model's preprocessing is an affine site, passed)
    kinds = [site.kind for site in jaxretina.propagation.layer_sites(km, kv, pre)]
    assert (kinds.count("conv"), kinds.count("dense"), kinds.count("maxpool")) == (13, 3, 5)
    close(explain.lrp(km, kv, pre, target)[..., ::-1], explain.lrp(fm, fv, rgb, target))
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(before, net.get_weights()))   # Keras untouched


def test_errors():
    with pytest.raises(TypeError, match="expected a keras.Model; found int"):
        jaxretina.models.from_keras(3)
    net = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="is not built"):
        jaxretina.models.from_keras(net)
    built = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(2, 3, name="c")])
    with pytest.raises(ValueError, match="spatial_dims must be 2, 3 or None"):
        jaxretina.models.from_keras(built, spatial_dims=1)
    model, variables = jaxretina.models.from_keras(built)
    with pytest.raises(ValueError, match=r"expected one example \(H, W, C\) for KerasModel"):
        explain.grad_cam(model, variables, jnp.ones((2, 4, 4, 3)), targets.segmentation_sum())
