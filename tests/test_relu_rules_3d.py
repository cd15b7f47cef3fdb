"""Guided backprop, deconvnet and layer-wise guided backprop on the DS6 U-Net (ReLU and LeakyReLU)
and Inception V3 (functional ReLUs) against PyTorch on the same weights, in float64: Captum where
its hooks reach the ReLUs, the independent autograd rules of tests/reference/relu_rules_torch.py
everywhere."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

from converters.inception import from_state_dict as inception_from_state_dict  # noqa: E402
from converters.unet3d import from_state_dict  # noqa: E402
from jaxretina import explain, targets  # noqa: E402
from tests.reference.densenet_torch import randomize  # noqa: E402
from tests.reference.ds6_torch import UNetDeepSup  # noqa: E402
from tests.reference.inception_torch import reference as inception_reference  # noqa: E402
from tests.reference.relu_rules_torch import relu_rule  # noqa: E402

METHODS = {"guided_backprop": ("guided", "GuidedBackprop"), "deconvnet": ("deconvnet", "Deconvolution")}


class _Vessels(torch.nn.Module):
    """Σ sigmoid(out) of DS6's main output: jaxretina's ``segmentation_sum()``."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.sigmoid(self.net(x)[0]).sum(dim=(1, 2, 3, 4))


def _unet(slope=None, seed=9):
    torch.manual_seed(seed)
    ref = randomize(UNetDeepSup(2, slope=slope), seed=seed + 1, mean_std=0.2, bias_std=0.1).eval().double()
    state = {k: v.detach().numpy().copy() for k, v in ref.state_dict().items()}
    act = (lambda v: jax.nn.leaky_relu(v, slope)) if slope else jax.nn.relu
    model, variables, _ = from_state_dict(state, "memory", deep_supervision=False, act=act)
    return ref, model, variables


def _f64(variables):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), variables)


def _volume(seed=9):
    return np.random.default_rng(seed).normal(size=(16, 16, 32, 1))


def _ncdhw(x):
    return torch.from_numpy(np.moveaxis(x, -1, 0)[None].copy()).requires_grad_(True)


def _close(got, want, rel=1e-9, nonzero=True):
    want = np.moveaxis(want.detach().numpy()[0], 0, -1)
    assert np.abs(want).max() > 0 or not nonzero
    np.testing.assert_allclose(np.asarray(got), want, atol=rel * np.abs(want).max())
    return want


@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU activations")
@pytest.mark.parametrize("method", sorted(METHODS))
def test_unet3d_relu_rules_match_captum_and_independent_rules(method):
    ref, model, variables = _unet()
    x = _volume()
    with jax.enable_x64(True):
        got = getattr(explain, method)(model, _f64(variables), jnp.asarray(x), targets.segmentation_sum())
        plain = explain.saliency(explain.model_fn(model, _f64(variables), targets.segmentation_sum()), jnp.asarray(x),
                                 abs=False)
    assert got.dtype == jnp.float64 and got.shape == x.shape
    want = _close(got, getattr(captum_attr, METHODS[method][1])(_Vessels(ref)).attribute(_ncdhw(x)))
    inp = _ncdhw(x)
    with relu_rule(METHODS[method][0]):
        _Vessels(ref)(inp).sum().backward()
    _close(got, inp.grad)
    assert np.abs(np.asarray(plain) - want).max() > 1e-2 * np.abs(want).max()  # the rule matters


@pytest.mark.parametrize("method", sorted(METHODS))
def test_leaky_relu_variant_follows_the_extended_rule(method):
    # Captum leaves LeakyReLU alone; the independent rules apply act'(x)·max(g, 0) / max(g, 0).
    ref, model, variables = _unet(slope=0.01, seed=11)
    x = _volume(12)
    with jax.enable_x64(True):
        got = getattr(explain, method)(model, _f64(variables), jnp.asarray(x), targets.segmentation_sum())
    inp = _ncdhw(x)
    with relu_rule(METHODS[method][0]):
        _Vessels(ref)(inp).sum().backward()
    _close(got, inp.grad)


def test_layerwise_guided_backprop_equals_one_torch_backward_per_layer():
    ref, model, variables = _unet(seed=17)
    x = _volume(14)
    with jax.enable_x64(True):
        maps, names = explain.layerwise_guided_backprop(model, _f64(variables), jnp.asarray(x))
        chunked, _ = explain.layerwise_guided_backprop(model, _f64(variables), jnp.asarray(x), chunk=5)
    assert names == model.layer_names() and maps.shape == (16, *x.shape)
    np.testing.assert_allclose(np.asarray(chunked), np.asarray(maps), rtol=0, atol=0)
    modules = {n: getattr(ref, n) for n in names}

    def torch_map(name, channel=None):
        captured = {}
        hook = modules[name].register_forward_hook(lambda m, inp, out: captured.update(a=out))
        inp = _ncdhw(x)
        with relu_rule("guided"):
            ref(inp)
            a = captured["a"] if channel is None else captured["a"][:, channel]
            a.abs().sum().backward()
        hook.remove()
        return inp.grad

    for i, name in enumerate(names):  # a layer whose guided paths are all blocked gives zeros on both sides
        _close(maps[i], torch_map(name), rel=1e-8, nonzero=False)
    assert (np.abs(np.asarray(maps)).max(axis=(1, 2, 3, 4)) > 0).sum() >= 12
    # one filter of a layer: the first of Up_conv3's whose guided paths are not all blocked
    channel, want = next((c, w) for c in range(ref.Up_conv3.conv[3].out_channels)
                         if np.abs((w := torch_map("Up_conv3", channel=c)).numpy()).max() > 0)
    with jax.enable_x64(True):
        one, _ = explain.layerwise_guided_backprop(model, _f64(variables), jnp.asarray(x), ["Up_conv3"],
                                                   channel=channel)
    _close(one[0], want, rel=1e-8)
    with pytest.raises(ValueError, match="unknown layer"):
        explain.layerwise_guided_backprop(model, variables, jnp.asarray(x, jnp.float32), ["Conv9"])
    with pytest.raises(ValueError, match="rule must be"):
        explain.layerwise_guided_backprop(model, variables, jnp.asarray(x, jnp.float32), rule="smooth")


def test_inception_functional_relus_follow_the_rules():
    # torchvision's BasicConv2d calls F.relu: Captum cannot reach it; the patched rules can.
    # Guided backprop and deconvnet from one compiled program (one forward pass, two backward).
    ref = inception_reference(aux_logits=False, seed=21).eval().double()
    model, variables, _ = inception_from_state_dict({k: v.numpy() for k, v in ref.state_dict().items()}, "memory")
    x = np.random.default_rng(22).normal(size=(75, 75, 3))
    methods = sorted(METHODS)
    with jax.enable_x64(True):
        v64 = jax.tree.map(lambda a: np.asarray(a, np.float64), variables)
        both = jax.jit(lambda v, z: [getattr(explain, m)(model, v, z, targets.class_logit(2)) for m in methods])
        got = dict(zip(methods, both(v64, jnp.asarray(x))))
    for method in methods:
        inp = torch.from_numpy(x.transpose(2, 0, 1)[None].copy()).requires_grad_(True)
        with relu_rule(METHODS[method][0]):
            ref(inp)[0, 2].backward()
        _close(got[method], inp.grad)
