"""Extremal perturbation against TorchRay 1.0.0.2: its blur/fade pyramid and smooth-mask generator
from the same parameters, and whole optimisations (preserve and dual, two areas) on the same
weights (the small DenseNet pair) in float64; plus batching over areas and a 3-D run."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from jaxretina import explain
from jaxretina.explain.extremal import _Geometry, blur_pyramid, smooth_mask

torch = pytest.importorskip("torch")
TR = pytest.importorskip("torchray.attribution.extremal_perturbation")

from tests.anchor_pairs import CLASS, f64, nchw  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning")   # inside TorchRay's MaskGenerator


# Anchor: TorchRay 1.0.0.2 Perturbation (blur and fade pyramids: float32, its Gaussian kernel in
# float32) and MaskGenerator (weights from float32 index arithmetic; generate() on random
# parameters in float64); tolerance 1e-6 (measured 1.5e-7 and 1.3e-7).
@pytest.mark.parametrize("shape,step,sigma", [((45, 51), 7, 21.0), ((32, 29), 5, 9.0)])
def test_pyramid_and_mask_generator_match_torchray(shape, step, sigma):
    x = np.random.default_rng(0).normal(size=(*shape, 3)).astype(np.float32)
    for kind in ("blur", "fade"):
        want = TR.Perturbation(nchw(x, torch.float32), num_levels=6, max_blur=15, type=kind).pyramid.numpy()
        got = np.asarray(blur_pyramid(jnp.asarray(x), 6, 15.0, kind))
        np.testing.assert_allclose(got, want.transpose(0, 2, 3, 1), atol=1e-6)
    gen = TR.MaskGenerator(shape, step, sigma)
    geometry = _Geometry.of(shape, step, sigma)
    assert list(geometry.shape_in) == gen.shape_in and list(geometry.shape_out) == gen.shape_out
    np.testing.assert_allclose(geometry.weights(), gen.weight[0].numpy(), atol=1e-6)
    p = np.random.default_rng(1).uniform(size=(1, 1, *gen.shape_in))
    cropped, full = gen.generate(torch.from_numpy(p))
    with jax.enable_x64(True):
        mine, mine_full = smooth_mask(jnp.asarray(p[0, 0]), geometry, jnp.asarray(gen.weight[0].double().numpy()))
    np.testing.assert_allclose(mine, cropped[0, 0].numpy(), atol=1e-12)
    np.testing.assert_allclose(mine_full, full[0, 0].numpy(), atol=1e-12)


@pytest.fixture
def torchray_float64(monkeypatch):
    """TorchRay run in float64: default dtype float64 (its parameters and reference), its pyramid
    and mask weights given ours (the float32 ones are checked above), and its sort stable —
    TorchRay's ``sort`` leaves the order of tied mask values (the symmetric start has groups of
    up to 8) to the sort implementation, which decides where the area term's gradient goes."""
    state = {}

    class Pyramid(TR.Perturbation):
        def __init__(self, input, **kw):
            super().__init__(input.float(), **kw)
            self.pyramid = torch.from_numpy(state["pyramid"].transpose(0, 3, 1, 2).copy())

    class Masks(TR.MaskGenerator):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            self.weight = torch.from_numpy(state["weights"][None].copy())

    sort = torch.Tensor.sort
    monkeypatch.setattr(TR, "Perturbation", Pyramid)
    monkeypatch.setattr(TR, "MaskGenerator", Masks)
    monkeypatch.setattr(torch.Tensor, "sort", lambda self, dim=-1, descending=False: sort(
        self, dim=dim, descending=descending, stable=True))
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield state
    torch.set_default_dtype(old)


