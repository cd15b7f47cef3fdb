"""Occlusion sensitivity against MONAI 1.6.1's ``OcclusionSensitivity``: the DS6 U-Net in 3-D
(width 4, 16³; float64 there, float32 here) and a 2-D toy, every occlusion mode it implements as
documented; ``mean_patch`` against the definition written here (MONAI 1.6.1 swaps its
``add, mul`` and multiplies the box by its mean instead of filling it with it)."""

import itertools

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from jaxretina import explain, targets
from jaxretina.models import spec

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

pytestmark = pytest.mark.filterwarnings("ignore:Using a non-tuple sequence:UserWarning")   # inside MONAI


def _monai(module, x, **options):
    from monai.visualize import OcclusionSensitivity

    occ = OcclusionSensitivity(module, verbose=False, activate=False, **options)
    return occ(torch.from_numpy(np.moveaxis(np.asarray(x), -1, 0)[None].copy()))[0][0, 0].numpy()


ROI = (slice(6, 10),) * 3   # the target: the logits summed over a central 4³ region


class _Score(torch.nn.Module):
    """The U-Net's main output reduced as the jaxretina target (B, 1)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, t):
        return self.net(t)[(slice(None), 0, *ROI)].flatten(1).sum(1, keepdim=True)


# Anchor: MONAI 1.6.1 OcclusionSensitivity (activate=False, n_batch 5) on the PyTorch DS6 U-Net with
# Conv3d layers and the converted jaxretina U-Net, float64 there and float32 here (XLA:CPU's
# float64 3-D convolutions are slow, see jaxretina.xla_defaults); mask 8, overlap 0.5 (27 boxes)
# and mask (6, 8, 5), overlap 0.6; gaussian and constant modes.  Tolerance 2e-5 of the map's
# largest value (measured 4e-7; in float64 on both sides it was 4e-8).
def test_volume_matches_monai():
    from tests.test_lrp_volume import _pair

    net, model, variables = _pair()
    x = np.random.default_rng(5).standard_normal((16, 16, 16, 1))
    roi = np.zeros((16, 16, 16), bool)
    roi[ROI] = True
    f = explain.model_fn(spec.for_explaining(model), variables, targets.segmentation_sum(mask=roi, probability=False))
    for mask, overlap, mode in ((8, 0.5, "gaussian"), ((6, 8, 5), 0.6, 0.0)):
        want = _monai(_Score(net), x, mask_size=mask, overlap=overlap, mode=mode, n_batch=5)
        got = np.asarray(explain.occlusion_sensitivity(f, jnp.asarray(x, jnp.float32), mask_size=mask,
                                                       overlap=overlap, mode=mode, chunk=9))
        assert np.abs(got - want).max() <= 2e-5 * np.abs(want).max(), (mask, mode)


def _toy(shape, channels=2, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(*shape, channels))
    x = rng.normal(size=(*shape, channels))

    class Net(torch.nn.Module):
        def forward(self, t):
            return torch.tanh((t.movedim(1, -1) * torch.from_numpy(w)).flatten(1).sum(1, keepdim=True) / 30)

    return (lambda z: jnp.tanh((z * w).sum() / 30)), Net(), x


# Anchor: MONAI 1.6.1 OcclusionSensitivity on a 2-D toy (float64 model), odd sizes so the last
# boxes are moved back from the border; tolerance 1e-6 of the range.
@pytest.mark.parametrize("mode", ["gaussian", 0.3, "mean_img"])
def test_image_modes_match_monai(mode):
    f, net, x = _toy((20, 17))
    want = _monai(net, x, mask_size=6, overlap=0.6, mode=mode, n_batch=7)
    with jax.enable_x64(True):
        got = np.asarray(explain.occlusion_sensitivity(f, jnp.asarray(x), mask_size=6, overlap=0.6, mode=mode))
    assert np.abs(got - want).max() <= 1e-6 * np.ptp(want)


def test_mean_patch_fills_each_box_with_its_mean():
    f, _, x = _toy((9, 11), seed=1)
    from jaxretina.explain.occlusion_sensitivity import box_starts

    starts = [box_starts(n, 4, 0.5) for n in (9, 11)]
    total, count = np.zeros((9, 11)), np.zeros((9, 11))
    with jax.enable_x64(True):
        for i, j in itertools.product(*starts):
            z = x.copy()
            z[i:i + 4, j:j + 4] = x[i:i + 4, j:j + 4].mean()
            total[i:i + 4, j:j + 4] += float(f(jnp.asarray(z)))
            count[i:i + 4, j:j + 4] += 1
        got = np.asarray(explain.occlusion_sensitivity(f, jnp.asarray(x), mask_size=4, overlap=0.5, mode="mean_patch"))
    np.testing.assert_allclose(got, total / count, rtol=1e-12, atol=1e-12)


def test_box_starts_and_errors():
    from jaxretina.explain.occlusion_sensitivity import box_starts

    assert box_starts(64, 16, 0.6).tolist() == [0, 6, 12, 18, 24, 30, 36, 42, 48]
    assert box_starts(20, 6, 0.6).tolist() == [0, 2, 4, 6, 8, 10, 12, 14]
    assert box_starts(17, 6, 0.6).tolist() == [0, 2, 4, 6, 8, 10, 11]   # the last moved back to the border
    f, _, x = _toy((9, 11))
    with pytest.raises(ValueError, match="mask_size must be positive integers"):
        explain.occlusion_sensitivity(f, x, mask_size=12)
    with pytest.raises(ValueError, match="overlap must be"):
        explain.occlusion_sensitivity(f, x, mask_size=4, overlap=1.0)
    with pytest.raises(ValueError, match="mode must be a number or one of"):
        explain.occlusion_sensitivity(f, x, mask_size=4, mode="blur")
