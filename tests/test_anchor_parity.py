"""Parity with the libraries users check against — Captum (IG per rule, guided backprop,
deconvnet) and pytorch-grad-cam (Grad-CAM per layer) — on small models with random weights.

Both sides run the same weights: a small torchvision DenseNet (random BatchNorm statistics,
every ReLU an ``nn.ReLU`` module so Captum's rules reach it) converted with
``converters.densenet``, and a full-width DRIU written as a ``.caffemodel`` and as the PyTorch
``DRIUModule`` of tests/reference.  Tolerances are next to each check.

Every comparison runs in float64 on both sides (``jax.enable_x64``; pytorch-grad-cam rounds
its final maps to float32):
gradients of ReLU/max-pool networks jump where a pre-activation crosses zero, and float32
rounding moves those crossings differently in two frameworks (on the DRIU input here, one of
IG's six points has a float32 gradient 3 % away from the float64 one in JAX, while the float64
gradients of JAX and PyTorch agree to 2e-15).  Float64 compares the methods, not the rounding.
"""

import numpy as np
import pytest
import jax
import jax.numpy as jnp

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
captum_attr = pytest.importorskip("captum.attr")
pgc = pytest.importorskip("pytorch_grad_cam")

from jaxretina import explain  # noqa: E402
from tests.anchor_pairs import CLASS, f64, nchw  # noqa: E402


