"""ROAD and its linear imputation against pytorch-grad-cam 1.5.7 and Quantus 0.6.0 on the same
images, maps and noise draws, and the imputation's defining equation in 2-D and 3-D."""

import warnings

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from jaxretina import evaluate


def _blob_map(shape, seed):
    """A smooth bump plus noise: its top share is one large region (the hard case for the solver)."""
    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    return (np.exp(-sum((g - 0.3) ** 2 for g in grid) * 3) + 0.3 * rng.random(shape)).astype(np.float32)


def _residual(u, removed, stencil):
    """``s_i u_i − Σ_o w_o u_{i+o}`` over the neighbours inside the image, at every position."""
    spatial = u.shape[:-1]
    out = np.zeros_like(u)
    for idx in np.ndindex(*spatial):
        total = np.zeros(u.shape[-1])
        for o, w in stencil:
            j = tuple(i + d for i, d in zip(idx, o))
            if all(0 <= k < n for k, n in zip(j, spatial)):
                total += w * (u[idx] - u[j])
        out[idx] = total
    return np.where(removed[..., None], out, 0)


# Defining property, float64: at removed positions the fill is the weighted mean of its in-image
# neighbours (residual ≤ 1e-9), kept positions are untouched, the noise is exactly noise · N(0, 1)
# from the key; 2-D (8 neighbours) and 3-D (6 face neighbours), removed regions touching the border.
@pytest.mark.parametrize("shape", [(9, 11, 2), (5, 6, 7, 1)])
def test_imputation_solves_its_equation_in_2d_and_3d(shape):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape)
    m = _blob_map(shape[:-1], 1)
    removed = m >= np.percentile(m, 50)
    removed.flat[0] = True                                      # a corner
    key = jax.random.key(5)
    with jax.enable_x64(True):
        u = np.asarray(evaluate.linear_imputation(jnp.asarray(x), removed))
        noisy = np.asarray(evaluate.linear_imputation(jnp.asarray(x), removed, noise=0.25, key=key))
        draws = np.asarray(jax.random.normal(key, shape, jnp.float64))
    assert 0.2 < removed.mean() < 0.8
    assert np.abs(_residual(u, removed, evaluate.neighbour_weights(len(shape) - 1))).max() < 1e-9
    np.testing.assert_array_equal(u[~removed], x[~removed])
    np.testing.assert_allclose(noisy, u + np.where(removed[..., None], 0.25 * draws, 0), atol=1e-12)
    assert sum(w for _, w in evaluate.neighbour_weights(len(shape) - 1)) == pytest.approx(1.0)


# Anchors: pytorch-grad-cam 1.5.7 NoisyLinearImputer(noise=0) (a sparse LU in float64, returned in
# float32: tolerance 1e-6 relative to the image's scale) and Quantus 0.6.0 noisy_linear_imputation
# (noise=0, float64: tolerance 1e-9), on a 3-channel image with a scattered and a blob mask; our
# solve in float64.
def test_imputation_matches_pytorch_grad_cam_and_quantus():
    torch = pytest.importorskip("torch")
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    quantus_perturb = pytest.importorskip("quantus.functions.perturb_func")

    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 20, 26)).astype(np.float32)
    for removed in (rng.random((20, 26)) < 0.4, _blob_map((20, 26), 3) > 0.55):
        with jax.enable_x64(True):
            ours = np.asarray(evaluate.linear_imputation(jnp.asarray(x.transpose(1, 2, 0), jnp.float64), removed))
        ours = ours.transpose(2, 0, 1)
        pgc = NoisyLinearImputer(noise=0.0)(torch.tensor(x), torch.tensor((~removed).astype(np.float32))).numpy()
        qu = quantus_perturb.noisy_linear_imputation(x.astype(np.float64), np.flatnonzero(removed), noise=0.0)
        assert np.abs(ours - x).max() > 0.1                     # something was filled
        np.testing.assert_allclose(ours, pgc, atol=1e-6 * np.abs(x).max())
        np.testing.assert_allclose(ours, qu, atol=1e-9)


