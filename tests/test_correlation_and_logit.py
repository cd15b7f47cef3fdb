"""Faithfulness correlation and the random-logit test against Quantus 0.6.0 on the same model,
inputs, maps and random draws, and their defining properties on closed-form models."""

import warnings

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from jaxretina import evaluate


# Closed form: for f(z) = Σ w·z and the reference 0, removing a subset S drops the score by
# Σ_S w·x, which is exactly the subset sum of the map a = w ⊙ x (value subsets), or of its
# channel sum (pixel subsets): the correlation is 1 (float64, 1e-12); a map of the wrong sign −1.
def test_faithfulness_correlation_is_one_for_the_exact_map_of_a_linear_model():
    rng = np.random.default_rng(0)
    w, x = rng.normal(size=(7, 8, 3)), rng.normal(size=(7, 8, 3))
    with jax.enable_x64(True):
        f = jax.tree_util.Partial(lambda m, z: (m * z).sum(), jnp.asarray(w))
        key, xj = jax.random.key(2), jnp.asarray(x)
        values = evaluate.faithfulness_correlation(f, xj, jnp.asarray(w * x), key=key, runs=12, subset=20, chunk=5)
        pixels = evaluate.faithfulness_correlation(f, xj, jnp.asarray((w * x).sum(-1)), key=key, runs=12, subset=9)
        wrong = evaluate.faithfulness_correlation(f, xj, jnp.asarray(-w * x), key=key, runs=12, subset=20)
    assert float(values) == pytest.approx(1.0, abs=1e-12)
    assert float(pixels) == pytest.approx(1.0, abs=1e-12)
    assert float(wrong) == pytest.approx(-1.0, abs=1e-12)