# Anchor: TorchRay 1.0.0.2 extremal_perturbation (blur, 8 levels, step 7, σ 21, jitter, its SGD)
# on the small DenseNet, float64 (see the fixture), areas 0.1 and 0.3 together, 50 iterations;
# the masks it returns and its history of rewards and area terms; tolerance 1e-9 (measured 6e-15
# on the masks and 2e-13 on the area terms through 300 iterations).
@pytest.mark.parametrize("variant", ["preserve", "dual"])
def test_optimisation_matches_torchray(variant, torch_dense, torchray_float64):
    model, variables, ref, x, target = torch_dense
    with jax.enable_x64(True):
        v, xj = f64(variables, x)
        torchray_float64["pyramid"] = np.asarray(blur_pyramid(xj, 8, 20.0))
        torchray_float64["weights"] = _Geometry.of(x.shape[:2], 7, 21.0).weights()
        ep = explain.extremal_perturbation(explain.model_fn(model, v, target), xj, areas=(0.1, 0.3), max_iter=50,
                                           variant=variant)
    masks, hist = TR.extremal_perturbation(ref.double(), nchw(x), CLASS, areas=[0.1, 0.3], max_iter=50,
                                           variant=variant)
    np.testing.assert_allclose(np.asarray(ep.masks), masks[:, 0].numpy(), atol=1e-9)
    np.testing.assert_allclose(np.asarray(ep.reward), hist[:, 0].numpy(), atol=1e-9)
    np.testing.assert_allclose(np.asarray(ep.area), hist[:, 1].numpy(), atol=1e-9, rtol=1e-9)


def test_areas_are_independent_and_errors(torch_dense):
    model, variables, _, x, target = torch_dense
    f = explain.model_fn(model, variables, target)
    both = explain.extremal_perturbation(f, x, areas=(0.1, 0.3), max_iter=6, variant="delete")
    one = explain.extremal_perturbation(f, x, areas=0.3, max_iter=6, variant="delete")
    np.testing.assert_allclose(both.masks[1], one.masks[0], atol=1e-5)
    np.testing.assert_allclose(both.reward[1], one.reward[0], rtol=1e-5)
    assert both.masks.shape == (2, *x.shape[:2]) and float(both.masks.min()) >= 0 and float(both.masks.max()) <= 1
    with pytest.raises(ValueError, match="areas must be fractions"):
        explain.extremal_perturbation(f, x, areas=(0.0,))
    with pytest.raises(ValueError, match="variant must be one of"):
        explain.extremal_perturbation(f, x, variant="keep")
    with pytest.raises(ValueError, match="max_iter must be an integer"):
        explain.extremal_perturbation(f, x, max_iter=0)


def test_volumes():
    """3-D: the mask generator's weights are symmetric in the axes, and a run on a volume keeps
    the mask in [0, 1] and raises the energy (reward + area term) well above its start."""
    geometry = _Geometry.of((9, 9, 9), 3, 4.0)
    size, out = 2 * geometry.radius + 1, geometry.shape_out
    w = geometry.weights().reshape(size, size, size, *out)   # (offset per axis…, pixel per axis…)
    np.testing.assert_allclose(w, w.transpose(1, 0, 2, 4, 3, 5), atol=1e-12)
    np.testing.assert_allclose(w, w.transpose(2, 1, 0, 5, 4, 3), atol=1e-12)
    rng = np.random.default_rng(2)
    kernel = jnp.asarray(rng.normal(size=(9, 9, 9, 2)), jnp.float32)
    f = lambda z: jnp.tanh((z * kernel).sum() / 30.0)  # noqa: E731
    x = jnp.asarray(rng.normal(size=(9, 9, 9, 2)), jnp.float32)
    ep = explain.extremal_perturbation(f, x, areas=(0.2,), max_iter=40, step=3, sigma=4.0, max_blur=3.0, jitter=False)
    assert ep.masks.shape == (1, 9, 9, 9) and 0 <= float(ep.masks.min()) and float(ep.masks.max()) <= 1
    energy = np.asarray(ep.reward[0] + ep.area[0])
    assert energy[-1] > energy[0] + 0.5 * abs(energy[0])   # the ascent works