# Anchor: pytorch-grad-cam 1.5.7 ROADCombined (and its MoRF/LeRF averagers' scores) on the small
# DenseNet pair, float32, a blob cam, the default percentiles 10 … 90, given the same noise draws
# (torch.randn_like replaced by evaluate.draw_noise's draws at the removed pixels); our float32
# conjugate-gradient fill differs from the LU's by ~1e-5, so tolerance 1e-3 of the scores' scale.
def test_road_matches_pytorch_grad_cam_with_the_same_draws(torch_dense, monkeypatch):
    torch = pytest.importorskip("torch")
    from pytorch_grad_cam.metrics import road as pgc_road
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from jaxretina import explain
    from tests.anchor_pairs import CLASS, nchw

    model, variables, ref, x, target = torch_dense
    cam = _blob_map(x.shape[:2], 4)
    key, fr = jax.random.key(9), evaluate.ROAD_FRACTIONS
    draws = np.asarray(jax.jit(jax.vmap(lambda s: evaluate.draw_noise(key, s, x.shape, jnp.float32, gaussian=True,
                                                                       scale=1.0)))(jnp.arange(2 * len(fr))))
    queue = []
    for order, offset, flip in (("lerf", len(fr), lambda c: 1 - c), ("morf", 0, lambda c: c)):
        for p in (10, 20, 30, 40, 50, 60, 70, 80, 90):        # ROADCombined: LeRF's thresholds, then MoRF's
            j = int(np.argmin(np.abs(np.asarray(fr) - (1 - p / 100))))
            removed = flip(cam) >= np.percentile(flip(cam), p)
            np.testing.assert_array_equal(np.asarray(evaluate.road_mask(cam, fr[j], order=order)), removed)
            queue.append(torch.tensor(draws[offset + j][removed].T.copy()))
    used = []

    def same_draws(t):
        d = queue.pop(0)
        assert d.shape == t.shape
        used.append(d)
        return d

    monkeypatch.setattr(pgc_road.torch, "randn_like", same_draws)
    targets_ = [ClassifierOutputTarget(CLASS)]
    want = float(np.ravel(pgc_road.ROADCombined()(nchw(x, torch.float32), cam[None], targets_, ref.float().eval()))[0])
    assert not queue and len(used) == 18
    f = explain.model_fn(model, variables, target)
    got = float(evaluate.road_combined(f, jnp.asarray(x), jnp.asarray(cam), key=key, chunk=6))
    scale = max(abs(float(jax.jit(f)(jnp.asarray(x)))), 1.0)
    assert got == pytest.approx(want, abs=1e-3 * scale)
    assert abs(want) > 1e-3 * scale                              # the orders differ: a real comparison