# Anchor: Quantus 0.6.0 FaithfulnessCorrelation (baseline 0, abs/normalise off, logits) on the
# small DenseNet pair, float32 forward passes on both sides, a random map of the image's shape,
# 16 runs of 224 values given the same subsets (numpy.random.choice replaced by
# evaluate.draw_subset's draws, re-indexed to Quantus' channel-first order); tolerance 1e-4.
def test_faithfulness_correlation_matches_quantus_with_the_same_subsets(torch_dense, monkeypatch):
    quantus = pytest.importorskip("quantus")
    from jaxretina import explain
    from tests.anchor_pairs import CLASS

    model, variables, ref, x, target = torch_dense
    h, w, c = x.shape
    a = np.random.default_rng(3).normal(size=x.shape).astype(np.float32)
    key, runs, size = jax.random.key(4), 16, 224
    draws = np.asarray(jax.vmap(lambda s: evaluate.draw_subset(key, s, a.size, size))(jnp.arange(runs)))
    hh, ww, cc = np.unravel_index(draws, (h, w, c))
    queue = list(cc * h * w + hh * w + ww)                        # the same values, flat in (C, H, W)

    def same_subset(n, k, replace=True):
        assert (n, k, replace) == (a.size, size, False)
        return queue.pop(0)

    metric = quantus.FaithfulnessCorrelation(nr_runs=runs, subset_size=size, perturb_baseline=0.0, abs=False,
                                             normalise=False, disable_warnings=True, display_progressbar=False)
    monkeypatch.setattr(np.random, "choice", same_subset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = metric(model=ref.float().eval(), x_batch=x.transpose(2, 0, 1)[None].copy(), y_batch=np.array([CLASS]),
                      a_batch=a.transpose(2, 0, 1)[None].copy(), channel_first=True, softmax=False, device="cpu")[0]
    monkeypatch.undo()
    assert not queue
    f = explain.model_fn(model, variables, target)
    got = float(evaluate.faithfulness_correlation(f, jnp.asarray(x), jnp.asarray(a), key=key, runs=runs,
                                                  subset=size, chunk=8))
    assert got == pytest.approx(float(want), abs=1e-4)


# Anchor: Quantus 0.6.0 RandomLogit (abs/normalise off, its SSIM of the flattened maps) on the
# small DenseNet pair, float32: both sides explain with the channel-summed gradient of a class
# logit (PyTorch autograd there, jax.grad here), and Quantus' draw of the other class
# (numpy.random.randint) is replaced by evaluate.draw_other_class's; tolerance 1e-4.
def test_random_logit_matches_quantus_with_the_same_class(torch_dense, monkeypatch):
    torch = pytest.importorskip("torch")
    quantus = pytest.importorskip("quantus")
    from jaxretina import explain, targets
    from tests.anchor_pairs import CLASS, nchw

    model, variables, ref, x, _ = torch_dense
    net, classes, key = ref.float().eval(), 3, jax.random.key(5)

    def torch_saliency(model, inputs, targets, **kwargs):
        z = torch.tensor(np.asarray(inputs), dtype=torch.float32, requires_grad=True)
        out = net(z)
        out[torch.arange(len(z)), torch.as_tensor(np.asarray(targets))].sum().backward()
        return z.grad.sum(1, keepdim=True).numpy()

    other = int(evaluate.draw_other_class(key, CLASS, classes))
    monkeypatch.setattr(np.random, "randint", lambda lo, hi, n: np.full(n, other - (other > CLASS)))
    metric = quantus.RandomLogit(num_classes=classes, abs=False, normalise=False, disable_warnings=True,
                                 display_progressbar=False)
    xb = nchw(x, torch.float32).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = metric(model=net, x_batch=xb, y_batch=np.array([CLASS]),
                      a_batch=torch_saliency(None, xb, [CLASS]), explain_func=torch_saliency, channel_first=True,
                      device="cpu")[0]
    monkeypatch.undo()

    def class_saliency(z, k):
        return explain.saliency(explain.model_fn(model, variables, targets.class_logit(k)), z, abs=False).sum(-1)

    flat_ssim = lambda p, q: evaluate.ssim(p.reshape(-1), q.reshape(-1))   # noqa: E731
    got = float(evaluate.random_logit(class_saliency, jnp.asarray(x), CLASS, classes=classes, key=key,
                                      similarity=flat_ssim))
    assert other != CLASS and 0 <= other < classes
    assert got == pytest.approx(float(want), abs=1e-4)


# The draw of the other class is uniform over the others (never c), and a map that ignores the
# class (a class-independent explainer) scores 1 under Spearman.
def test_random_logit_draws_another_class_and_a_class_blind_map_scores_one():
    draws = np.asarray(jax.vmap(lambda k: evaluate.draw_other_class(k, 2, 5))(jax.random.split(jax.random.key(0), 4000)))
    assert set(draws.tolist()) == {0, 1, 3, 4}
    assert np.abs(np.bincount(draws, minlength=5)[[0, 1, 3, 4]] / 4000 - 0.25).max() < 0.03
    blind = jax.tree_util.Partial(lambda z, k: jnp.sin(z).sum(-1))
    x = jnp.asarray(np.random.default_rng(1).normal(size=(9, 9, 2)), jnp.float32)
    s = evaluate.random_logit(blind, x, 1, classes=4, key=jax.random.key(1), similarity=evaluate.spearman)
    assert float(s) == pytest.approx(1.0, abs=1e-6)


def test_hostile_options_get_clear_errors():
    f = jax.tree_util.Partial(lambda z: z.sum())
    x, a, key = jnp.ones((6, 7, 2)), jnp.ones((6, 7)), jax.random.key(0)
    with pytest.raises(ValueError, match="runs must be an integer ≥ 2"):
        evaluate.faithfulness_correlation(f, x, a, key=key, runs=1)
    with pytest.raises(ValueError, match="subset must be an integer in \\[1, 42\\)"):
        evaluate.faithfulness_correlation(f, x, a, key=key, subset=42)
    with pytest.raises(ValueError, match="key is required"):
        evaluate.faithfulness_correlation(f, x, a, key=None, subset=4)
    phi = jax.tree_util.Partial(lambda z, k: z.sum(-1))
    with pytest.raises(ValueError, match="classes must be an integer ≥ 2"):
        evaluate.random_logit(phi, x, 0, classes=1, key=key)
    with pytest.raises(ValueError, match="class 5 out of range for 3"):
        evaluate.random_logit(phi, x, 5, classes=3, key=key)
