"""LRP on the DS6 3-D U-Net: every 3-D convolution — written by :func:`conv3d` as padding,
depth slices and 2-D convolutions, stacked or summed — is one ``conv`` site, so the rules act
on the 3-D convolution itself; parity with zennit 0.5.1 on a PyTorch reference with ``Conv3d``."""

from __future__ import annotations

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from jaxretina import explain, propagation as P, targets
from jaxretina.models import layers3d

torch = pytest.importorskip("torch")
pytest.importorskip("zennit")

from converters import unet3d  # noqa: E402
from tests.reference.densenet_torch import randomize  # noqa: E402
from tests.reference.ds6_torch import MainOutput, UNetDeepSup  # noqa: E402


def _pair():
    """The torch U-Net (width 4, float64, BatchNorm eps 0: zennit's merge leaves an identity
    batch norm dividing by sqrt(1 + eps)) and the same network in jaxretina (its batch norms
    add 1e-5 to the variance: the converted variances are 1e-5 smaller)."""
    torch.manual_seed(0)
    net = randomize(UNetDeepSup(4), seed=1, mean_std=0.2, bias_std=0.1).double().eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.eps = 0.0
    # the converter stores float32: round once so both sides hold the same numbers
    net.load_state_dict({k: (v.float().double() if v.is_floating_point() else v) for k, v in net.state_dict().items()})
    model, variables, _ = unet3d.from_state_dict({k: v.numpy() for k, v in net.state_dict().items()}, "t")
    stats = jax.tree_util.tree_map_with_path(
        lambda path, a: np.asarray(a, np.float64) - 1e-5 if getattr(path[-1], "key", None) == "var" else a,
        variables["batch_stats"])
    return MainOutput(net), model, {**variables, "batch_stats": stats}


# Anchor: zennit 0.5.1 EpsilonPlusFlat with SequentialMergeBatchNorm on a PyTorch U-Net with
# Conv3d layers (width 4, 16³, float64); tolerance 1e-9 of the largest relevance.  Depth taps are
# summed above 8 input channels here (stacked below), so both ways of computing a 3-D
# convolution meet the rules.
def test_unet3d_epsilon_plus_flat_matches_zennit(monkeypatch):
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonPlusFlat

    monkeypatch.setattr(layers3d, "STACK_MAX_CHANNELS", 8)
    net, model, variables = _pair()
    x = torch.from_numpy(np.random.default_rng(3).standard_normal((1, 1, 16, 16, 16)))
    with Gradient(model=net, composite=EpsilonPlusFlat(canonizers=[SequentialMergeBatchNorm()])) as attributor:
        _, rel = attributor(x, lambda o: o)   # relevance starts at the logits, as jaxretina
    want = rel[0].permute(1, 2, 3, 0).detach().numpy()
    kinds = [s.kind for s in P.layer_sites(model, variables, jnp.asarray(want))]
    assert kinds.count("conv") == 27 and "sum" not in kinds and "affine" not in kinds
    with jax.enable_x64(True):
        v64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables)
        got = explain.lrp(model, v64, jnp.asarray(x[0].permute(1, 2, 3, 0).numpy()),
                          targets.segmentation_sum(probability=False), composite="epsilon_plus_flat")
    got = np.asarray(got)
    assert got.shape == want.shape
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-9
