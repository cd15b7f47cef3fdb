"""Layer and neuron path attributions: parity with Captum 0.9.0 (LayerGradientXActivation,
InternalInfluence, LayerConductance, NeuronConductance) on a conv–ReLU–pool–dense network with
the same weights, wrapped for taps with ``jaxretina.explainable`` (float64, odd 9×7 input),
and chunking that changes memory, not results."""

from __future__ import annotations

import numpy as np
import pytest
import jax
import jax.numpy as jnp

import jaxretina
from jaxretina import explain, targets
from tests.test_deeplift import FlaxNet, net_and_inputs, nhwc

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def pair():
    net, variables, x, b = net_and_inputs(3, 1, 0.2)
    return net, jaxretina.explainable(FlaxNet(), layers="all"), variables, x, b


def _run64(fn):
    with jax.enable_x64(True):
        return np.asarray(fn())


def _close(got, want, rtol=1e-10):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * 1e-2 * max(1.0, np.abs(want).max()))


STEP_ROUNDING = 1e-7   # Captum multiplies by its quadrature weights as a float32 tensor


# Anchor: Captum 0.9.0 on the torch module of the same layer (conv c2's output, dense fc's),
# target class 2, gausslegendre with 8 steps; tolerance 1e-10 (1e-7 where Captum weights the
# steps: it rounds the weights to float32).
@pytest.mark.parametrize("layer", ["c2", "fc"])
def test_layer_methods_match_captum(pair, layer):
    from captum.attr import InternalInfluence, LayerConductance, LayerGradientXActivation

    net, model, variables, x, b = pair
    module = getattr(net, layer)
    to_ours = nhwc if layer == "c2" else (lambda t: t.detach().numpy())
    kw = dict(baselines=b, target=2, n_steps=8, method="gausslegendre")
    want_gxa = to_ours(LayerGradientXActivation(net, module).attribute(x.clone().requires_grad_(), target=2))[0]
    want_ii = to_ours(InternalInfluence(net, module).attribute(x.clone().requires_grad_(), **kw))[0]
    want_lc = to_ours(LayerConductance(net, module).attribute(x.clone().requires_grad_(), **kw))[0]

    def ours():
        v = jax.tree.map(jnp.asarray, variables)
        xj, bj = jnp.asarray(nhwc(x)[0]), jnp.asarray(nhwc(b)[0])
        t = targets.class_logit(2)
        return (explain.layer_gradient_x_activation(model, v, xj, t, layers=[layer])[layer],
                explain.internal_influence(model, v, xj, layer, t, baseline=bj, steps=8, chunk=3),
                explain.layer_conductance(model, v, xj, layer, t, baseline=bj, steps=8, chunk=3),
                explain.layer_conductance(model, v, xj, layer, t, baseline=bj, steps=8, chunk="all"))

    with jax.enable_x64(True):
        gxa, ii, lc, lc_all = (np.asarray(a) for a in ours())
    _close(gxa, want_gxa)
    _close(ii, want_ii, STEP_ROUNDING)
    _close(lc, want_lc)
    _close(lc_all, lc)


# Anchor: Captum 0.9.0 NeuronConductance through neuron (4, 3, 5) of conv c2; tolerance 1e-7
# (Captum's float32 step weights).
def test_neuron_conductance_matches_captum(pair):
    from captum.attr import NeuronConductance

    net, model, variables, x, b = pair
    want = nhwc(NeuronConductance(net, net.c2).attribute(
        x.clone().requires_grad_(), neuron_selector=(5, 4, 3), baselines=b, target=0, n_steps=8,
        method="gausslegendre"))[0]   # torch (C, H, W) = our (H, W, C) (4, 3, 5)
    with jax.enable_x64(True):
        v = jax.tree.map(jnp.asarray, variables)
        got = explain.neuron_conductance(model, v, jnp.asarray(nhwc(x)[0]), "c2", (4, 3, 5), targets.class_logit(0),
                                         baseline=jnp.asarray(nhwc(b)[0]), steps=8, chunk=5)
    _close(np.asarray(got), want, STEP_ROUNDING)


def test_errors(pair):
    _, model, variables, x, _ = pair
    xj = jnp.asarray(nhwc(x)[0], jnp.float32)
    with pytest.raises(ValueError, match="outside layer 'c2'"):
        explain.neuron_conductance(model, variables, xj, "c2", (9, 0, 0), targets.class_logit(0))
    with pytest.raises(ValueError, match="nope"):
        explain.layer_conductance(model, variables, xj, "nope", targets.class_logit(0))
