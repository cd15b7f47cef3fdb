"""Seed 001's attributions: several classes at once, IG to a layer, from neurons to pixels,
resultant active regions, counterfactuals and the linearity study.

Checked against independent computations: Captum's LayerIntegratedGradients on the same
weights (float64), one IG call per class / per neuron, the linearity of IG, closed forms."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp
from jax.tree_util import Partial

from converters.densenet import from_state_dict
from jaxretina import explain, targets, taps

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
captum_attr = pytest.importorskip("captum.attr")
from tests.reference.densenet_torch import DenseNetModules, randomize  # noqa: E402

SMALL = dict(growth_rate=8, block_config=(2, 3), num_init_features=16, bn_size=2)
LAYER = "transition1"  # every input-output path passes it


@pytest.fixture(scope="module")
def dense():
    tv = randomize(torchvision.models.DenseNet(num_classes=3, **SMALL), seed=5)
    model, variables, _ = from_state_dict({k: v.numpy() for k, v in tv.state_dict().items()}, "test", **SMALL)
    x = np.random.default_rng(6).normal(size=(41, 47, 3)).astype(np.float32)
    return model, variables, DenseNetModules(tv), jnp.asarray(x)


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)


def test_replacing_a_layer_by_its_own_activation_changes_nothing(dense):
    model, variables, _, x = dense
    fns = taps.tap_functions(model)
    out, acts = fns.tapped(variables, x[None], fns.zeros(variables, x[None]))
    np.testing.assert_allclose(fns.replaced(variables, x[None], {LAYER: acts[LAYER]}), out, rtol=1e-5, atol=1e-6)
    other = fns.replaced(variables, x[None], {LAYER: acts[LAYER] * 0})
    assert np.abs(np.asarray(other - out)).max() > 1e-3
    with pytest.raises(ValueError, match="replacement for layer 'transition1': expected shape"):
        fns.replaced(variables, x[None], {LAYER: acts[LAYER][:, :-1]})


def test_class_ig_equals_one_ig_per_class_and_batches(dense):
    model, variables, _, x = dense
    classes = [2, 0]
    got = explain.class_integrated_gradients(model, variables, x, classes, baseline=0.25, steps=8)
    assert got.values.shape == (2, *x.shape) and got.delta.shape == (2,)
    for i, c in enumerate(classes):
        one = explain.integrated_gradients(explain.model_fn(model, variables, targets.class_probability(c)), x,
                                           baseline=0.25, steps=8)
        assert _rel(got.values[i], one.values) < 1e-4
        assert abs(float(got.delta[i]) - float(one.delta)) < 1e-5
    xs = jnp.stack([x, x[::-1] * 0.5])
    batched = jax.vmap(lambda xi: explain.class_integrated_gradients(model, variables, xi, classes, baseline=0.25,
                                                                     steps=8).values)(xs)
    alone = explain.class_integrated_gradients(model, variables, xs[1], classes, baseline=0.25, steps=8).values
    assert _rel(batched[1], alone) < 1e-4


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_middle"])
def test_layer_ig_matches_captum_layer_integrated_gradients(dense, rule):
    model, variables, ref, x = dense
    baseline, steps = 0.3, 6
    lig = captum_attr.LayerIntegratedGradients(lambda inp: ref(inp)[:, 1], ref.double().features.transition1)
    xt = torch.from_numpy(np.asarray(x).transpose(2, 0, 1)[None].astype(np.float64))
    want, want_delta = lig.attribute(xt, baselines=torch.full_like(xt, baseline), n_steps=steps, method=rule,
                                     return_convergence_delta=True)
    want = want.detach().numpy()[0].transpose(1, 2, 0)
    with jax.enable_x64(True):
        v64 = jax.tree.map(lambda a: np.asarray(a, np.float64), variables)
        got = explain.layer_integrated_gradients(model, v64, jnp.asarray(x, jnp.float64), LAYER,
                                                 targets.class_logit(1), baseline=baseline, steps=steps, rule=rule,
                                                 chunk=4)
        values, delta = np.asarray(got.values), float(got.delta)
    assert values.shape == want.shape
    np.testing.assert_allclose(values, want, atol=1e-7 * np.abs(want).max())   # Captum's float32 alphas
    assert abs(delta - float(want_delta)) <= 1e-6 * max(abs(float(values.sum())), 1e-12) + 1e-9


def test_neuron_maps_equal_each_neuron_alone_and_resultant_is_ig_of_the_weighted_sum(dense):
    model, variables, _, x = dense
    study = explain.neuron_study(model, variables, x, LAYER, targets.class_logit(0), baseline=0.0, k=3, steps=8,
                                 chunk=4)
    lay = np.asarray(study.layer.values).reshape(-1)
    pos, neg = np.asarray(study.positive), np.asarray(study.negative)
    assert np.all(np.diff(lay[pos]) <= 0) and lay[pos].min() >= np.sort(lay)[-3]
    assert np.all(np.diff(lay[neg]) >= 0) and lay[neg].max() <= np.sort(lay)[2]
    params = taps.params_only(variables)

    def neuron(j):
        def f(v, z):
            return taps.activations(model, v, z[None], LAYER)[1][LAYER][0].reshape(-1)[j]
        return Partial(f, params)

    chosen = np.concatenate([pos, neg])
    for row, j in enumerate(chosen):
        alone = explain.integrated_gradients(neuron(int(j)), x, baseline=0.0, steps=8, chunk=4)
        assert _rel(study.neuron_maps.values[row], alone.values) < 1e-4
        assert abs(float(study.neuron_maps.delta[row]) - float(alone.delta)) < 1e-4
    w = lay[pos]

    def weighted(v, z):
        a = taps.activations(model, v, z[None], LAYER)[1][LAYER][0].reshape(-1)
        return jnp.dot(a[jnp.asarray(pos)], jnp.asarray(w))

    direct = explain.integrated_gradients(Partial(weighted, params), x, baseline=0.0, steps=8, chunk=4)
    assert _rel(study.positive_region, direct.values) < 1e-4


def test_counterfactual_formulas_elementwise():
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 255, size=(6, 5, 3)).astype(np.float32)
    x[0, 0] = 128.0                                          # sgn(0) = 0: unchanged
    ig = rng.normal(size=x.shape).astype(np.float32) * 40
    grid = np.array([0.5, 3.0], np.float32)
    got = np.asarray(explain.ig_counterfactual(jnp.asarray(x), 128.0, jnp.asarray(ig), grid))
    for g, c in enumerate(grid):
        for idx in np.ndindex(x.shape):
            s = np.sign(float(x[idx]) - 128.0)
            assert got[(g, *idx)] == pytest.approx(min(max(x[idx] + c * s * ig[idx], 0.0), 255.0), abs=1e-3)
    assert got[:, 0, 0].tolist() == [[128.0] * 3] * 2
    w = rng.normal(size=x.shape).astype(np.float32)
    lin = Partial(lambda wt, z: jnp.sum(wt * z), jnp.asarray(w))               # ∂f/∂x = w
    step = np.asarray(explain.gradient_counterfactual(lin, jnp.asarray(x), 10.0))
    np.testing.assert_allclose(step, np.clip(x + 10.0 * w, 0, 255), rtol=1e-6)
    with pytest.raises(ValueError, match="attribution must have the input's shape"):
        explain.ig_counterfactual(jnp.asarray(x), 128.0, jnp.asarray(ig[:-1]), 1.0)
    with pytest.raises(ValueError, match="scalar or a 1-D grid"):
        explain.ig_counterfactual(jnp.asarray(x), 128.0, jnp.asarray(ig), np.ones((2, 2)))


def test_linearity_study_closed_form_and_equal_to_per_c_calls(dense):
    model, variables, _, x = dense
    x255 = jnp.clip(x * 40 + 128, 0, 255)
    grid = explain.exponential_grid(1.0, 100.0, 3)
    target = targets.class_logit(2)
    # The logits are a linear function of themselves: attribution = e_2 ⊙ (a − a'), mean gradient e_2.
    s = explain.linearity_study(model, variables, x255, "classifier", target, grid, baseline=128.0, steps=4)
    assert s.attributions.shape == (3, 3) and s.outputs.shape == (3,)
    expect = np.zeros((3, 3))
    expect[:, 2] = np.asarray(s.activations - s.baseline_activations)[:, 2]
    np.testing.assert_allclose(np.asarray(s.attributions), expect, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(s.mean_gradients)[:, 2], 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(s.outputs), np.asarray(s.activations)[:, 2], rtol=1e-5)
    # every c of the grid in one program equals one call per c on its counterfactual
    t = explain.linearity_study(model, variables, x255, LAYER, target, grid, baseline=128.0, steps=4)
    f = explain.model_fn(model, variables, target)
    for i, c in enumerate(np.asarray(grid)):
        xc = explain.gradient_counterfactual(f, x255, float(c))
        one = explain.layer_integrated_gradients(model, variables, xc, LAYER, target, baseline=128.0, steps=4)
        assert _rel(t.attributions[i], one.values) < 1e-4


def test_errors(dense):
    model, variables, _, x = dense
    with pytest.raises(ValueError, match="unknown layer name"):
        explain.layer_integrated_gradients(model, variables, x, "Mixed_5b", targets.class_logit(0), baseline=0.0)
    with pytest.raises(ValueError, match=r"neuron indices must lie in \[0, "):
        explain.neuron_integrated_gradients(model, variables, x, LAYER, np.array([0, 10 ** 7]), baseline=0.0)
    with pytest.raises(ValueError, match="1-D integer array"):
        explain.neuron_integrated_gradients(model, variables, x, LAYER, np.array([0.5]), baseline=0.0)
    with pytest.raises(ValueError, match="to a vector"):
        explain.integrated_gradients_vector(lambda z: z.sum(), x, baseline=0.0, steps=2)
    with pytest.raises(ValueError, match="k must be an int"):
        explain.top_neurons(jnp.zeros(5), 6)
