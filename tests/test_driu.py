import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxretina import taps
from jaxretina.models import DRIU
from jaxretina.models.layers import CaffeDeconv, conv_transpose, bilinear_kernel, max_pool_2x2
from jaxretina.preprocess import driu_caffe_input

VESSEL = ("conv1_1", "conv1_2", "pool1", "conv2_1", "conv2_2", "pool2", "conv3_1", "conv3_2", "conv3_3",
          "pool3", "conv4_1", "conv4_2", "conv4_3", "conv1_2_16", "conv2_2_16", "upsample2",
          "conv3_3_16", "upsample4", "conv4_3_16", "upsample8", "new_score_weighting")


@pytest.mark.parametrize("variant", ["vessel", "optic_disc"])
@pytest.mark.parametrize("hw", [(584, 565), (605, 700), (101, 117), (64, 64), (33, 18)])
def test_output_shape_any_size(variant, hw):
    out = jax.eval_shape(lambda x: DRIU(variant=variant).init_with_output(jax.random.key(0), x)[0],
                         jax.ShapeDtypeStruct((2, *hw, 3), jnp.float32))
    assert out.shape == (2, *hw, 1)


def test_real_forward_odd_size():
    model = DRIU()
    x = jnp.asarray(np.random.default_rng(0).normal(0, 50, (1, 101, 117, 3)), jnp.float32)
    variables = jax.jit(model.init)(jax.random.key(0), x)
    out = jax.jit(model.apply)(variables, x)
    assert out.shape == (1, 101, 117, 1) and bool(jnp.isfinite(out).all())


def test_caffe_names_and_parameter_shapes():
    model = DRIU()
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
    assert set(params) == {n for n in VESSEL if not n.startswith("pool")}
    assert params["conv1_1"]["kernel"].shape == (3, 3, 3, 64)
    assert params["conv4_3"]["kernel"].shape == (3, 3, 512, 512)
    assert params["conv1_2_16"]["kernel"].shape == (3, 3, 64, 16)
    assert params["upsample8"]["kernel"].shape == (16, 16, 16, 16)
    assert params["new_score_weighting"]["kernel"].shape == (1, 1, 64, 1)
    assert model.layer_names() == VESSEL
    assert taps.layer_names(model, (1, 32, 32, 3)) == VESSEL
    disc = DRIU(variant="optic_disc")
    dparams = jax.eval_shape(disc.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))["params"]
    assert {"conv5_3", "conv5_3_16", "upsample16"} <= set(dparams) and "conv1_2_16" not in dparams
    assert dparams["upsample16"]["kernel"].shape == (32, 32, 16, 16)
    assert taps.layer_names(disc, (1, 64, 64, 3)) == disc.layer_names()


def test_side_sizes_for_drive_match_caffe():
    # ARCHITECTURES.md §1.1: DRIVE 584x565 -> pool1 292x283, pool2 146x142, pool3 73x71.
    shapes = taps.layer_shapes(DRIU(), None, (1, 584, 565, 3))
    assert shapes["pool1"].shape[1:3] == (292, 283)
    assert shapes["pool2"].shape[1:3] == (146, 142)
    assert shapes["pool3"].shape[1:3] == (73, 71)
    assert all(shapes[n].shape[1:3] == (584, 565) for n in ("upsample2", "upsample4", "upsample8"))


def test_floor_pooling_fails_on_stare_height_with_clear_error():
    with pytest.raises(ValueError, match=r"upsample2: cannot crop 605x700 at offset \(0, 0\) from a 604x700 map"):
        taps.layer_shapes(DRIU(ceil_mode=False), None, (1, 605, 700, 3))
    # The deepdraw configuration (pad-0 deconvolutions, centre crops) works with floor pooling:
    # a pad-0 transposed conv of factor s and kernel 2s gives s·floor(H/s) + s >= H + 1 rows.
    from jaxretina.models import DEEPDRAW_OPTIONS

    shapes = taps.layer_shapes(DRIU(**DEEPDRAW_OPTIONS), None, (1, 605, 700, 3))
    assert shapes["pool1"].shape[1:3] == (302, 350)
    assert all(shapes[n].shape[1:3] == (605, 700) for n in ("upsample2", "upsample4", "upsample8"))


def test_option_errors():
    x = jnp.zeros((1, 32, 32, 3))
    with pytest.raises(ValueError, match="crop_offsets needs one value per upsampling factor .* or 'center'"):
        DRIU(crop_offsets="middle").init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="upsample_padding needs one value per upsampling factor"):
        DRIU(upsample_padding=(1, 0)).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match=r"normalization needs \(\(3 means\), \(3 stds\)\)"):
        DRIU(normalization=((0.5,), (0.2,))).init(jax.random.key(0), x)


