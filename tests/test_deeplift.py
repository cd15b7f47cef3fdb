"""DeepLIFT (rescale) and DeepLiftShap through the rule mechanism: parity with Captum 0.9.0 on
a conv–ReLU–pool–dense network with the same weights (float64, an odd 9×7 input), summation to
delta, batched == per example."""

from __future__ import annotations

import numpy as np
import pytest
import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxretina import explain, targets

torch = pytest.importorskip("torch")


class FlaxNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Conv(6, (3, 3), padding=1, name="c1")(x))
        h = nn.relu(nn.Conv(8, (3, 3), padding=1, name="c2")(h))
        return nn.Dense(3, name="fc2")(nn.relu(nn.Dense(4, name="fc")(h.mean(axis=(1, 2)))))


def torch_net():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.r1 = torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU()
            self.c2, self.r2 = torch.nn.Conv2d(6, 8, 3, padding=1), torch.nn.ReLU()
            self.pool, self.fc, self.r3, self.fc2 = torch.nn.AdaptiveAvgPool2d(1), torch.nn.Linear(8, 4), \
                torch.nn.ReLU(), torch.nn.Linear(4, 3)

        def forward(self, x):
            h = self.r2(self.c2(self.r1(self.c1(x))))
            return self.fc2(self.r3(self.fc(self.pool(h).flatten(1))))

    torch.manual_seed(0)
    return Net().double().eval()


def flax_variables(net):
    """The torch network's weights as ``FlaxNet``'s variables (kernels HWIO / (in, out))."""
    conv = lambda m: {"kernel": m.weight.detach().numpy().transpose(2, 3, 1, 0), "bias": m.bias.detach().numpy()}  # noqa: E731
    dense = lambda m: {"kernel": m.weight.detach().numpy().T, "bias": m.bias.detach().numpy()}  # noqa: E731
    return {"params": {"c1": conv(net.c1), "c2": conv(net.c2), "fc": dense(net.fc), "fc2": dense(net.fc2)}}


def net_and_inputs(seed, references, scale):
    """``(torch net, its Flax variables, an input (1, 3, 9, 7), references (K, 3, 9, 7) · scale)``."""
    net = torch_net()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, 9, 7, dtype=torch.float64, generator=g)
    return net, flax_variables(net), x, torch.randn(references, 3, 9, 7, dtype=torch.float64, generator=g) * scale


@pytest.fixture(scope="module")
def pair():
    return net_and_inputs(1, 5, 0.5)


def nhwc(t):
    return t.permute(0, 2, 3, 1).detach().numpy()


# Anchor: Captum 0.9.0 DeepLift / DeepLiftShap (rescale), target class 1; tolerance 1e-12
# (measured 1e-15).
@pytest.mark.filterwarnings("ignore:Setting forward, backward hooks:UserWarning")
def test_deeplift_and_deeplift_shap_match_captum(pair):
    from captum.attr import DeepLift, DeepLiftShap

    net, variables, x, refs = pair
    want = nhwc(DeepLift(net).attribute(x.clone().requires_grad_(), baselines=refs[:1], target=1))[0]
    want_shap = nhwc(DeepLiftShap(net).attribute(x.clone().requires_grad_(), baselines=refs, target=1))[0]
    with jax.enable_x64(True):
        v = jax.tree.map(jnp.asarray, variables)
        xj, rj = jnp.asarray(nhwc(x)[0]), jnp.asarray(nhwc(refs))
        got = explain.deeplift(FlaxNet(), v, xj, targets.class_logit(1), baseline=rj[0])
        got_shap = explain.deeplift_shap(FlaxNet(), v, xj, targets.class_logit(1), rj, chunk=2)
        all_at_once = explain.deeplift_shap(FlaxNet(), v, xj, targets.class_logit(1), rj, chunk="all")
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
    np.testing.assert_allclose(got_shap, want_shap, rtol=1e-12, atol=1e-12 * np.abs(want_shap).max())
    np.testing.assert_allclose(all_at_once, got_shap, rtol=1e-12, atol=1e-15)


def test_deeplift_sums_to_the_difference_in_score_and_batches(pair):
    _, variables, x, refs = pair
    with jax.enable_x64(True):
        v = jax.tree.map(jnp.asarray, variables)
        xs = jnp.asarray(np.concatenate([nhwc(x), nhwc(refs)[1:3]]))
        for c in range(3):
            target = targets.class_logit(c)
            for xi in xs:
                d = explain.deeplift(FlaxNet(), v, xi, target, baseline=0.25)
                delta = FlaxNet().apply(v, xi[None])[0, c] - FlaxNet().apply(v, jnp.full_like(xi, 0.25)[None])[0, c]
                assert abs(float(d.sum() - delta)) < 1e-10 * max(1.0, abs(float(delta)))
        one = jnp.stack([explain.deeplift(FlaxNet(), v, xi, target) for xi in xs])
        both = jax.vmap(lambda xi: explain.deeplift(FlaxNet(), v, xi, target))(xs)
        np.testing.assert_allclose(both, one, rtol=1e-12, atol=1e-15)


