"""The CAM family at full size: torchvision's ResNet50 (random weights and BatchNorm statistics)
against pytorch-grad-cam 1.5.7 at three layers, float32 on both sides (the small pairs of
test_cam_family.py check the same maps in float64, the small DenseNet among them).  DenseNet121
at full size passed the same test (≤ 2e-5; XGradCAM at norm5 1.3e-4 to 3.2e-4, its channel sums
nearly cancelling) and was left out for CI time (42 s of two busy workers).

All six methods and FullGrad come out of one compiled program: the public functions called
inside one ``jax.jit`` share the forward and backward pass (XLA merges the repeats)."""

import numpy as np
import pytest
import jax

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
pgc = pytest.importorskip("pytorch_grad_cam")

from jaxretina import explain, targets  # noqa: E402
from tests.anchor_pairs import nchw  # noqa: E402

CLASS = 2
METHODS = {"hires_cam": "HiResCAM", "grad_cam_elementwise": "GradCAMElementWise", "xgrad_cam": "XGradCAM",
           "layer_cam": "LayerCAM"}
EIGEN = ("eigen_cam", "eigen_grad_cam")


def _resnet():
    from tests.anchor_pairs import torchvision_resnet

    model, variables, ref = torchvision_resnet("resnet50", 5, "fullsize")
    modules = dict(ref.named_modules())
    return model, variables, ref, {n: modules[n] for n in ("layer1.2", "layer3.5", "layer4.2")}


def _ours(model, variables, x, layers):
    target = targets.class_logit(CLASS)

    @jax.jit
    def every_method(v, x):
        out = {}
        for method in METHODS:
            extra = {"eps": explain.PYTORCH_GRAD_CAM_XGRAD_EPS} if method == "xgrad_cam" else {}
            out[method] = getattr(explain, method)(model, v, x, target, layers=list(layers), normalize=True, **extra)
        out["full_grad"] = explain.full_grad(model, v, x, target, eps=explain.PYTORCH_GRAD_CAM_FULLGRAD_EPS)
        for method in EIGEN:   # the bare projections
            out[method] = getattr(explain, method)(model, v, x, target, layers=list(layers), relu=False, resize=False)
        return out

    return jax.tree.map(np.asarray, every_method(variables, jax.numpy.asarray(x)))


def _hooked(ref, module, x):
    """The layer's activation and the class logit's gradient there, (1, K, …) float32, by hooks."""
    seen = {}
    hook = module.register_forward_hook(lambda m, i, o: seen.update(a=o) or o.retain_grad())
    try:
        ref(nchw(x, torch.float32))[0, CLASS].backward()
    finally:
        hook.remove()
    return seen["a"].detach().numpy(), seen["a"].grad.numpy()


# Anchor: pytorch-grad-cam 1.5.7, one call per method and layer as its users call it (float32,
# ReLU, min–max, OpenCV resize, min–max); tolerance 1e-3 on maps in [0, 1] (float32 through
# 50 layers on both sides: measured ≤ 2e-5).  EigenCAM/EigenGradCAM: pytorch-grad-cam's
# get_2d_projection on the hooked float32 activations (and gradients), tolerance 1e-4 of the
# largest value up to the sign its SVD leaves free (jaxretina turns the largest magnitude
# positive; their ReLU after an arbitrary sign makes whole maps differ, so the bare projections
# are compared).  FullGrad (every Conv2d and BatchNorm2d bias; ε 1e-7): tolerance 1e-3 on [0, 1]
# (measured 4e-6).
@pytest.mark.fullsize
def test_cam_family_matches_pytorch_grad_cam_at_full_size():
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    model, variables, ref, layers = _resnet()
    x = np.random.default_rng(7).normal(size=(64, 64, 3)).astype(np.float32)
    want = {}   # PyTorch first: right after XLA has run, its CPU threads slow PyTorch 5×
    for method, cls in METHODS.items():
        for name, module in layers.items():
            with getattr(pgc, cls)(model=ref, target_layers=[module]) as cam:
                want[method, name] = cam(input_tensor=nchw(x, torch.float32), targets=[ClassifierOutputTarget(CLASS)])[0]
    for name, module in layers.items():
        a, g = _hooked(ref, module, x)
        for method, src in (("eigen_cam", a), ("eigen_grad_cam", a * g)):
            p = get_2d_projection(src)[0]
            want[method, name] = p * np.sign(p.ravel()[np.argmax(np.abs(p))])
    with pgc.FullGrad(model=ref, target_layers=[]) as cam:
        full_grad = cam(input_tensor=nchw(x, torch.float32), targets=[ClassifierOutputTarget(CLASS)])[0]
    ours = _ours(model, variables, x, layers)
    np.testing.assert_allclose(ours["full_grad"], full_grad, atol=1e-3, err_msg="full_grad")
    for (method, name), w in want.items():
        if method in METHODS:
            np.testing.assert_allclose(ours[method][name], w, atol=1e-3, err_msg=f"{method} {name}")
        else:
            err = np.abs(ours[method][name] - w).max() / np.abs(w).max()
            assert err <= 1e-4, (method, name, err)
