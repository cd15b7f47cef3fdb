"""LRP through the rule mechanism: parity with zennit 0.5.1 and Captum 0.9.0 on torchvision
VGG and ResNet (random weights and BatchNorm statistics, float64 on both sides, an odd
37×33 input), and the properties the rules promise (conservation, unchanged forward,
batched == per example)."""

from __future__ import annotations

import numpy as np
import pytest
import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxretina import explain, propagation as P, targets

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

CLASS = 3


def _torch_net(name, *, bn_eps=None):
    torch.manual_seed(0)
    net = getattr(torchvision.models, name)(num_classes=10)
    if name.startswith("vgg"):   # 32-wide hidden layers: the 4096-wide ones only cost time here
        net.classifier = torch.nn.Sequential(torch.nn.Linear(512 * 49, 32), torch.nn.ReLU(), torch.nn.Dropout(),
                                             torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Dropout(),
                                             torch.nn.Linear(32, 10))
    net = net.double().eval()
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.3 + 1)   # some negative scales
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            if bn_eps is not None:
                m.eps = bn_eps
    # the converters store float32: round once so both sides hold the same numbers
    net.load_state_dict({k: (v.float().double() if v.is_floating_point() else v) for k, v in net.state_dict().items()})
    return net


def _ours(name, net, **options):
    from converters import resnet, vgg

    convert = resnet if name.startswith("resnet") else vgg
    model, variables, _ = convert.from_state_dict({k: v.numpy() for k, v in net.state_dict().items()}, "t", **options)
    return model, variables


def _lrp64(model, variables, x, composite, **options):
    with jax.enable_x64(True):
        v64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
        return np.asarray(explain.lrp(model, v64, jnp.asarray(_nhwc(x)), targets.class_logit(CLASS),
                                      composite=composite, **options))


@pytest.fixture(scope="module")
def vgg11():
    net = _torch_net("vgg11")
    return (net, *_ours("vgg11", net))


@pytest.fixture(scope="module")
def resnet18():
    net = _torch_net("resnet18", bn_eps=0.0)
    return (net, *_ours("resnet18", net, bn_eps=0.0))


@pytest.fixture(scope="module")
def x():
    return torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, 37, 33)))


def _nhwc(t):
    return t[0].permute(1, 2, 0).detach().numpy()


def _rel_err(got, want):
    return float(np.abs(np.asarray(got) - want).max() / np.abs(want).max())


def _zennit(net, composite, x):
    from zennit.attribution import Gradient

    with Gradient(model=net, composite=composite) as attributor:
        _, rel = attributor(x, lambda o: o * torch.eye(10, dtype=o.dtype)[[CLASS]])
    return _nhwc(rel)


# Anchor: zennit 0.5.1's composites with its VGG canonizer; float64; tolerance 1e-9 of the
# largest relevance (measured 4e-13).
@pytest.mark.parametrize("composite,options", [("epsilon_plus_flat", {}), ("epsilon_gamma_box", dict(low=-3.0, high=3.0)),
                                               ("epsilon_alpha2_beta1", {})])
def test_vgg_composites_match_zennit(composite, options, vgg11, x):
    pytest.importorskip("zennit")
    from zennit import composites
    from zennit.torchvision import VGGCanonizer

    net, model, variables = vgg11
    classes = {"epsilon_plus_flat": composites.EpsilonPlusFlat, "epsilon_gamma_box": composites.EpsilonGammaBox,
               "epsilon_alpha2_beta1": composites.EpsilonAlpha2Beta1}
    want = _zennit(net, classes[composite](canonizers=[VGGCanonizer()], **options), x)
    got = _lrp64(model, variables, x, composite, **options)
    assert _rel_err(got, want) < 1e-9


