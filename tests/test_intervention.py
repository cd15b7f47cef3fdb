"""Seed 000's intervention: scaling a layer's map == the fuse-kernel edit; the sweep == one run per c."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxretina import intervention, metrics, taps
from jaxretina.models import DRIU

FUSED = ("conv1_2_16", "upsample2", "upsample4", "upsample8")


@pytest.fixture(scope="module")
def setup(driu_small):
    model, variables, x = driu_small
    forward = jax.jit(model.apply)
    return model, variables, x[None], forward


@pytest.mark.parametrize("layer", FUSED)
def test_functional_scaling_equals_the_weight_edit(setup, layer):
    model, variables, x, forward = setup
    scaled = jax.jit(intervention.scale_layer, static_argnums=(0, 3))
    per_channel = jnp.linspace(0.2, 2.5, 16)
    for c in (1.7, per_channel):
        edited = forward(intervention.fuse_weight_edit(model, variables, layer, c), x)
        np.testing.assert_allclose(scaled(model, variables, x, layer, c), edited, rtol=2e-5, atol=2e-4)
    # c = 1 is the model; and the scaled layer is c times the tapped activation, fed on
    np.testing.assert_allclose(scaled(model, variables, x, layer, 1.0), forward(variables, x), rtol=1e-6, atol=1e-5)
    fns = taps.tap_functions(model)
    _, acts = jax.jit(fns.tapped)(variables, x, fns.zeros(variables, x))
    replaced = jax.jit(fns.replaced)(variables, x, {layer: 0.3 * acts[layer]})
    np.testing.assert_allclose(scaled(model, variables, x, layer, 0.3), replaced, rtol=1e-5, atol=1e-4)


def test_sweep_equals_one_edited_model_per_c(setup):
    model, variables, x, forward = setup
    rng = np.random.default_rng(0)
    images = jnp.concatenate([x, x[:, ::-1]], axis=0)
    targets = rng.random(images.shape[:3]) < 0.3
    rows, cols = np.mgrid[: images.shape[1], : images.shape[2]]
    fov = np.broadcast_to((rows - 18) ** 2 + (cols - 22) ** 2 < 17 ** 2, targets.shape)
    cs = np.array([0.0, 0.5, 1.0, 3.0], np.float32)
    layers = ("upsample2", "conv1_2_16")
    # a threshold near the typical probability, so that the scaling changes the binary map
    probs = jax.nn.sigmoid(forward(variables, images))
    threshold = float(np.median(np.asarray(probs)))
    sweep = intervention.scaling_sweep(model, variables, images, targets, fov, layers, cs, threshold=threshold)
    assert sweep.miou.shape == (2, 4, 2) and sweep.layers == layers
    for i, layer in enumerate(layers):
        for k, c in enumerate(cs):
            out = jax.nn.sigmoid(forward(intervention.fuse_weight_edit(model, variables, layer, c), images))
            ref = metrics.masked_miou(out[..., 0] > threshold, targets, fov)
            np.testing.assert_allclose(sweep.miou[i, k], ref, atol=1e-6)
    np.testing.assert_allclose(sweep.miou[:, 2], np.broadcast_to(sweep.baseline, (2, 2)), atol=1e-6)
    assert len({round(v, 6) for v in sweep.miou[0].mean(-1)}) > 1      # the factor does change the result
    assert set(sweep.table()) == set(layers) and set(sweep.best()) == set(layers)


def test_sweep_computes_the_trunk_once_per_image(setup):
    """The K-factor program costs about one forward plus K fuse layers, not K forwards."""
    model, variables, x, _ = setup
    images, masks = jnp.concatenate([x, x]), jnp.ones((2, *x.shape[1:3]), bool)

    def flops(k):
        lowered = intervention._sweep_program.lower(model, ("upsample2", "upsample4"), 0.5, 1, variables, images, masks,
                                                    masks, jnp.ones(k))
        return lowered.compile().cost_analysis()["flops"]

    one, eight = flops(1), flops(8)
    assert eight < 1.5 * one, (one, eight)


def test_errors(setup):
    model, variables, x, _ = setup
    with pytest.raises(ValueError, match="unknown layer"):
        intervention.scale_layer(model, variables, x, "upsample3", 2.0)
    with pytest.raises(ValueError, match="fuse layer reads"):
        intervention.fuse_weight_edit(model, variables, "conv2_2", 2.0)
    with pytest.raises(TypeError, match="needs the model.s `fuse_inputs`"):
        intervention.fuse_weight_edit(object(), variables, "upsample2", 2.0)
    with pytest.raises(ValueError, match=r"targets must be \(N, H, W\)"):
        intervention.scaling_sweep(model, variables, x, jnp.zeros((1, 3, 3)), jnp.zeros(x.shape[:3]), ["upsample2"],
                                   [1.0])


def test_fuse_inputs_follow_the_concatenation():
    assert {k: (r.start, r.stop) for k, r in DRIU().fuse_inputs().items()} == {
        "conv1_2_16": (0, 16), "upsample2": (16, 32), "upsample4": (32, 48), "upsample8": (48, 64)}
    assert list(DRIU(variant="optic_disc", side_channels=4).fuse_inputs()) == [
        "upsample2", "upsample4", "upsample8", "upsample16"]
