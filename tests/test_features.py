"""Seed 004: deconvnet reconstructions == an explicit unpool / rectify / transposed-conv network
(even kernels, max and average pooling), dead filters, activation maps and their mosaic."""

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxretina import explain, taps, viz
from jaxretina.models.layers import avg_pool_2x2, max_pool_2x2
from jaxretina.taps import TapPoints


class SmallNet(nn.Module):
    """conv 4×4 (even, asymmetric padding) → ReLU → max pool → conv 2×2 (even) → ReLU → avg pool
    → conv 3×3 → ReLU → mean."""

    act: Callable = nn.relu

    @nn.compact
    def __call__(self, x, train=False):
        tap = TapPoints(name="taps")
        h = tap("c1", self.act(nn.Conv(4, (4, 4), padding=((1, 2), (1, 2)), name="c1")(x)))
        h = tap("p1", max_pool_2x2(h, ceil_mode=False))
        h = tap("c2", self.act(nn.Conv(5, (2, 2), padding="VALID", name="c2")(h)))
        h = tap("p2", avg_pool_2x2(h))
        h = tap("c3", self.act(nn.Conv(3, (3, 3), padding=((1, 1), (1, 1)), name="c3")(h)))
        return h.mean((1, 2))


# ---- the explicit deconvnet, NumPy loops: forward with recorded switches, then the reverse net ----

def _conv(x, k, b, pad):                        # correlation, x (H, W, Ci), k (kh, kw, Ci, Co)
    (pt, pb), (pl, pr) = pad
    xp = np.pad(x, ((pt, pb), (pl, pr), (0, 0)))
    kh, kw = k.shape[:2]
    ho, wo = xp.shape[0] - kh + 1, xp.shape[1] - kw + 1
    out = np.zeros((ho, wo, k.shape[3]))
    for i in range(ho):
        for j in range(wo):
            out[i, j] = np.tensordot(xp[i:i + kh, j:j + kw], k, axes=3) + b
    return out


def _conv_transposed(y, k, pad, in_shape):     # scatter each output back through its kernel window
    (pt, pb), (pl, pr) = pad
    kh, kw = k.shape[:2]
    xp = np.zeros((in_shape[0] + pt + pb, in_shape[1] + pl + pr, k.shape[2]))
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            xp[i:i + kh, j:j + kw] += np.tensordot(k, y[i, j], axes=([3], [0]))
    return xp[pt:pt + in_shape[0], pl:pl + in_shape[1]]


def _maxpool(x):                                # 2×2 floor; switches = row-major first maximum
    h, w = x.shape[0] // 2, x.shape[1] // 2
    out, switch = np.zeros((h, w, x.shape[2])), np.zeros((h, w, x.shape[2]), int)
    for i in range(h):
        for j in range(w):
            win = x[2 * i:2 * i + 2, 2 * j:2 * j + 2].reshape(4, -1)
            switch[i, j] = win.argmax(0)
            out[i, j] = win.max(0)
    return out, switch


def _unpool(y, switch, in_shape):
    x = np.zeros(in_shape)
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            for c in range(y.shape[2]):
                a, b = divmod(switch[i, j, c], 2)
                x[2 * i + a, 2 * j + b, c] = y[i, j, c]
    return x


def _avg_unpool(y, in_shape):
    x = np.zeros(in_shape)
    x[: 2 * y.shape[0], : 2 * y.shape[1]] = np.repeat(np.repeat(y, 2, 0), 2, 1) / 4
    return x


