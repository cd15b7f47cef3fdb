"""The CAM family (HiResCAM, GradCAMElementWise, XGradCAM, LayerCAM, EigenCAM, EigenGradCAM)
against pytorch-grad-cam 1.5.7 on the same weights, float64 on both sides, several layers of a
small torchvision DenseNet, a ResNet-18 and a full-width DRIU (the pairs of
tests/anchor_pairs.py), plus the principal projection on a closed form."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp

torch = pytest.importorskip("torch")
pgc = pytest.importorskip("pytorch_grad_cam")

from jaxretina import explain  # noqa: E402
from tests.anchor_pairs import CLASS, f64, nchw  # noqa: E402

DENSE_LAYERS = {"conv0": "features.conv0", "denseblock1": "features.denseblock1",
                "transition1.conv": "features.transition1.conv", "norm5": "features.norm5"}
DRIU_LAYERS = ("conv1_2", "conv3_3", "upsample4", "new_score_weighting")
RESNET_LAYERS = ("layer1.1", "layer3.0", "layer4.1")
METHODS = {"hires_cam": "HiResCAM", "grad_cam_elementwise": "GradCAMElementWise", "xgrad_cam": "XGradCAM",
           "layer_cam": "LayerCAM"}




def _ours(model, variables, x, target, layers, methods=tuple(METHODS), **options):
    """``{method: {layer: map}}`` of ``methods`` from one compiled program (the public functions
    inside one ``jax.jit`` share their forward and backward pass); float64."""
    @jax.jit
    def every_method(v, z):
        return {method: getattr(explain, method)(model, v, z, target, layers=list(layers), **options,
                                                 **({"eps": explain.PYTORCH_GRAD_CAM_XGRAD_EPS}
                                                    if method == "xgrad_cam" else {}))
                for method in methods}

    with jax.enable_x64(True):
        return jax.tree.map(np.asarray, every_method(*f64(variables, x)))


def _theirs(method, ref, module, x, target):
    with getattr(pgc, METHODS[method])(model=ref, target_layers=[module]) as cam:
        return cam(input_tensor=nchw(x), targets=[target])[0]


# Anchor: pytorch-grad-cam 1.5.7, one layer per call as its users call it (ReLU, min–max, OpenCV
# bilinear resize, min–max; float32 output); tolerance 1e-5 on maps in [0, 1], as for Grad-CAM.
# HiResCAM, GradCAMElementWise, XGradCAM and LayerCAM, each of the three models' four in one
# program.
def test_gradient_cams_match_pytorch_grad_cam(torch_dense, torch_driu, torch_resnet):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, variables, ref, x, target = torch_dense
    ref = ref.double()
    modules = dict(ref.named_modules())
    ours = _ours(model, variables, x, target, DENSE_LAYERS, normalize=True)
    for method in METHODS:
        for name, path in DENSE_LAYERS.items():
            want = _theirs(method, ref, modules[path], x, ClassifierOutputTarget(CLASS))
            np.testing.assert_allclose(ours[method][name], want, atol=1e-5, err_msg=f"{method} densenet {name}")
    model, variables, ref, x, target = torch_driu
    ref = ref.double()
    ours = _ours(model, variables, x, target, DRIU_LAYERS, normalize=True)
    for method in METHODS:
        for name in DRIU_LAYERS:
            want = _theirs(method, ref, ref.tap_module(name), x, lambda out: torch.sigmoid(out).sum())
            np.testing.assert_allclose(ours[method][name], want, atol=1e-5, err_msg=f"{method} driu {name}")
    model, variables, ref, x, target = torch_resnet
    ref = ref.double()
    modules = dict(ref.named_modules())
    ours = _ours(model, variables, x, target, RESNET_LAYERS, normalize=True)
    for method in METHODS:
        for name in RESNET_LAYERS:
            want = _theirs(method, ref, modules[name], x, ClassifierOutputTarget(CLASS))
            np.testing.assert_allclose(ours[method][name], want, atol=1e-5, err_msg=f"{method} resnet {name}")


def _activations_and_gradients(ref, module, x, score):
    """The layer's activation and the score's gradient there, (1, K, …) float64 numpy, by hooks."""
    seen = {}
    hook = module.register_forward_hook(lambda m, i, o: seen.update(a=o) or o.retain_grad())
    try:
        score(ref(nchw(x))).backward()
    finally:
        hook.remove()
    return seen["a"].detach().numpy(), seen["a"].grad.numpy()


# Anchor: pytorch-grad-cam 1.5.7's get_2d_projection (its EigenCAM and EigenGradCAM) on the
# torch layer's activations (and gradients), float64 steps with a float32 output; tolerance
# 1e-6 of the largest value, up to the sign its SVD leaves free (jaxretina turns the largest
# magnitude positive).
def test_eigen_cams_match_pytorch_grad_cams_projection(torch_dense, torch_resnet):
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    methods = ("eigen_cam", "eigen_grad_cam")
    for pair, layers in ((torch_dense, DENSE_LAYERS), (torch_resnet, {n: n for n in RESNET_LAYERS})):
        model, variables, ref, x, target = pair
        ref = ref.double()
        modules = dict(ref.named_modules())
        ours = _ours(model, variables, x, target, layers, methods, relu=False, resize=False)
        for name, path in layers.items():
            a, g = _activations_and_gradients(ref, modules[path], x, lambda out: out[0, CLASS])
            for method in methods:
                src = a if method == "eigen_cam" else a * g
                want = get_2d_projection(src)[0]   # float64 steps, float32 output
                want = want * np.sign(want.ravel()[np.argmax(np.abs(want))])
                assert np.abs(ours[method][name] - want).max() <= 1e-6 * np.abs(want).max(), (method, name)


def test_principal_projection_of_a_rank_one_activation_is_its_centred_spatial_factor():
    rng = np.random.default_rng(0)
    for shape in ((6, 5), (2, 3)):   # more positions than channels, and fewer
        s, c = rng.normal(size=shape), rng.normal(size=8 if shape == (2, 3) else 3)
        with jax.enable_x64(True):
            proj = np.asarray(explain.principal_projection(jnp.asarray(s[..., None] * c)))
        centred = (s - s.mean()) * np.linalg.norm(c)
        centred = centred * np.sign(centred.ravel()[np.argmax(np.abs(centred))])
        np.testing.assert_allclose(proj, centred, rtol=1e-9, atol=1e-12)


# Anchor: pytorch-grad-cam 1.5.7 AblationCAM and ScoreCAM (its default batch sizes), one layer per
# call, float64 model, maps in [0, 1]; tolerance 1e-5 as for Grad-CAM for ScoreCAM.  AblationCAM:
# pytorch-grad-cam rounds the scores to float32 before (t − t_k) / t, where one channel of 16–64
# moves t by ~1e-4 relative, so its weights carry ~1e-3 relative rounding: tolerance 5e-4
# (measured 8.5e-5).  AblationCAM's layer is a pooled ReLU output, where pytorch-grad-cam's
# ablation value is 0, the paper's.  Few channels (16) keep the float64 runs short.
@pytest.mark.parametrize("method", ["ablation_cam", "score_cam"])
def test_perturbation_cams_match_pytorch_grad_cam(method, torch_dense, torch_driu):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    anchor = {"ablation_cam": pgc.AblationCAM, "score_cam": pgc.ScoreCAM}[method]
    cases = [(torch_dense, {"pool0": "features.pool0"}, ClassifierOutputTarget(CLASS)),
             (torch_driu, {"upsample2": None}, lambda out: torch.sigmoid(out).sum())]
    if method == "ablation_cam":   # DRIU's upsampled maps go negative: pytorch-grad-cam ablates with min − 1e7 there
        cases = cases[:1]
    for (model, variables, ref, x, target), layers, their_target in cases:
        ref = ref.double()
        modules = dict(ref.named_modules())
        with jax.enable_x64(True):
            ours = getattr(explain, method)(model, *f64(variables, x), target, layers=list(layers), normalize=True,
                                            chunk=32)
        for name, path in layers.items():
            module = modules[path] if path else ref.tap_module(name)
            with anchor(model=ref, target_layers=[module]) as cam:
                want = cam(input_tensor=nchw(x), targets=[their_target])[0]
            tol = 5e-4 if method == "ablation_cam" else 1e-5
            np.testing.assert_allclose(np.asarray(ours[name]), want, atol=tol, err_msg=f"{method} {name}")


def test_resize_align_corners_matches_torch():
    a = np.random.default_rng(0).normal(size=(3, 5, 2))
    want = torch.nn.UpsamplingBilinear2d(size=(7, 11))(torch.from_numpy(a.transpose(2, 0, 1)[None]))[0]
    with jax.enable_x64(True):
        got = explain.resize_align_corners(jnp.asarray(a), (7, 11, 2))
    np.testing.assert_allclose(np.asarray(got), want.numpy().transpose(1, 2, 0), rtol=1e-12, atol=1e-12)


# Anchor: the four gradient CAMs' definitions on 3-D activations (pytorch-grad-cam 1.5.7's own
# 3-D path fails, grad-cam #583), written here in float64 on the PyTorch DS6 U-Net with Conv3d
# layers (width 4, 16³): hooks give each block's activation A and gradient G of the summed
# sigmoid output, the map (HiResCAM Σ A⊙G, element-wise Σ relu(A⊙G), XGradCAM with ε = 1e-7,
# LayerCAM Σ relu(G)⊙A) is ReLU'd, trilinearly resized (F.interpolate, align_corners=False) and
# min–max scaled; tolerance 1e-9.
def test_gradient_cams_on_volumes_match_a_float64_reference():
    from jaxretina import targets
    from jaxretina.models import spec
    from tests.reference.ds6_torch import MainOutput
    from tests.test_lrp_volume import _pair

    net, model, variables = _pair()
    layers = ("Conv2", "Up_conv3", "Up_conv2")
    x = np.random.default_rng(6).standard_normal((16, 16, 16, 1))
    seen = {}
    hooks = [getattr(net.net, n).register_forward_hook(
        lambda m, i, o, n=n: seen.update({n: o}) or o.retain_grad()) for n in layers]
    try:
        torch.sigmoid(net(torch.from_numpy(x.transpose(3, 0, 1, 2)[None].copy()))).sum().backward()
    finally:
        for h in hooks:
            h.remove()
    assert isinstance(net, MainOutput)
    maps = {"hires_cam": lambda a, g: (a * g).sum(1),
            "grad_cam_elementwise": lambda a, g: torch.relu(a * g).sum(1),
            "xgrad_cam": lambda a, g: (((g * a).sum((2, 3, 4)) / (a.sum((2, 3, 4)) + 1e-7))[..., None, None, None]
                                       * a).sum(1),
            "layer_cam": lambda a, g: (torch.relu(g) * a).sum(1)}
    checked = 0
    every = _ours(spec.for_explaining(model), variables, x, targets.segmentation_sum(), layers, tuple(maps),
                  normalize=True)
    for method, cam in maps.items():
        for name in layers:
            a, g = seen[name].detach(), seen[name].grad
            m = torch.nn.functional.interpolate(torch.relu(cam(a, g))[:, None], size=(16, 16, 16),
                                                mode="trilinear", align_corners=False)[0, 0]
            span = m.max() - m.min()
            want = ((m - m.min()) / span if span > 0 else torch.zeros_like(m)).numpy()   # constant → 0
            checked += span > 0
            np.testing.assert_allclose(every[method][name], want, atol=1e-9, err_msg=f"{method} {name}")
    assert checked >= 10   # of the 12 maps, at most two are all zero after the ReLU
