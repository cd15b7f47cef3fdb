"""jaxretina.evaluate: localisation and complexity metrics against Quantus 0.6.0, scikit-learn and
scikit-image on the same maps and masks, and their defining properties (field of view = the
subset, batched = per example, closed forms, hostile input)."""

import warnings

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from jaxretina import evaluate


def _maps_and_masks(n=6, shape=(24, 28), seed=0):
    """Random maps (a few with ties from rounding), rectangular masks, the last one empty."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, *shape))
    a[1] = np.round(a[1] * 2) / 2            # ties
    a[2] = np.abs(a[2])                      # non-negative
    s = np.zeros((n, *shape), bool)
    for i in range(n - 1):
        r, c = rng.integers(0, shape[0] - 6), rng.integers(0, shape[1] - 6)
        s[i, r:r + rng.integers(3, 8), c:c + rng.integers(3, 8)] = True
    s[0].flat[np.argmax(a[0])] = True        # a pointing-game hit
    return a, s


def _quantus_scores(metric, a, s):
    x = np.zeros((a.shape[0], 1, *a.shape[1:]), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(metric(model=None, x_batch=x, y_batch=np.zeros(a.shape[0], int), a_batch=a[:, None],
                                 s_batch=s[:, None].astype(float), channel_first=True), np.float64)


def _ours(fn, a, s, **options):
    with jax.enable_x64(True):
        return np.asarray(jax.jit(jax.vmap(lambda m, r: fn(m, r, **options)))(jnp.asarray(a), jnp.asarray(s)))


# Anchor: Quantus 0.6.0 (abs=False, normalise=False: the maps as given; complexity metrics with
# abs=True, as ours take |a|), float64 maps; tolerance 1e-12 (Complexity 1e-9: Quantus adds
# 1e-12 inside its logarithm, 672 · 1e-12 over these maps), NaN where the mask is
# empty on both sides — except Quantus' PointingGame, which writes its NaN into a boolean array
# (so an empty mask scores True: ours NaN).  Left out on purpose: Quantus' weighted pointing game
# (the weight written into the same boolean array: True) and weighted AttributionLocalisation (it
# divides by x_batch[2:].size); the weighted forms are tested against their definitions below.
def test_localisation_and_complexity_match_quantus():
    quantus = pytest.importorskip("quantus")
    a, s = _maps_and_masks()
    common = dict(abs=False, normalise=False, disable_warnings=True, display_progressbar=False)
    cases = [
        (quantus.PointingGame(**common), evaluate.pointing_game, {}),
        (quantus.RelevanceMassAccuracy(**common), evaluate.relevance_mass, {}),
        (quantus.RelevanceRankAccuracy(**common), evaluate.relevance_rank, {}),
        (quantus.TopKIntersection(k=40, **common), evaluate.top_k_intersection, {"k": 40}),
        (quantus.TopKIntersection(k=40, concept_influence=True, **common), evaluate.top_k_intersection,
         {"k": 40, "concept_influence": True}),
        (quantus.AttributionLocalisation(positive_attributions=True, weighted=False, **common),
         evaluate.energy_pointing_game, {}),
        (quantus.AUC(**common), evaluate.localisation_auroc, {}),
    ]
    complexity = dict(common, abs=True)
    cases += [
        (quantus.Sparseness(**complexity), evaluate.sparseness, {"eps": evaluate.QUANTUS_SPARSENESS_EPS}),
        (quantus.Complexity(**complexity), evaluate.entropy, {}),
        (quantus.EffectiveComplexity(eps=0.5, **complexity), evaluate.effective_complexity, {"eps": 0.5}),
    ]
    for metric, fn, options in cases:
        want = _quantus_scores(metric, a, s)
        if fn in (evaluate.sparseness, evaluate.entropy, evaluate.effective_complexity):
            with jax.enable_x64(True):
                got = np.asarray([np.asarray(fn(jnp.asarray(m), **options), np.float64) for m in a])
        else:
            got = _ours(fn, a, s, **options)
        name = type(metric).__name__
        if name == "PointingGame":
            assert np.isnan(got[-1]) and want[-1] == 1.0   # the empty mask (above)
            got, want = got[:-1], want[:-1]
        assert np.array_equal(np.isnan(got), np.isnan(want)), (name, got, want)
        ok = ~np.isnan(want)
        # Quantus' Complexity adds 1e-12 inside the logarithm: n · 1e-12 = 7e-10 apart
        atol = 1e-9 if name == "Complexity" else 1e-12
        np.testing.assert_allclose(got[ok], want[ok], rtol=1e-12, atol=atol, err_msg=name)


# Anchor: scikit-learn's roc_auc_score and average_precision_score on the positions inside the
# field of view (ties included); float64, tolerance 1e-12.
def test_auroc_and_auprc_match_scikit_learn_inside_the_field_of_view():
    from sklearn.metrics import average_precision_score, roc_auc_score

    a, s = _maps_and_masks(seed=1)
    yy, xx = np.indices(a.shape[1:])
    fov = (yy - 12) ** 2 + (xx - 14) ** 2 < 11 ** 2
    with jax.enable_x64(True):
        for i in range(a.shape[0] - 1):
            inside = s[i] & fov
            if not inside.any():
                continue
            for fn, ref in ((evaluate.localisation_auroc, roc_auc_score),
                            (evaluate.localisation_auprc, average_precision_score)):
                got = float(fn(jnp.asarray(a[i]), s[i], fov=fov))
                want = ref(inside[fov], a[i][fov])
                assert abs(got - want) <= 1e-12, (fn.__name__, i, got, want)


# Anchor: scikit-image 0.26 threshold_otsu (256 bins) on the same values, float64 and float32
# (float32: the same bin within one bin width); IoU and Dice against NumPy sets.
def test_otsu_threshold_and_overlap_match_scikit_image():
    from skimage.filters import threshold_otsu

    a, s = _maps_and_masks(seed=2)
    for i in range(a.shape[0]):
        with jax.enable_x64(True):
            assert float(evaluate.otsu_threshold(jnp.asarray(a[i]))) == pytest.approx(threshold_otsu(a[i]), abs=1e-12)
        width = (a[i].max() - a[i].min()) / 256
        got32 = float(evaluate.otsu_threshold(jnp.asarray(a[i], jnp.float32)))
        assert abs(got32 - threshold_otsu(a[i].astype(np.float32))) <= 1.01 * width
    with jax.enable_x64(True):
        for i in range(a.shape[0] - 1):
            o = evaluate.threshold_overlap(jnp.asarray(a[i]), s[i])
            t = a[i] > threshold_otsu(a[i])
            assert float(o.iou) == pytest.approx((t & s[i]).sum() / (t | s[i]).sum(), abs=1e-12)
            assert float(o.dice) == pytest.approx(2 * (t & s[i]).sum() / (t.sum() + s[i].sum()), abs=1e-12)
            top = evaluate.threshold_overlap(jnp.asarray(a[i]), s[i], method="top", top=0.1)
            count = int(np.ceil(0.1 * a[i].size))
            t = np.zeros(a[i].size, bool)
            t[np.argsort(-a[i].ravel(), kind="stable")[:count]] = True
            t = t.reshape(a[i].shape)
            assert float(top.iou) == pytest.approx((t & s[i]).sum() / (t | s[i]).sum(), abs=1e-12)


_WITH_REGION = {
    "pointing_game": lambda a, s, **o: evaluate.pointing_game(a, s, **o),
    "pointing_game_weighted": lambda a, s, **o: evaluate.pointing_game(a, s, weighted=True, **o),
    "energy_pointing_game": lambda a, s, **o: evaluate.energy_pointing_game(a, s, **o),
    "energy_pointing_game_weighted": lambda a, s, **o: evaluate.energy_pointing_game(a, s, weighted=True, **o),
    "relevance_mass": lambda a, s, **o: evaluate.relevance_mass(a, s, **o),
    "relevance_rank": lambda a, s, **o: evaluate.relevance_rank(a, s, **o),
    "top_k_intersection": lambda a, s, **o: evaluate.top_k_intersection(a, s, k=20, concept_influence=True, **o),
    "localisation_auroc": lambda a, s, **o: evaluate.localisation_auroc(a, s, **o),
    "localisation_auprc": lambda a, s, **o: evaluate.localisation_auprc(a, s, **o),
    "otsu_iou": lambda a, s, **o: evaluate.threshold_overlap(a, s, **o).iou,
    "top_dice": lambda a, s, **o: evaluate.threshold_overlap(a, s, method="top", top=0.2, **o).dice,
    "sparseness": lambda a, s, **o: evaluate.sparseness(a, **o),
    "entropy": lambda a, s, **o: evaluate.entropy(a, **o),
    "effective_complexity": lambda a, s, **o: evaluate.effective_complexity(a, eps=0.5, **o),
}


# Property: a field of view is the same as keeping only its positions — every metric of a map
# with fov= equals the metric of the 1-D array of the positions inside it (float64, 1e-12); and
# jit(vmap) over a batch equals the per-example calls.
@pytest.mark.parametrize("name", sorted(_WITH_REGION))
def test_field_of_view_is_the_subset_and_batched_is_per_example(name):
    fn = _WITH_REGION[name]
    a, s = _maps_and_masks(seed=3)
    yy, xx = np.indices(a.shape[1:])
    fov = (yy - 12) ** 2 + (xx - 14) ** 2 < 10 ** 2
    with jax.enable_x64(True):
        for i in range(a.shape[0]):
            got = float(fn(jnp.asarray(a[i]), s[i], fov=fov))
            want = float(fn(jnp.asarray(a[i][fov]), s[i][fov]))
            assert got == pytest.approx(want, abs=1e-12, nan_ok=True), (i, got, want)
        batched = np.asarray(jax.jit(jax.vmap(lambda m, r: fn(m, r)))(jnp.asarray(a), jnp.asarray(s)), np.float64)
        single = np.asarray([float(fn(jnp.asarray(m), r)) for m, r in zip(a, s)])
        np.testing.assert_allclose(batched, single, rtol=1e-12, atol=1e-12)


def test_closed_forms_and_volumes():
    n = 5 * 6 * 7
    one = jnp.zeros((5, 6, 7)).at[2, 3, 4].set(2.0)     # a volume
    region = np.zeros((5, 6, 7), bool)
    region[1:4, 2:5, 3:6] = True
    assert float(evaluate.sparseness(one)) == pytest.approx(1 - 1 / n, rel=1e-6)
    assert float(evaluate.sparseness(jnp.ones((5, 6, 7)))) == pytest.approx(0.0, abs=1e-6)
    assert float(evaluate.entropy(jnp.ones((5, 6, 7)))) == pytest.approx(np.log(n), rel=1e-6)
    assert float(evaluate.entropy(one)) == 0.0
    assert float(evaluate.pointing_game(one, region)) == 1.0
    assert float(evaluate.pointing_game(one, region, weighted=True)) == pytest.approx(1 - 27 / n, rel=1e-6)
    assert float(evaluate.pointing_game(-one, one > 0)) == 0.0       # the maximum (0) is everywhere else
    assert float(evaluate.energy_pointing_game(one, region, weighted=True)) == pytest.approx(n / 27, rel=1e-6)
    assert float(evaluate.localisation_auroc(jnp.asarray(region, jnp.float32), region)) == 1.0
    assert float(evaluate.localisation_auprc(jnp.asarray(region, jnp.float32), region)) == 1.0
    assert float(evaluate.localisation_auprc(jnp.ones((5, 6, 7)), region)) == pytest.approx(27 / n, rel=1e-6)
    assert float(evaluate.chance_level(region)) == pytest.approx(27 / n, rel=1e-6)
    assert np.isnan(float(evaluate.relevance_mass(one, np.zeros((5, 6, 7), bool))))


def test_hostile_input_gets_clear_errors():
    a = jnp.ones((6, 7))
    with pytest.raises(ValueError, match=r"must have the map's shape \(6, 7\); found \(7, 6\)"):
        evaluate.pointing_game(a, np.zeros((7, 6), bool))
    with pytest.raises(ValueError, match="only 0 and 1.*mask > 0"):
        evaluate.relevance_mass(a, np.full((6, 7), 255, np.uint8))
    with pytest.raises(ValueError, match="1 NaN"):
        evaluate.localisation_auroc(a.at[0, 0].set(jnp.nan), np.ones((6, 7), bool))
    with pytest.raises(TypeError, match="floating-point"):
        evaluate.sparseness(jnp.ones((6, 7), jnp.int32))
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 42\]"):
        evaluate.top_k_intersection(a, np.ones((6, 7), bool), k=43)
    with pytest.raises(ValueError, match="method must be 'otsu' or 'top'"):
        evaluate.threshold_overlap(a, np.ones((6, 7), bool), method="mean")
    with pytest.raises(ValueError, match="fov must have the map's shape"):
        evaluate.entropy(a, fov=np.ones((6,), bool))
    with pytest.raises(ValueError, match="booleans or 0/1 numbers"):
        evaluate.pointing_game(a, np.full((6, 7), "x"))


def _linear_case(seed=4, shape=(6, 7, 3)):
    rng = np.random.default_rng(seed)
    w, x = rng.normal(size=shape), rng.normal(size=shape)
    return w, x, rng.normal(size=shape[:-1])


# Closed form: for f(z) = Σ w z, deleting the positions ranked first (pixels, all channels)
# leaves Σ w x over the rest plus Σ w b over them; insertion is the mirror image; float64, 1e-12.
@pytest.mark.parametrize("mode,order", [("deletion", "morf"), ("insertion", "morf"), ("deletion", "lerf")])
def test_perturbation_curve_closed_form_on_a_linear_model(mode, order):
    w, x, a = _linear_case()
    n, steps, b = a.size, 5, 0.25
    with jax.enable_x64(True):
        f = jax.tree_util.Partial(lambda w, z: (w * z).sum(), jnp.asarray(w))
        curve = evaluate.perturbation_curve(f, jnp.asarray(x), jnp.asarray(a), steps=steps, mode=mode, order=order,
                                            baseline=b, chunk=4)
        area = float(evaluate.aopc(curve))
    ranked = np.argsort(-a.ravel() if order == "morf" else a.ravel(), kind="stable")
    want = []
    for k in range(steps + 1):
        changed = np.zeros(n, bool)
        changed[ranked[: -(-k * n // steps)]] = True
        changed = changed.reshape(a.shape)[..., None]
        z = np.where(changed, x, b) if mode == "insertion" else np.where(changed, b, x)
        want.append((w * z).sum())
    np.testing.assert_allclose(np.asarray(curve.scores), want, rtol=1e-12, atol=1e-12)
    fr = np.ceil(np.arange(steps + 1) * n / steps) / n
    np.testing.assert_allclose(np.asarray(curve.fractions), fr, rtol=1e-12)
    assert float(curve.auc) == pytest.approx(np.trapezoid(want, fr), rel=1e-12)
    assert area == pytest.approx(np.mean(want[0] - np.asarray(want)), rel=1e-12, abs=1e-12)


# Property: jit(vmap) of the curve over examples and maps equals the per-example calls (float32,
# 1e-6 relative), and a second map of the same shape compiles nothing new.
def test_perturbation_curve_batches_over_examples_and_does_not_recompile():
    rng = np.random.default_rng(5)
    w = jnp.asarray(rng.normal(size=(8, 8, 2)), jnp.float32)
    xs, maps = jnp.asarray(rng.normal(size=(3, 8, 8, 2)), jnp.float32), jnp.asarray(rng.random((3, 8, 8)), jnp.float32)
    f = jax.tree_util.Partial(lambda w, z: jnp.tanh(w * z).sum(), w)
    run = jax.jit(jax.vmap(lambda x, a: evaluate.perturbation_curve(f, x, a, steps=8, chunk=3).scores))
    batched = np.asarray(run(xs, maps))
    single = np.stack([np.asarray(evaluate.perturbation_curve(f, x, a, steps=8, chunk=3).scores)
                       for x, a in zip(xs, maps)])
    np.testing.assert_allclose(batched, single, rtol=1e-6, atol=1e-6)
    lowered = []
    listen = lambda event, seconds, **info: lowered.append(info.get("fun_name")) if event.endswith(  # noqa: E731
        "jaxpr_to_mlir_module_duration") else None
    other = maps[::-1] + 0.5
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        evaluate.perturbation_curve(f, xs[0], other[0], steps=8, chunk=3)
    finally:
        from jax._src import monitoring

        monitoring.unregister_event_duration_listener(listen)
    assert not [name for name in lowered if "map_over" in str(name)], lowered


# Anchor: Quantus 0.6.0 PixelFlipping (baseline 0, abs/normalise off, logits) on the small
# torchvision DenseNet of tests/anchor_pairs.py in float32; a pixel map broadcast over the 3
# channels with features_in_step = 3 × 255 values is our 9-step curve over the 2295 pixels (the
# three tied copies of a pixel fall in the same step).  Quantus omits the unperturbed point.
# Tolerance 1e-4 of the largest score (float32 forward passes on both sides; measured 7e-7).
def test_deletion_curve_matches_quantus_pixel_flipping(torch_dense):
    quantus = pytest.importorskip("quantus")
    from jaxretina import explain
    from tests.anchor_pairs import CLASS

    model, variables, ref, x, target = torch_dense
    a = np.random.default_rng(6).random(x.shape[:2]).astype(np.float32)
    metric = quantus.PixelFlipping(features_in_step=3 * 255, perturb_baseline=0.0, abs=False, normalise=False,
                                   disable_warnings=True, display_progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = np.asarray(metric(model=ref.float().eval(), x_batch=x.transpose(2, 0, 1)[None].copy(),
                                 y_batch=np.array([CLASS]), a_batch=a[None, None], channel_first=True,
                                 softmax=False, device="cpu"))[0]
    f = explain.model_fn(model, variables, target)
    got = np.asarray(evaluate.perturbation_curve(f, jnp.asarray(x), jnp.asarray(a), steps=9, baseline=0.0).scores)
    assert want.shape == (9,)
    np.testing.assert_allclose(got[1:], want, atol=1e-4 * np.abs(want).max())


def _quadratic(seed=7, shape=(4, 5, 2)):
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    m = rng.normal(size=(n, n))
    return (m + m.T) / 2, rng.normal(size=shape)


# Closed form: for f(z) = ½ zᵀAz the saliency is |Az|, so each draw's distance is
# ‖|Ax| − |A(x+δ)|‖, with δ the library's own draws (evaluate.draw_noise); float64, 1e-12.
def test_robustness_closed_forms_on_a_quadratic():
    from jaxretina import explain

    a_mat, x = _quadratic()
    key, samples = jax.random.key(3), 5
    with jax.enable_x64(True):
        f = jax.tree_util.Partial(lambda m, z: 0.5 * z.ravel() @ (m @ z.ravel()), jnp.asarray(a_mat))
        phi = jax.tree_util.Partial(explain.saliency, f)
        xj = jnp.asarray(x)
        got = {"max": float(evaluate.max_sensitivity(phi, xj, key=key, samples=samples, radius=0.3, chunk=2)),
               "avg": float(evaluate.avg_sensitivity(phi, xj, key=key, samples=samples, radius=0.3, chunk=4)),
               "lip": float(evaluate.local_lipschitz(phi, xj, key=key, samples=samples, std=0.2))}
        uniform = [np.asarray(evaluate.draw_noise(key, s, x.shape, jnp.float64, gaussian=False, scale=0.3))
                   for s in range(samples)]
        normal = [np.asarray(evaluate.draw_noise(key, s, x.shape, jnp.float64, gaussian=True, scale=0.2))
                  for s in range(samples)]
    sal = lambda z: np.abs(a_mat @ z.ravel())  # noqa: E731
    sens = [np.linalg.norm(sal(x) - sal(x + d)) / np.linalg.norm(sal(x)) for d in uniform]
    lip = [np.linalg.norm(sal(x) - sal(x + d)) / np.linalg.norm(d) for d in normal]
    assert got["max"] == pytest.approx(max(sens), rel=1e-12)
    assert got["avg"] == pytest.approx(np.mean(sens), rel=1e-12)
    assert got["lip"] == pytest.approx(max(lip), rel=1e-12)
    assert np.abs(uniform).max() <= 0.3 and np.std(np.concatenate(normal)) == pytest.approx(0.2, rel=0.3)


# Anchor: Captum 0.9.0 sensitivity_max with its Saliency (|gradient|) on the small DenseNet pair,
# float64 on both sides, given the same uniform draws (a perturb_func returning them); tolerance
# 1e-8 relative.
@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")
def test_max_sensitivity_matches_captum(torch_dense):
    torch = pytest.importorskip("torch")
    from captum.attr import Saliency
    from captum.metrics import sensitivity_max
    from jaxretina import explain
    from tests.anchor_pairs import CLASS, f64, nchw

    model, variables, ref, x, target = torch_dense
    ref = ref.double()
    key, samples, radius = jax.random.key(4), 4, 0.05
    with jax.enable_x64(True):
        v, xj = f64(variables, x)
        phi = jax.tree_util.Partial(explain.saliency, explain.model_fn(model, v, target))
        got = float(evaluate.max_sensitivity(phi, xj, key=key, samples=samples, radius=radius))
        draws = np.stack([np.asarray(evaluate.draw_noise(key, s, x.shape, jnp.float64, gaussian=False, scale=radius))
                          for s in range(samples)])
    noise = torch.from_numpy(draws.transpose(0, 3, 1, 2).copy())
    want = float(sensitivity_max(Saliency(ref).attribute, nchw(x), perturb_func=lambda inp, r: inp + noise,
                                 perturb_radius=radius, n_perturb_samples=samples, target=CLASS)[0])
    assert got == pytest.approx(want, rel=1e-8)


# Anchors: scipy.stats.spearmanr (ties averaged), scikit-image 0.26 structural_similarity (its
# defaults: 7-wide uniform windows, sample covariance; data_range = both maps' range, as Quantus
# passes it; 2-D and 3-D), float64, tolerance 1e-12; top-k overlap against NumPy sets.
def test_agreement_matches_scipy_and_scikit_image():
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(8)
    for shape in ((20, 23), (9, 10, 11)):
        a = rng.normal(size=shape)
        b = a + rng.normal(size=shape)
        b_tied = np.round(b)
        with jax.enable_x64(True):
            for other in (b, b_tied):
                got = float(evaluate.spearman(jnp.asarray(a), jnp.asarray(other)))
                assert got == pytest.approx(spearmanr(a.ravel(), other.ravel())[0], abs=1e-12)
                rng_ab = float(max(a.max(), other.max()) - min(a.min(), other.min()))
                got = float(evaluate.ssim(jnp.asarray(a), jnp.asarray(other)))
                assert got == pytest.approx(structural_similarity(a, other, data_range=rng_ab), abs=1e-12)
            got = float(evaluate.top_k_overlap(jnp.asarray(a), jnp.asarray(b), k=30))
        top = lambda m: set(np.argsort(-m.ravel(), kind="stable")[:30])  # noqa: E731
        assert got == pytest.approx(len(top(a) & top(b)) / 30)
    with pytest.raises(ValueError, match="at least win_size = 7"):
        evaluate.ssim(jnp.ones((5, 9)), jnp.ones((5, 9)))
    with pytest.raises(ValueError, match="one shape and dtype"):
        evaluate.spearman(jnp.ones((5, 9)), jnp.ones((9, 5)))


# Closed form: for a linear f(z) = Σ w z, f(x) − f(x − I) = Σ w I, so the map a = w has
# infidelity 0 and a = 2w has mean_s (Σ w I_s)² (and 0 again once normalised: β = ½); float64.
def test_infidelity_closed_form_on_a_linear_model():
    w, x, _ = _linear_case()
    key = jax.random.key(9)
    with jax.enable_x64(True):
        f = jax.tree_util.Partial(lambda w, z: (w * z).sum(), jnp.asarray(w))
        zero = float(evaluate.infidelity(f, jnp.asarray(x), jnp.asarray(w), key=key, samples=6))
        double = float(evaluate.infidelity(f, jnp.asarray(x), jnp.asarray(2 * w), key=key, samples=6, chunk=4))
        scaled = float(evaluate.infidelity(f, jnp.asarray(x), jnp.asarray(2 * w), key=key, samples=6, normalize=True))
        draws = [np.asarray(evaluate.draw_noise(key, s, x.shape, jnp.float64, gaussian=True, scale=0.1))
                 for s in range(6)]
    assert zero == pytest.approx(0.0, abs=1e-20) and scaled == pytest.approx(0.0, abs=1e-20)
    assert double == pytest.approx(np.mean([(w * d).sum() ** 2 for d in draws]), rel=1e-12)


# Anchor: Captum 0.9.0 infidelity (plain and normalize=True) on the small DenseNet pair, float64,
# given the same Gaussian perturbations (a perturb_func returning them and x − I) and a random
# map of the input's shape; tolerance 1e-9 relative.
def test_infidelity_matches_captum(torch_dense):
    torch = pytest.importorskip("torch")
    from captum.metrics import infidelity
    from jaxretina import explain
    from tests.anchor_pairs import CLASS, f64, nchw

    model, variables, ref, x, target = torch_dense
    ref = ref.double()
    a = np.random.default_rng(10).normal(size=x.shape)
    key, samples = jax.random.key(11), 5
    with jax.enable_x64(True):
        v, xj = f64(variables, x)
        f = explain.model_fn(model, v, target)
        got = [float(evaluate.infidelity(f, xj, jnp.asarray(a), key=key, samples=samples, std=0.05, normalize=n))
               for n in (False, True)]
        draws = np.stack([np.asarray(evaluate.draw_noise(key, s, x.shape, jnp.float64, gaussian=True, scale=0.05))
                          for s in range(samples)])
    noise = torch.from_numpy(draws.transpose(0, 3, 1, 2).copy())
    attributions = nchw(a)
    for n, value in zip((False, True), got):
        want = float(infidelity(ref, lambda inp: (noise, inp - noise), nchw(x), attributions, target=CLASS,
                                n_perturb_samples=samples, normalize=n)[0])
        assert value == pytest.approx(want, rel=1e-9), n


def _small_grader():
    from jaxretina import models, preprocess
    from jaxretina.models import DenseNet

    grader = DenseNet(num_classes=3, growth_rate=4, block_config=(1, 1), num_init_features=8, bn_size=2,
                      normalization=preprocess.imagenet_normalization(255.0))
    return grader, models.random_variables(grader, (1, 32, 32, 3), seed=2)


def _grader_saliency(variables, x):   # one module-level function: compiled once
    from jaxretina import explain, targets

    return explain.saliency(explain.model_fn(_GRADER[0], variables, targets.class_logit(1)), x).sum(-1)


_GRADER = []


# Properties: parameter_layers lists the parameter dictionaries in creation order; reinitialised
# touches only the chosen layers, with PyTorch's reset_parameters values (kernels and biases in
# ±1/√fan_in, batch norms 1, 0, 0, 1); each step of parameter_randomisation is the similarity of
# the map of the model re-initialised by hand (cascading: the top l + 1 layers; independent:
# layer l) — Spearman by SciPy, float32 maps, 1e-5.
def test_parameter_randomisation_steps_are_the_reinitialised_models():
    from scipy.stats import spearmanr

    grader, variables = _small_grader()
    _GRADER[:] = [grader]
    x = jnp.asarray(np.random.default_rng(13).random((32, 32, 3)) * 255, jnp.float32)
    layers = evaluate.parameter_layers(grader, variables, x)
    assert layers[:3] == ["features/conv0", "features/norm0", "features/denseblock1/denselayer1/norm1"]
    assert layers[-2:] == ["features/norm5", "classifier"] and len(layers) == 2 + 4 + 3 + 4 + 1
    key = jax.random.key(12)
    chosen = np.zeros(len(layers), bool)
    chosen[[0, len(layers) - 1]] = True
    new = evaluate.reinitialised(variables, layers, key, jnp.asarray(chosen))
    for i, path in enumerate(layers):
        old_p, new_p = variables["params"], new["params"]
        for part in path.split("/"):
            old_p, new_p = old_p[part], new_p[part]
        if not chosen[i]:
            jax.tree.map(np.testing.assert_array_equal, new_p, old_p)
        elif "kernel" in new_p:
            bound = 1 / np.sqrt(np.prod(old_p["kernel"].shape[:-1]))
            assert np.abs(np.asarray(new_p["kernel"])).max() <= bound and not np.allclose(new_p["kernel"], old_p["kernel"])
    chosen_layers = layers[-4:]
    original = np.asarray(_grader_saliency(variables, x)).ravel()
    for mode in evaluate.RANDOMISATION_MODES:
        got = np.asarray(evaluate.parameter_randomisation(_grader_saliency, variables, x, layers=chosen_layers,
                                                          key=key, mode=mode, chunk=2))
        top_down = chosen_layers[::-1]
        for step in range(len(top_down)):
            pick = np.array([(j <= step) if mode == "cascading" else (j == step) for j in range(len(top_down))])
            by_hand = evaluate.reinitialised(variables, top_down, key, jnp.asarray(pick))
            want = spearmanr(original, np.asarray(_grader_saliency(by_hand, x)).ravel())[0]
            assert got[step] == pytest.approx(want, abs=1e-5), (mode, step)
        assert got.min() < 0.99   # re-initialising the top layers changes the map
    with pytest.raises(ValueError, match="unknown"):
        evaluate.parameter_randomisation(_grader_saliency, variables, x, layers=["nope"], key=key)


# Anchor: pytorch-grad-cam 1.5.7 CamMultImageConfidenceChange (the class logit of x ⊙ cam minus
# that of x) on the small DenseNet pair, float32, a random cam in [0, 1]; tolerance 1e-5 of the
# scores' scale.
def test_confidence_change_matches_pytorch_grad_cam(torch_dense):
    torch = pytest.importorskip("torch")
    pgc_metrics = pytest.importorskip("pytorch_grad_cam.metrics.cam_mult_image")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from jaxretina import explain
    from tests.anchor_pairs import CLASS, nchw

    model, variables, ref, x, target = torch_dense
    cam = np.random.default_rng(14).random(x.shape[:2]).astype(np.float32)
    want = pgc_metrics.CamMultImageConfidenceChange()(nchw(x, torch.float32), cam[None],
                                                       [ClassifierOutputTarget(CLASS)], ref.float().eval())
    got = float(evaluate.confidence_change(explain.model_fn(model, variables, target), jnp.asarray(x), jnp.asarray(cam)))
    scale = abs(float(explain.model_fn(model, variables, target)(jnp.asarray(x))))
    assert got == pytest.approx(float(np.ravel(want)[0]), abs=1e-5 * max(scale, 1.0))