def test_centre_crop_and_normalization_semantics():
    from jaxretina.models.layers import crop_to

    x = jnp.arange(2 * 9 * 8 * 1, dtype=jnp.float32).reshape(2, 9, 8, 1)
    np.testing.assert_array_equal(crop_to(x, 4, 5, "center", layer="t"), x[:, 2:6, 1:6])
    np.testing.assert_array_equal(crop_to(x, 4, 5, (3, 1), layer="t"), x[:, 3:7, 1:6])
    # normalization inside the model == normalising the input outside of it
    mean, std = (0.2, 0.4, 0.6), (0.5, 0.25, 2.0)
    rgb = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (1, 21, 19, 3)), jnp.float32)
    inside = DRIU(normalization=(mean, std))
    variables = jax.jit(inside.init)(jax.random.key(0), rgb)
    outside = (rgb - jnp.asarray(mean)) / jnp.asarray(std)
    np.testing.assert_allclose(jax.jit(inside.apply)(variables, rgb), jax.jit(DRIU().apply)(variables, outside),
                               rtol=1e-5, atol=1e-5)


def test_max_pool_modes():
    x = jnp.arange(1 * 5 * 3 * 1, dtype=jnp.float32).reshape(1, 5, 3, 1)
    ceil = max_pool_2x2(x)
    floor = max_pool_2x2(x, ceil_mode=False)
    ref = np.asarray(x)[0, :, :, 0]
    expect_ceil = np.array([[ref[i:i + 2, j:j + 2].max() for j in range(0, 3, 2)] for i in range(0, 5, 2)])
    np.testing.assert_array_equal(ceil[0, :, :, 0], expect_ceil)
    np.testing.assert_array_equal(floor[0, :, :, 0], expect_ceil[:2, :1])


def _deconv_reference(x, w, stride, pad):
    """Direct scatter-add: y[s*i + a - p] += x[i] * W[c, o, a] (Caffe / PyTorch semantics)."""
    n, h, wd, cin = x.shape
    _, cout, k, _ = w.shape
    full = np.zeros((n, stride * (h - 1) + k, stride * (wd - 1) + k, cout))
    for i in range(h):
        for j in range(wd):
            full[:, stride * i:stride * i + k, stride * j:stride * j + k, :] += np.einsum(
                "nc,coab->nabo", x[:, i, j, :], w)
    return full[:, pad:full.shape[1] - pad, pad:full.shape[2] - pad, :]


@pytest.mark.parametrize("k,s,p", [(4, 2, 1), (8, 4, 0), (3, 2, 1), (5, 3, 2)])
def test_caffe_deconv_matches_scatter_add_with_asymmetric_kernel(k, s, p):
    rng = np.random.default_rng(k)
    x = rng.normal(size=(2, 5, 4, 3)).astype(np.float32)
    w_caffe = rng.normal(size=(3, 2, k, k)).astype(np.float32)  # (in, out, kh, kw), not symmetric
    bias = rng.normal(size=(2,)).astype(np.float32)
    layer = CaffeDeconv(2, k, s, p)  # default init is bilinear; the params below replace it
    params = {"params": {"kernel": jnp.asarray(w_caffe.transpose(2, 3, 0, 1)), "bias": jnp.asarray(bias)}}
    y = layer.apply(params, jnp.asarray(x))
    assert y.shape == (2, s * 4 + k - 2 * p, s * 3 + k - 2 * p, 2)
    np.testing.assert_allclose(y, _deconv_reference(x, w_caffe, s, p) + bias, rtol=1e-5, atol=1e-5)