# Anchor: zennit 0.5.1 with ResNetCanonizer (batch norms merged into the convolutions, residual
# sums under its Norm rule); float64; tolerance 1e-9 (measured 2e-15).  BatchNorm eps is 0 on
# both sides: zennit's merge leaves an identity batch norm that still divides by sqrt(1 + eps),
# which moves its maps by ~1e-4 relative on ResNet18 — a property of the canonizer, not of LRP.
@pytest.mark.parametrize("composite", ["epsilon_gamma_box"])
def test_resnet_composites_match_zennit_with_merged_batch_norms(composite, resnet18, x):
    pytest.importorskip("zennit")
    from zennit import composites
    from zennit.torchvision import ResNetCanonizer

    net, model, variables = resnet18
    bounds = dict(low=-3.0, high=3.0)   # gamma (negative BN scales merged) and z^B on the stem
    want = _zennit(net, composites.EpsilonGammaBox(canonizers=[ResNetCanonizer()], **bounds), x)
    got = _lrp64(model, variables, x, composite, **bounds)
    assert _rel_err(got, want) < 1e-9


# Anchor: Captum 0.9.0 LRP on torchvision VGG11-BN with its rule on every convolution and
# EpsilonRule (ε = 1e-9) on linear layers, batch norms and the adaptive pool; float64;
# tolerance 1e-9 (measured 2e-12).  Captum's max pools get ε = 1e-300: with its default 1e-9
# a max pool scales relevance by x/(x + 1e-9), while jaxretina routes max pools by their
# gradient (zennit's choice) — 2e-6 apart on this net.
@pytest.mark.parametrize("rule", ["epsilon", "gamma", "alpha1_beta0"])
def test_captum_rules_match_captum_lrp(rule, x):
    from captum.attr import LRP
    from captum.attr._utils.lrp_rules import Alpha1_Beta0_Rule, EpsilonRule, GammaRule

    net = _torch_net("vgg11_bn")
    model, variables = _ours("vgg11_bn", net)
    theirs = {"epsilon": EpsilonRule, "gamma": GammaRule, "alpha1_beta0": Alpha1_Beta0_Rule}[rule]
    ours = {"epsilon": P.Epsilon(1e-9), "gamma": P.captum_gamma(0.25), "alpha1_beta0": P.captum_alpha1_beta0()}[rule]
    for m in net.features:
        if isinstance(m, torch.nn.Conv2d):
            m.rule = theirs()
        if isinstance(m, torch.nn.MaxPool2d):
            m.rule = EpsilonRule(1e-300)
    want = _nhwc(LRP(net).attribute(x.clone().requires_grad_(), target=CLASS))
    eps = P.Epsilon(1e-9)
    composite = P.Composite((("activation", P.Pass()), ("conv", ours), ("dense", eps), ("avgpool", eps),
                             ("affine", eps), ("sum", eps)), merge=False)
    got = _lrp64(model, variables, x, composite)
    assert _rel_err(got, want) < 1e-9


# -- properties ---------------------------------------------------------------------------------

