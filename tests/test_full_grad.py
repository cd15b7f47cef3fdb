"""FullGrad: pytorch-grad-cam 1.5.7's ``FullGrad`` on the same weights (the small DenseNet and the
full-width DRIU pairs, float64), a float64 reference written here for the 3-D U-Net (which
pytorch-grad-cam's FullGrad does not reach: it takes Conv2d and BatchNorm2d only), and the
completeness of the bias decomposition behind it."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from jaxretina import explain, propagation, taps, targets
from jaxretina.explain.core import OneExample

torch = pytest.importorskip("torch")
pgc = pytest.importorskip("pytorch_grad_cam")

from tests.anchor_pairs import CLASS, f64, nchw  # noqa: E402


# Anchor: pytorch-grad-cam 1.5.7 FullGrad with its ε = 1e-7 (float32 output, maps in [0, 1]);
# tolerance 1e-5 (measured 5e-7 DenseNet, 2e-6 DRIU).  pytorch-grad-cam takes the biases of
# Conv2d and BatchNorm2d modules only, so DRIU's ConvTranspose2d upsamplers are left out on our
# side by layer patterns (by default every bias counts, as the method defines).
def test_matches_pytorch_grad_cam(torch_dense, torch_driu, torch_resnet):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    for (model, variables, ref, x, target), theirs, layers in (
            (torch_dense, ClassifierOutputTarget(CLASS), "all"), (torch_resnet, ClassifierOutputTarget(CLASS), "all"),
            (torch_driu, lambda out: torch.sigmoid(out).sum(), ["conv*", "new_score_weighting"])):
        with pgc.FullGrad(model=ref.double(), target_layers=[]) as cam:
            want = cam(input_tensor=nchw(x), targets=[theirs])[0]
        with jax.enable_x64(True):
            got = explain.full_grad(model, *f64(variables, x), target, layers=layers,
                                    eps=explain.PYTORCH_GRAD_CAM_FULLGRAD_EPS)
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)


# Property: for a network piecewise linear in its input (ReLU, batch norm, pooling, linear layers),
# f(x) = Σ x ⊙ ∂f/∂x + Σ_layers Σ b ⊙ ∂f/∂z — the decomposition FullGrad displays; it holds only if
# every bias is found with its offset and its gradient.  float64; tolerance 1e-10 relative.
def test_bias_gradients_complete_the_input_gradient(torch_dense):
    model, variables, _, x, target = torch_dense
    with jax.enable_x64(True):
        v, xj = f64(variables, x)
        f = lambda p, z: target(OneExample(model, "t")(p, z))  # noqa: E731
        value, gx, found = propagation.site_gradients(f, taps.params_only(v), xj,
                                                      lambda program, s: s.kind in ("conv", "dense", "affine"))
        dot = jax.jit(lambda pairs: sum(jnp.sum(b * g) for b, g in pairs))   # one program, not one per site
        biases = float(dot([(b, g) for _, b, g in found]))
        total = float(dot([(xj, gx)])) + biases
    assert {s.kind for s, _, _ in found} == {"conv", "dense", "affine"}
    assert abs(total - float(value)) <= 1e-10 * abs(float(value))
    assert abs(biases) > 1e-3 * abs(float(value))   # the biases matter here


def _trilinear(a, size):
    return torch.nn.functional.interpolate(a, size=size, mode="trilinear", align_corners=False)


def _min_max(a, dims):
    a = a - a.amin(dim=dims, keepdim=True)
    top = a.amax(dim=dims, keepdim=True)
    return torch.where(top > 0, a / torch.where(top > 0, top, torch.ones_like(top)), torch.zeros_like(a))


# Anchor: FullGrad's definition on the PyTorch U-Net with Conv3d and BatchNorm3d (width 4, 16³,
# float64), written here: hooks take each biased layer's output gradient, |b ⊙ g| is min–max
# scaled per channel, trilinearly resized (F.interpolate, align_corners=False) and summed with the
# per-channel scaled |x ⊙ ∂f/∂x|, and the total min–max scaled; tolerance 1e-9.
def test_volume_matches_a_float64_reference():
    from tests.test_lrp_volume import _pair

    net, model, variables = _pair()
    x = torch.from_numpy(np.random.default_rng(4).standard_normal((1, 1, 16, 16, 16))).requires_grad_()
    layers, grads = [], []
    for m in net.modules():
        if isinstance(m, (torch.nn.Conv3d, torch.nn.BatchNorm3d)) and m.bias is not None:
            layers.append(m)
            m.register_full_backward_hook(lambda mod, gin, gout: grads.append((mod, gout[0])))
    torch.sigmoid(net(x)).sum().backward()
    grads = dict(grads)
    size = tuple(x.shape[2:])
    total = _min_max((x * x.grad).abs(), (2, 3, 4)).sum(1, keepdim=True)
    layers = [m for m in layers if m in grads]   # the deep-supervision heads do not reach the main output
    for m in layers:
        if isinstance(m, torch.nn.BatchNorm3d):
            bias = m.bias - m.running_mean * m.weight / torch.sqrt(m.running_var + m.eps)
        else:
            bias = m.bias
        part = _min_max((bias[None, :, None, None, None] * grads[m]).abs(), (2, 3, 4)).sum(1, keepdim=True)
        total = total + _trilinear(part, size)
    want = _min_max(total, (2, 3, 4))[0, 0].detach().numpy()
    with jax.enable_x64(True):
        v64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
        got = explain.full_grad(model, v64, jnp.asarray(x.detach()[0].permute(1, 2, 3, 0).numpy()),
                                targets.segmentation_sum())
    assert len(layers) == 2 * 22 + 1   # 22 convolution + batch norm pairs (10 down, 12 up), the output convolution
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-9)


def test_batched_equals_per_example_and_errors(torch_dense):
    model, variables, _, x, target = torch_dense
    xs = jnp.stack([jnp.asarray(x), jnp.asarray(x[::-1])])
    batched = jax.vmap(lambda xi: explain.full_grad(model, variables, xi, target))(xs)
    for i in range(2):
        np.testing.assert_allclose(batched[i], explain.full_grad(model, variables, xs[i], target), atol=1e-6)
    with pytest.raises(ValueError, match="eps must be"):
        explain.full_grad(model, variables, x, target, eps=-1.0)
    with pytest.raises(ValueError, match="layers must be"):
        explain.full_grad(model, variables, x, target, layers=[])
    with pytest.raises(ValueError, match="expected one example"):
        explain.full_grad(model, variables, xs, target)