def test_caffe_deconv_matches_torch_conv_transpose():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    x = rng.normal(size=(1, 6, 7, 4)).astype(np.float32)
    w = rng.normal(size=(4, 3, 8, 8)).astype(np.float32)
    ref = torch.nn.functional.conv_transpose2d(torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.from_numpy(w),
                                               stride=4, padding=0).numpy().transpose(0, 2, 3, 1)
    y = CaffeDeconv(3, 8, 4, 0, use_bias=False).apply({"params": {"kernel": jnp.asarray(w.transpose(2, 3, 0, 1))}},
                                                       jnp.asarray(x))
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k,s,p", [(4, 2, 1), (16, 8, 0), (5, 3, 2)])
def test_conv_transpose_gradients_and_jvp_match_torch(k, s, p):
    """The sub-pixel forward and the dilated tangent must give torch's values, input and kernel
    gradients (reverse mode), and forward-mode derivatives (bilinear: jvp = f(tx, W) + f(x, tW))."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(k + s)
    x, tx = (rng.normal(size=(2, 5, 6, 3)) for _ in range(2))
    w, tw = (rng.normal(size=(3, 4, k, k)) for _ in range(2))  # torch layout (in, out, kh, kw)
    ho, wo = s * 4 + k - 2 * p, s * 5 + k - 2 * p
    g = rng.normal(size=(2, ho, wo, 4))
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    yt = torch.nn.functional.conv_transpose2d(xt, wt, stride=s, padding=p)
    gx_ref, gw_ref = torch.autograd.grad(yt, (xt, wt), torch.tensor(g.transpose(0, 3, 1, 2)))
    with jax.enable_x64(True):
        to_hwio = lambda a: jnp.asarray(a.transpose(2, 3, 0, 1))  # noqa: E731
        f = lambda x, w: conv_transpose(x, w, s, p)  # noqa: E731
        y, vjp = jax.vjp(f, jnp.asarray(x), to_hwio(w))
        gx, gw = vjp(jnp.asarray(g))
        _, ty = jax.jvp(f, (jnp.asarray(x), to_hwio(w)), (jnp.asarray(tx), to_hwio(tw)))
        ty_ref = f(jnp.asarray(tx), to_hwio(w)) + f(jnp.asarray(x), to_hwio(tw))
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gx, gx_ref.numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gw, gw_ref.numpy().transpose(2, 3, 0, 1), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ty, ty_ref, rtol=1e-10, atol=1e-10)


def test_bilinear_kernel_values():
    np.testing.assert_allclose(bilinear_kernel(4), np.outer([0.25, 0.75, 0.75, 0.25], [0.25, 0.75, 0.75, 0.25]))
    np.testing.assert_allclose(bilinear_kernel(3), np.outer([0.5, 1, 0.5], [0.5, 1, 0.5]))


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_hed_offsets_align_pixel_centres(factor):
    # With the bilinear init and the default crop offsets, a coarse ramp r[i] = i becomes
    # (y + 0.5)/s - 0.5 at fine pixel y: centre-to-centre alignment (align_corners=False).
    model = DRIU()
    h = 8 * factor * 2
    x = jnp.zeros((1, h, h, 3))
    variables = jax.jit(model.init)(jax.random.key(0), x)
    side = {2: "conv2_2_16", 4: "conv3_3_16", 8: "conv4_3_16"}[factor]
    coarse = -(-h // factor)
    ramp = jnp.broadcast_to(jnp.arange(coarse, dtype=jnp.float32)[:, None, None], (coarse, coarse, 16))[None]
    deltas = taps.tap_functions(model).zeros(variables, x)
    # Replace the side output with the ramp through its perturbation: side = 0-input side + delta.
    tapped = jax.jit(taps.tap_functions(model).tapped)
    _, acts0 = tapped(variables, x, deltas)
    deltas[side] = ramp - acts0[side]
    _, acts = tapped(variables, x, deltas)
    up = np.asarray(acts[f"upsample{factor}"][0, :, h // 2, 0])  # an interior column
    y = np.arange(h)
    interior = (y >= factor) & (y < h - factor)
    np.testing.assert_allclose(up[interior], ((y + 0.5) / factor - 0.5)[interior], atol=1e-4)


def test_act_field_swaps_the_nonlinearity(driu_small):
    model, variables, x = driu_small
    linear = model.clone(act=lambda z: z)
    a = jax.jit(model.apply)(variables, x[None])
    b = jax.jit(linear.apply)(variables, x[None])
    assert a.shape == b.shape and not np.allclose(a, b)
    leaky = model.clone(act=nn.leaky_relu)
    assert jax.eval_shape(leaky.apply, variables, x[None]).shape == a.shape


def test_input_errors():
    model = DRIU()
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    with pytest.raises(ValueError, match=r"DRIU input: expected 3 channels.*found shape \(1, 3, 16, 16\).*channels-first"):
        model.apply(variables, jnp.zeros((1, 3, 16, 16)))
    with pytest.raises(ValueError, match=r"expected a rank-4 batch \(N, H, W, C\); found shape \(16, 16, 3\)"):
        model.apply(variables, jnp.zeros((16, 16, 3)))
    with pytest.raises(TypeError, match="expected a floating-point array; found shape .* dtype uint8 .*driu_caffe_input"):
        model.apply(variables, jnp.zeros((1, 16, 16, 3), jnp.uint8))
    with pytest.raises(ValueError, match="unknown DRIU variant 'disc'"):
        DRIU(variant="disc").init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))


def test_driu_caffe_input_flips_then_subtracts():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50  # R, G, B
    x = np.asarray(driu_caffe_input(rgb))
    # BGR order after the flip, then (171.0773, 98.4333, 58.8811) subtracted in that order.
    np.testing.assert_allclose(x[0, 0], [50 - 171.0773, 100 - 98.4333, 200 - 58.8811], atol=1e-4)
    assert x.dtype == np.float32 and driu_caffe_input(rgb[None]).shape == (1, 2, 3, 3)
    with pytest.raises(ValueError, match="expected an RGB image"):
        driu_caffe_input(np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(TypeError, match="expected uint8 pixels"):
        driu_caffe_input(np.zeros((8, 8, 3), np.int16))
