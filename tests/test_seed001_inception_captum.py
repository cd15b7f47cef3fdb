"""Seed 001's whole explained function against Captum on the same weights: 0..255 pixels →
ImageNet normalisation → Inception V3 with the seed's two-layer head → softmax, half-gray
baseline; several classes at once and IG to the last convolution before the Inception blocks.
Float64 on both sides (see test_anchor_parity for why)."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

from converters.inception import from_state_dict  # noqa: E402
from jaxretina import explain, preprocess, targets  # noqa: E402
from tests.reference.inception_torch import Seed001  # noqa: E402

MEAN, STD = (np.asarray(v) * 255.0 for v in ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))


@pytest.fixture(scope="module")
def seed001():
    ref = Seed001().eval().double()
    state = {k.removeprefix("trunk."): v.detach().numpy().copy() for k, v in ref.state_dict().items()}
    model, variables, _ = from_state_dict(state, "memory")
    model = model.clone(normalization=preprocess.imagenet_normalization(255.0))
    x = np.random.default_rng(3).uniform(0, 255, size=(80, 80, 3))
    mean = torch.from_numpy(MEAN).view(1, 3, 1, 1)
    std = torch.from_numpy(STD).view(1, 3, 1, 1)

    def probabilities(inp):
        return torch.softmax(ref((inp - mean) / std), dim=1)

    return model, variables, ref, probabilities, x


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x, np.float64).transpose(2, 0, 1)[None]))


def _f64(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


@pytest.mark.parametrize("rule", ["riemann_right", "gausslegendre"])
def test_class_ig_with_half_gray_baseline_matches_captum(seed001, rule):
    model, variables, _, probabilities, x = seed001
    steps, classes = 4, (0, 4)
    ig = captum_attr.IntegratedGradients(probabilities)
    base = torch.full_like(_nchw(x), preprocess.HALF_GRAY)
    with jax.enable_x64(True):
        got = explain.class_integrated_gradients(model, _f64(variables), jnp.asarray(x), classes,
                                                 baseline=preprocess.HALF_GRAY, steps=steps, rule=rule, chunk="all")
        values, deltas = np.asarray(got.values), np.asarray(got.delta)
    for i, c in enumerate(classes):
        want, delta = ig.attribute(_nchw(x), baselines=base, target=c, n_steps=steps, method=rule,
                                   return_convergence_delta=True)
        want = want.detach().numpy()[0].transpose(1, 2, 0)
        np.testing.assert_allclose(values[i], want, atol=1e-7 * np.abs(want).max())
        assert abs(deltas[i] - float(delta)) <= 1e-6 * abs(float(want.sum() - float(delta))) + 1e-12


def test_layer_ig_to_the_last_convolution_matches_captum(seed001):
    model, variables, ref, probabilities, x = seed001
    lig = captum_attr.LayerIntegratedGradients(probabilities, ref.trunk.Conv2d_4a_3x3)
    base = torch.full_like(_nchw(x), preprocess.HALF_GRAY)
    want = lig.attribute(_nchw(x), baselines=base, target=4, n_steps=4, method="riemann_right")
    want = want.detach().numpy()[0].transpose(1, 2, 0)
    with jax.enable_x64(True):
        got = explain.layer_integrated_gradients(model, _f64(variables), jnp.asarray(x), "Conv2d_4a_3x3",
                                                 targets.class_probability(4), baseline=preprocess.HALF_GRAY,
                                                 steps=4, rule="riemann_right", chunk="all")
        values = np.asarray(got.values)
    assert values.shape == want.shape
    np.testing.assert_allclose(values, want, atol=1e-7 * np.abs(want).max())