def _explicit(params, x, layer, keep):
    """Forward (recording switches), keep the chosen activations of ``layer``, and project down."""
    p = {k: (np.asarray(v["kernel"], np.float64), np.asarray(v["bias"], np.float64)) for k, v in params.items()}
    pads = {"c1": ((1, 2), (1, 2)), "c2": ((0, 0), (0, 0)), "c3": ((1, 1), (1, 1))}
    a1 = np.maximum(_conv(x, *p["c1"], pads["c1"]), 0)
    m1, sw = _maxpool(a1)
    a2 = np.maximum(_conv(m1, *p["c2"], pads["c2"]), 0)
    m2 = a2[: a2.shape[0] // 2 * 2, : a2.shape[1] // 2 * 2].reshape(a2.shape[0] // 2, 2, a2.shape[1] // 2, 2, -1)
    m2 = m2.mean((1, 3))
    a3 = np.maximum(_conv(m2, *p["c3"], pads["c3"]), 0)
    acts = {"c1": a1, "p1": m1, "c2": a2, "p2": m2, "c3": a3}
    r = np.where(keep(acts[layer]), acts[layer], 0)
    # the reverse network: rectify, transposed conv (for a conv layer), unpool (for a pool layer)
    steps = [("c3", "conv"), ("p2", "avg"), ("c2", "conv"), ("p1", "max"), ("c1", "conv")]
    start = [name for name, _ in steps].index(layer)
    below = {"c3": m2, "p2": a2, "c2": m1, "p1": a1, "c1": x}
    for name, kind in steps[start:]:
        if kind == "conv":
            r = _conv_transposed(np.maximum(r, 0), p[name][0], pads[name], below[name].shape[:2])
        elif kind == "avg":
            r = _avg_unpool(r, below[name].shape)
        else:
            r = _unpool(r, sw, below[name].shape)
    return r


@pytest.fixture(scope="module")
def small():
    model = SmallNet()
    x = jnp.asarray(np.random.default_rng(0).normal(size=(14, 14, 2)), jnp.float32)
    variables = jax.jit(model.init)(jax.random.key(1), x[None])
    return model, variables, x


@pytest.mark.parametrize("layer", ["c3", "p2", "c2", "p1", "c1"])
def test_reconstruction_equals_the_explicit_deconvnet(small, layer):
    model, variables, x = small
    with jax.default_matmul_precision("highest"):
        got = np.asarray(explain.deconvnet_reconstruction(model, variables, x, layer, channel=[0, 2]))
        top = np.asarray(explain.deconvnet_reconstruction(model, variables, x, layer, channel=1, top_k=3))
    x64 = np.asarray(x, np.float64)
    for i, c in enumerate([0, 2]):
        ref = _explicit(variables["params"], x64, layer, lambda a, c=c: np.arange(a.shape[-1]) == c)
        np.testing.assert_allclose(got[i], ref, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(ref).max()))

    def top3(a):
        v = np.where(np.arange(a.shape[-1]) == 1, a, -np.inf)
        return (v >= np.sort(v.reshape(-1))[-3]) & (np.arange(a.shape[-1]) == 1)

    ref = _explicit(variables["params"], x64, layer, top3)
    np.testing.assert_allclose(top, ref, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(ref).max()))
    assert np.abs(got).max() > 0


def test_reconstruction_errors(small):
    model, variables, x = small
    with pytest.raises(ValueError, match=r"4 channels \(0 … 3\); found \[7\]"):
        explain.deconvnet_reconstruction(model, variables, x, "c1", channel=7)
    with pytest.raises(ValueError, match="unknown layer"):
        explain.deconvnet_reconstruction(model, variables, x, "c9")
    with pytest.raises(ValueError, match="top_k"):
        explain.deconvnet_reconstruction(model, variables, x, "c1", top_k=0)


def test_dead_filters_over_batches(small):
    model, variables, x = small
    params = jax.tree.map(np.array, variables["params"])
    # kill filter 1 of c2: weights 0 and a negative bias -> ReLU output 0 for every input
    params["c2"]["kernel"][..., 1] = 0.0
    params["c2"]["bias"][1] = -1.0
    v = {"params": params}
    rng = np.random.default_rng(3)
    batches = [jnp.asarray(rng.normal(size=(3, 14, 14, 2)), jnp.float32) for _ in range(3)]
    dead = explain.dead_filters(model, v, batches, ["c1", "c2", "c3"])
    _, acts = taps.activations(model, v, jnp.concatenate(batches), ["c1", "c2", "c3"])
    for name in ("c1", "c2", "c3"):
        np.testing.assert_array_equal(dead[name], (np.asarray(acts[name]) == 0).all((0, 1, 2)))
    assert dead["c2"][1] and not dead["c1"].all()
    peaks = explain.filter_peaks(model, v, batches, "c1")
    np.testing.assert_allclose(peaks["c1"], np.abs(np.asarray(acts["c1"])).max((0, 1, 2)), rtol=1e-6)
    padded = [(batches[0], np.array([True, True, False]))]
    np.testing.assert_allclose(explain.filter_peaks(model, v, padded, "c1")["c1"],
                               np.abs(np.asarray(acts["c1"][:2])).max((0, 1, 2)), rtol=1e-6)


def test_activation_maps_and_mosaic(small):
    model, variables, x = small
    maps = explain.activation_maps(model, variables, x, "c1")
    assert maps.shape == (14, 14, 4)
    grid = viz.filter_grid(maps, cols=2, pad=1)
    assert grid.shape == (2 * 14 + 1, 2 * 14 + 1, 3) and grid.dtype == np.uint8
    # each tile is its filter's map min-max scaled (per filter)
    a = np.asarray(maps[..., 3], np.float64)
    tile = grid[15:29, 15:29, 0].astype(np.float64)
    scaled = np.round((a - a.min()) / (a.max() - a.min()) * 255) if a.max() > a.min() else np.zeros_like(a)
    np.testing.assert_allclose(tile, scaled, atol=1)
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        viz.filter_grid(np.zeros((4, 4)))