class _BiasFree(nn.Module):
    """A bias-free ReLU network: conv, residual sum, average pool, dense."""

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Conv(6, (3, 3), use_bias=False, name="conv1")(x))
        h = h + nn.relu(nn.Conv(6, (3, 3), use_bias=False, name="conv2")(h))
        h = h.reshape(h.shape[0], h.shape[1] // 2, 2, h.shape[2] // 2, 2, 6).mean(axis=(2, 4))
        return nn.Dense(4, use_bias=False, name="fc")(h.reshape(h.shape[0], -1))


@pytest.fixture(scope="module")
def toy():
    net = _BiasFree()
    x = jnp.asarray(np.random.default_rng(2).standard_normal((8, 10, 3)))
    return net, net.init(jax.random.key(0), x[None]), x


@pytest.mark.parametrize("composite", ["epsilon", "epsilon_plus"])
def test_relevance_is_conserved_on_a_bias_free_relu_network(toy, composite):
    net, variables, x = toy
    with jax.enable_x64(True):
        v64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
        x64 = jnp.asarray(x, jnp.float64)
        logits = net.apply(v64, x64[None])[0]
        c = int(jnp.argmax(logits))   # a positive logit: z⁺ conserves a positive start
        r = explain.lrp(net, v64, x64, targets.class_logit(c), composite=composite, epsilon=1e-12, stabilizer=1e-12)
        assert float(jnp.abs(r.sum() - logits[c])) < 1e-8 * float(jnp.abs(logits[c]))


def test_the_forward_pass_is_unchanged_and_batches_equal_single_examples(toy):
    net, variables, x = toy
    comp = P.named("epsilon_alpha2_beta1_flat")
    ruled = P.with_rules(lambda v, z: net.apply(v, z), comp.choose, merge=comp.merge)
    xs = jnp.stack([x, -x, 2 * x])
    np.testing.assert_array_equal(jax.jit(ruled)(variables, xs), jax.jit(net.apply)(variables, xs))
    target = targets.class_logit(1)
    one = [explain.lrp(net, variables, xi, target, composite=comp) for xi in xs]
    both = jax.vmap(lambda xi: explain.lrp(net, variables, xi, target, composite=comp))(xs)
    np.testing.assert_allclose(both, jnp.stack(one), rtol=1e-5, atol=1e-7)


def test_sites_and_rule_errors(toy):
    net, variables, x = toy
    found = P.layer_sites(net, variables, x)
    assert [(s.kind, s.name) for s in found] == [
        ("conv", "conv1"), ("activation", ""), ("conv", "conv2"), ("activation", ""), ("sum", ""),
        ("avgpool", ""), ("dense", "fc")]
    with pytest.raises(ValueError, match="ZPlus applies to conv/dense sites; layer '' is a sum site"):
        explain.lrp(net, variables, x, targets.class_logit(0), composite=P.Composite((("sum", P.ZPlus()),)))
    with pytest.raises(ValueError, match="unknown composite 'epsilon_pls'"):
        explain.lrp(net, variables, x, targets.class_logit(0), composite="epsilon_pls")
    with pytest.raises(ValueError, match="composite 'epsilon': .*unexpected keyword argument 'gamma'"):
        explain.lrp(net, variables, x, targets.class_logit(0), composite="epsilon", gamma=0.5)


# Anchor: Captum 0.9.0 GuidedGradCam at ResNet-18's layer3 (3×3 for a 37×33 input, nearest
# upsampling); float64; tolerance 1e-9 of the largest value.
@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU:UserWarning")
def test_guided_grad_cam_matches_captum(resnet18, x):
    from captum.attr import GuidedGradCam

    net, model, variables = resnet18
    want = _nhwc(GuidedGradCam(net, net.layer3).attribute(x.clone().requires_grad_(), target=CLASS))
    with jax.enable_x64(True):
        v64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
        got = explain.guided_grad_cam(model, v64, jnp.asarray(_nhwc(x)), targets.class_logit(CLASS), layer="layer3")
    assert _rel_err(got, want) < 1e-9


# Anchor: TorchRay 1.0.0.2 excitation_backprop / contrastive_excitation_backprop on VGG11 (ReLUs
# not in place): saliency at features.12 (the ReLU after conv 11), contrast at features.17,
# classifier classifier.6; float64; tolerance 1e-9 of the largest value.
@pytest.mark.parametrize("contrastive", [False, True])
def test_excitation_backprop_matches_torchray(vgg11, x, contrastive):
    pytest.importorskip("torchray")
    from torchray.attribution.excitation_backprop import contrastive_excitation_backprop, excitation_backprop

    net, model, variables = vgg11
    if contrastive:
        want = contrastive_excitation_backprop(net, x.clone(), CLASS, saliency_layer="features.12",
                                               contrast_layer="features.17", classifier_layer="classifier.6")
    else:
        want = excitation_backprop(net, x.clone(), CLASS, saliency_layer="features.12")
    want = want[0, 0].detach().numpy()
    with jax.enable_x64(True):
        v64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
        got = explain.excitation_backprop(model, v64, jnp.asarray(_nhwc(x)), targets.class_logit(CLASS),
                                          layer="features.12", contrast="features.17" if contrastive else None)
    assert got.shape == want.shape and _rel_err(got, want) < 1e-9