# Anchor: Quantus 0.6.0 ROAD (count-based top-k of the map, accuracy y == argmax after the
# imputation, noise 0) on a one-channel linear 3-class model written on both sides (Quantus' ROAD
# indexes pixels, so only one channel works), float32, at the percentages where its counts
# ⌊n p / 100⌋ equal the percentile rule's (checked); exact agreement of the 0/1 scores.
def test_road_matches_quantus_accuracy_curve():
    torch = pytest.importorskip("torch")
    quantus = pytest.importorskip("quantus")

    rng = np.random.default_rng(8)
    gray = rng.normal(size=(30, 34, 1)).astype(np.float32)
    weights = rng.normal(size=(3, 30, 34)).astype(np.float32)
    cam = _blob_map(gray.shape[:2], 5)
    n, pct = cam.size, []
    for p in range(5, 100, 5):                                  # where the two rules remove the same pixels
        top = np.sort(np.argsort(-cam.ravel())[: int(n * p / 100)])
        ours = np.flatnonzero(evaluate.road_mask(cam, p / 100))
        if ours.size == top.size:
            np.testing.assert_array_equal(ours, top)
            pct.append(p)
    assert len(pct) >= 4, pct

    class Linear(torch.nn.Module):
        def forward(self, z):
            return torch.einsum("bchw,khw->bk", z, torch.tensor(weights))

    logits = lambda z: jnp.einsum("hwc,khw->k", z, jnp.asarray(weights))   # noqa: E731
    y = int(jnp.argmax(logits(jnp.asarray(gray))))
    metric = quantus.ROAD(percentages=pct, noise=0.0, abs=False, normalise=False, disable_warnings=True,
                          display_progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = metric(model=Linear().eval(), x_batch=gray.transpose(2, 0, 1)[None].copy(), y_batch=np.array([y]),
                      a_batch=cam[None, None], channel_first=True, softmax=False, device="cpu")
    correct = jax.tree_util.Partial(lambda z: (jnp.argmax(logits(z)) == y).astype(jnp.float32))
    got = evaluate.road(correct, jnp.asarray(gray), jnp.asarray(cam), fractions=[p / 100 for p in pct], noise=0.0)
    np.testing.assert_array_equal(np.asarray(got.scores), np.asarray([want[p] for p in pct], np.float32))
    assert float(got.reference) == 1.0 and 0 < float(np.asarray(got.scores).mean()) < 1, got  # some flips


# Batched = per example (jit(vmap) over examples and maps, one program), chunking does not
# change the result, and MoRF/LeRF share one compiled program; float32, 1e-5 relative.
def test_road_batches_and_orders_share_a_program(torch_dense):
    from jaxretina import explain

    model, variables, _, x, target = torch_dense
    f = explain.model_fn(model, variables, target)
    xs = jnp.asarray(np.stack([x, x[::-1]]))
    cams = jnp.asarray(np.stack([_blob_map(x.shape[:2], 6), _blob_map(x.shape[:2], 7)]))
    opts = dict(fractions=(0.3, 0.7), key=jax.random.key(1))
    batched = jax.jit(jax.vmap(lambda z, c: evaluate.road(f, z, c, chunk=3, **opts).scores))(xs, cams)
    for i in range(2):
        one = evaluate.road(f, xs[i], cams[i], chunk=1, **opts)
        np.testing.assert_allclose(batched[i], one.scores, rtol=1e-5, atol=1e-5)
    lowered = []
    listen = lambda event, seconds, **info: lowered.append(info.get("fun_name")) if event.endswith(  # noqa: E731
        "jaxpr_to_mlir_module_duration") else None
    evaluate.road(f, xs[0], cams[0], order="morf", chunk=3, **opts)
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        evaluate.road(f, xs[1], cams[1], order="lerf", chunk=3, **opts)
    finally:
        from jax._src import monitoring

        monitoring.unregister_event_duration_listener(listen)
    assert not [name for name in lowered if "map_over" in str(name)], lowered


def test_road_hostile_input_gets_clear_errors():
    f = jax.tree_util.Partial(lambda z: z.sum())
    x, a = jnp.ones((6, 7, 2)), jnp.ones((6, 7))
    cases = [
        (dict(fractions=(0.0, 0.5)), "shares in \\(0, 1\\)"),
        (dict(fractions=()), "non-empty"),
        (dict(noise=0.1), "key is required"),
        (dict(noise=-1.0), "noise must be a number"),
        (dict(order="first"), "order must be one of"),
    ]
    for options, message in cases:
        with pytest.raises(ValueError, match=message):
            evaluate.road(f, x, a, **options)
    with pytest.raises(ValueError, match="spatial shape"):
        evaluate.road(f, x, jnp.ones((7, 6)), noise=0.0)
    with pytest.raises(ValueError, match="image \\(H, W, C\\) or volume"):
        evaluate.road(f, jnp.ones((6, 7)), jnp.ones(6), noise=0.0)
    with pytest.raises(ValueError, match="only 0 and 1"):
        evaluate.linear_imputation(x, np.full((6, 7), 255))
    with pytest.raises(ValueError, match="NaN"):
        evaluate.linear_imputation(x.at[0, 0, 0].set(jnp.nan), np.zeros((6, 7), bool))