def test_deeplift_errors(pair):
    _, variables, x, refs = pair
    xj = jnp.asarray(nhwc(x)[0], jnp.float32)
    with pytest.raises(ValueError, match=r"baselines must be \(K, \*x.shape\)"):
        explain.deeplift_shap(FlaxNet(), variables, xj, targets.class_logit(0), jnp.zeros((9, 7, 3)))
    with pytest.raises(ValueError, match="does not broadcast"):
        explain.deeplift(FlaxNet(), variables, xj, targets.class_logit(0), baseline=jnp.zeros((2, 2)))


class _PooledFlax(nn.Module):
    """conv–ReLU–conv–max pool 2×2–conv–ReLU(–max pool 3×3/2)–mean–dense."""

    overlapping: bool = False   # the 3×3/2 pool after the last ReLU

    @nn.compact
    def __call__(self, x):
        from jaxretina.models.layers import max_pool_2x2, max_pool_3x3_s2

        h = nn.Conv(5, (3, 3), padding=1, name="c2")(nn.relu(nn.Conv(6, (3, 3), padding=1, name="c1")(x)))
        h = nn.relu(nn.Conv(8, (3, 3), padding=1, name="c3")(max_pool_2x2(h, ceil_mode=False)))
        h = max_pool_3x3_s2(h) if self.overlapping else h
        return nn.Dense(3, name="fc")(h.mean(axis=(1, 2)))


def _pooled_torch():
    torch.manual_seed(3)
    conv = torch.nn.Conv2d
    return torch.nn.Sequential(conv(3, 6, 3, padding=1), torch.nn.ReLU(), conv(6, 5, 3, padding=1),
                               torch.nn.MaxPool2d(2, 2), conv(5, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 3)).double().eval()


def _pooled_variables(net):
    conv = lambda m: {"kernel": m.weight.detach().numpy().transpose(2, 3, 1, 0), "bias": m.bias.detach().numpy()}  # noqa: E731
    return {"params": {"c1": conv(net[0]), "c2": conv(net[2]), "c3": conv(net[4]),
                       "fc": {"kernel": net[8].weight.detach().numpy().T, "bias": net[8].bias.detach().numpy()}}}


# Anchor: Captum 0.9.0 DeepLift and DeepLiftShap with its max-pool rule (a 2×2 pool between two
# convolutions, an odd 11×9 input, float64), target class 2; tolerance 1e-12 of the largest
# value.  Captum's rule breaks its own summation to delta where a pool's windows overlap (its
# unpooling assigns instead of adding) or a ReLU is next to the pool (measured convergence
# deltas 0.02–0.30 on small nets; captum #1104, #1276): there the check is summation to delta.
@pytest.mark.filterwarnings("ignore:Setting forward, backward hooks:UserWarning")
def test_deeplift_max_pool_rule_matches_captum_and_sums_to_delta():
    from captum.attr import DeepLift, DeepLiftShap

    from jaxretina import propagation as P

    net = _pooled_torch()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 3, 11, 9, dtype=torch.float64, generator=g)
    refs = torch.randn(3, 3, 11, 9, dtype=torch.float64, generator=g) * 0.7
    want = nhwc(DeepLift(net).attribute(x.clone().requires_grad_(), baselines=refs[:1], target=2))[0]
    want_shap = nhwc(DeepLiftShap(net).attribute(x.clone().requires_grad_(), baselines=refs, target=2))[0]
    target = targets.class_logit(2)
    with jax.enable_x64(True):
        v = jax.tree.map(jnp.asarray, _pooled_variables(net))
        xj, rj = jnp.asarray(nhwc(x)[0]), jnp.asarray(nhwc(refs))
        got = explain.deeplift(_PooledFlax(), v, xj, target, baseline=rj[0])
        got_shap = explain.deeplift_shap(_PooledFlax(), v, xj, target, rj)
        rescale_only = P.Composite((("activation", P.Rescale()),), merge=False)
        g = P.with_rules(lambda vv, z: _PooledFlax().apply(vv, z[None])[0, 2], rescale_only.choose, reference=True)
        plain = (xj - rj[0]) * jax.grad(lambda z: g(v, z, rj[0]))(xj)
        hard = _PooledFlax(overlapping=True)
        assert [s.kind for s in P.layer_sites(hard, v, xj)].count("maxpool") == 2
        for r in rj:
            d = explain.deeplift(hard, v, xj, target, baseline=r)
            delta = hard.apply(v, xj[None])[0, 2] - hard.apply(v, r[None])[0, 2]
            assert abs(float(d.sum() - delta)) < 1e-10 * max(1.0, abs(float(delta)))   # summation to delta
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
    np.testing.assert_allclose(got_shap, want_shap, rtol=1e-12, atol=1e-12 * np.abs(want_shap).max())
    assert np.abs(np.asarray(plain) - want).max() > 1e-3 * np.abs(want).max()   # the rule matters here