class _SumProbability(torch.nn.Module):
    """DRIU's Σ vessel probability per example, (N,): jaxretina's ``segmentation_sum()``."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.sigmoid(self.net(x)).sum(dim=(1, 2, 3))




def _hwc(t):
    return t.detach().double().numpy()[0].transpose(1, 2, 0)


def _captum_forward(name, ref):
    return (lambda inp: ref(inp)[:, CLASS]) if name == "dense" else _SumProbability(ref)


# Captum's method for each jaxretina rule (Captum's trapezoid weights sum to (n-1)/n: our
# "captum_trapezoid" reproduces them; our "riemann_trapezoid" is the exact trapezoid rule).
RULES = {"riemann_left": "riemann_left", "riemann_right": "riemann_right", "riemann_middle": "riemann_middle",
         "captum_trapezoid": "riemann_trapezoid", "gausslegendre": "gausslegendre"}


# Every rule on the small DenseNet; on DRIU (a 12 s float64 compile per rule) the default
# rule and Captum's trapezoid.
IG_CASES = [("dense", r) for r in sorted(RULES)] + [("driu", "gausslegendre"), ("driu", "captum_trapezoid")]


@pytest.mark.parametrize("name,rule", IG_CASES)
def test_integrated_gradients_match_captum(name, rule, request):
    model, variables, ref, x, target = request.getfixturevalue(f"torch_{name}")
    baseline = np.random.default_rng(4).normal(0, 0.3, size=x.shape).astype(np.float32)
    steps = 6
    ig = captum_attr.IntegratedGradients(_captum_forward(name, ref.double()))
    want, want_delta = ig.attribute(nchw(x), baselines=nchw(baseline), n_steps=steps, method=RULES[rule],
                                    return_convergence_delta=True)
    with jax.enable_x64(True):
        v64, x64 = f64(variables, x)
        got = explain.integrated_gradients(explain.model_fn(model, v64, target), x64,
                                           baseline=jnp.asarray(baseline, jnp.float64), steps=steps, rule=rule,
                                           chunk="all")
        values, delta = np.asarray(got.values), float(got.delta)
    assert values.dtype == np.float64
    want = _hwc(want)
    # float64 on both sides, but Captum makes its alphas and step sizes with float32
    # torch.linspace (e.g. 1/6 -> 0.16666665673): ~1e-8 relative node errors, so 1e-7 of the
    # largest value, and 1e-6 of |F(x) - F(baseline)| for the completeness errors.
    np.testing.assert_allclose(values, want, atol=1e-7 * np.abs(want).max())
    scale = float(np.abs(want.sum() - float(want_delta)))  # |F(x) - F(baseline)|
    assert abs(delta - float(want_delta)) <= 1e-6 * scale


def _grad_cam_reference(ref, module, x, target):
    """pytorch-grad-cam as its users call it: one layer per call, ReLU -> min-max -> OpenCV
    bilinear resize to the input -> min-max; computed in float64, returned in float32."""
    with pgc.GradCAM(model=ref, target_layers=[module]) as cam:
        return cam(input_tensor=nchw(x, torch.float64), targets=[target])[0]


def _our_cams(model, variables, x, target, layers="all"):
    with jax.enable_x64(True):
        cams = explain.grad_cam(model, *f64(variables, x), target, layers=layers, relu=True, resize=True,
                                normalize=True)
        return {k: np.asarray(v) for k, v in cams.items()}


DENSE_LAYERS = {"conv0": "features.conv0", "pool0": "features.pool0", "denseblock1": "features.denseblock1",
                "transition1.conv": "features.transition1.conv", "transition1": "features.transition1",
                "denseblock2.denselayer3.conv2": "features.denseblock2.denselayer3.conv2",
                "denseblock2": "features.denseblock2", "norm5": "features.norm5"}


def test_grad_cam_per_layer_matches_pytorch_grad_cam_densenet(torch_dense):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, variables, ref, x, target = torch_dense
    ref = ref.double()
    modules = dict(ref.named_modules())
    ours = _our_cams(model, variables, x, target, list(DENSE_LAYERS))
    for name, path in DENSE_LAYERS.items():
        want = _grad_cam_reference(ref, modules[path], x, ClassifierOutputTarget(CLASS))
        # maps in [0, 1]: pytorch-grad-cam's float32 output and OpenCV's float32 resize (which
        # agrees with jax.image.resize "linear" to 5e-7) bound the difference.
        np.testing.assert_allclose(ours[name], want, atol=1e-5, err_msg=name)


def test_grad_cam_plus_plus_per_layer_matches_pytorch_grad_cam_densenet(torch_dense):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, variables, ref, x, target = torch_dense
    ref = ref.double()
    modules = dict(ref.named_modules())
    with jax.enable_x64(True):
        ours = explain.grad_cam_plus_plus(model, *f64(variables, x), target, layers=list(DENSE_LAYERS), relu=True,
                                          resize=True, normalize=True, eps=explain.PYTORCH_GRAD_CAM_EPS)
    for name, path in DENSE_LAYERS.items():
        with pgc.GradCAMPlusPlus(model=ref, target_layers=[modules[path]]) as cam:
            want = cam(input_tensor=nchw(x, torch.float64), targets=[ClassifierOutputTarget(CLASS)])[0]
        # pytorch-grad-cam's convention (ε = 1e-6 in the denominator); the same float32 output
        # and OpenCV resize bound the difference as for Grad-CAM
        np.testing.assert_allclose(np.asarray(ours[name]), want, atol=1e-5, err_msg=name)


def test_grad_cam_every_layer_matches_pytorch_grad_cam_driu(torch_driu):
    model, variables, ref, x, target = torch_driu
    ref = ref.double()
    ours = _our_cams(model, variables, x, target)
    assert len(ours) == 21
    seg_target = lambda out: torch.sigmoid(out).sum()  # noqa: E731 - pytorch-grad-cam's target protocol
    for name, cam in ours.items():
        want = _grad_cam_reference(ref, ref.tap_module(name), x, seg_target)
        np.testing.assert_allclose(cam, want, atol=1e-5, err_msg=name)  # as for DenseNet


@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU activations")  # Captum's notice
@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet"])
@pytest.mark.parametrize("name", ["dense", "driu"])
def test_relu_rules_match_captum(name, method, request):
    model, variables, ref, x, target = request.getfixturevalue(f"torch_{name}")
    anchor = {"guided_backprop": captum_attr.GuidedBackprop, "deconvnet": captum_attr.Deconvolution}[method]
    ref = ref.double()
    inp = nchw(x).requires_grad_(True)
    if name == "dense":
        want = anchor(ref).attribute(inp, target=CLASS)
    else:
        want = anchor(_SumProbability(ref)).attribute(inp)
    with jax.enable_x64(True):
        got = np.asarray(getattr(explain, method)(model, *f64(variables, x), target))
    want = _hwc(want)
    assert np.abs(want).max() > 0 and got.dtype == np.float64
    # float64 on both sides: 1e-9 of the largest value
    np.testing.assert_allclose(got, want, atol=1e-9 * np.abs(want).max())
    # and the rule matters: the plain gradient differs
    plain = np.asarray(explain.saliency(explain.model_fn(model, variables, target), jnp.asarray(x), abs=False))
    assert np.abs(plain - want).max() > 1e-2 * np.abs(want).max()
