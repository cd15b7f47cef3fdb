"""The affine stem split (models/stem.py) and Integrated Gradients through it.

Properties, not stored numbers: head(stem(x)) is the model; the stem is affine along the IG
path; IG with the stem evaluated once equals IG through the whole model at every step (float64:
the identity is exact, so only rounding separates them); errors name what was expected."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxretina import explain, targets
from jaxretina.models import DRIU, DEEPDRAW_OPTIONS, DenseNet, InceptionV3, random_variables


def _small_densenet():
    return DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16, num_classes=3)


CASES = {
    "driu": (lambda: DRIU(), (21, 26), targets.segmentation_sum()),
    "driu_deepdraw": (lambda: DRIU(**DEEPDRAW_OPTIONS), (48, 40), targets.segmentation_sum()),
    "densenet": (_small_densenet, (40, 44), targets.class_logit(1)),
    "inception": (lambda: InceptionV3(num_classes=3, transform_input=True), (75, 80), targets.class_logit(1)),
}


def _setup(name, dtype=jnp.float32):
    make, (h, w), target = CASES[name]
    model = make()
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.uniform(0, 1, (h, w, 3)), dtype)
    variables = random_variables(model, x[None].shape, seed=1)   # NumPy draws: no init to compile
    variables = jax.tree.map(lambda a: np.asarray(a, dtype), variables)   # on the host: no program per shape
    return model, variables, target, x


@pytest.mark.parametrize("name", CASES)
def test_head_of_stem_is_the_model_and_the_stem_is_affine(name):
    model, variables, _, x = _setup(name)
    apply = jax.jit(model.apply, static_argnames="part")  # op-by-op Inception takes ~30 s
    b = jnp.full_like(x, 0.5)
    z = apply(variables, x[None], part="stem")
    np.testing.assert_allclose(apply(variables, z, part="head"), apply(variables, x[None]), rtol=1e-6, atol=1e-6)
    zb = apply(variables, b[None], part="stem")
    for alpha in (0.25, 0.8):
        on_path = apply(variables, (b + alpha * (x - b))[None], part="stem")
        np.testing.assert_allclose(on_path, zb + alpha * (z - zb), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,kw", [
    ("driu", dict(steps=4, chunk="all")),                  # one chunk (full-width DRIU in float64: one program)
    ("densenet", dict(steps=6, chunk=4)),                  # chunked sum, short last chunk
    ("densenet", dict(steps="auto", rule="clenshaw_curtis", tol=0.05)),  # stored per-node gradients
    ("densenet", dict(steps="auto", tol=0.05)),
])
def test_ig_through_the_stem_equals_ig_through_the_whole_model(name, kw):
    with jax.enable_x64(True):
        model, variables, target, x = _setup(name, jnp.float64)
        f = explain.model_fn(model, variables, target)
        fast = explain.integrated_gradients(f, x, baseline=0.5, **kw)
        full = explain.integrated_gradients(f, x, baseline=0.5, stem=False, **kw)
        scale = float(jnp.abs(full.values).max())
        assert float(jnp.abs(fast.values - full.values).max()) <= 1e-12 * scale
        assert abs(float(fast.delta - full.delta)) <= 1e-10 * max(1.0, abs(float(full.delta)))
        assert fast.steps == full.steps


def test_stem_path_is_batchable():
    model, variables, target, x = _setup("densenet")
    f = explain.model_fn(model, variables, target)
    xs = jnp.stack([x, x[::-1], 1 - x])
    batched = jax.vmap(lambda xi: explain.integrated_gradients(f, xi, baseline=0.0, steps=6, chunk=3))(xs)
    for i in range(3):
        one = explain.integrated_gradients(f, xs[i], baseline=0.0, steps=6, chunk=3)
        np.testing.assert_allclose(batched.values[i], one.values, rtol=1e-4, atol=1e-6)


def test_part_errors():
    model, variables, _, x = _setup("driu")
    with pytest.raises(ValueError, match="part must be one of"):
        model.apply(variables, x[None], part="middle")
    with pytest.raises(ValueError, match=r"expects the stem's output \(N, H, W, 64\); found shape \(1, 21, 26, 3\)"):
        model.apply(variables, x[None], part="head")
    model, variables, _, x = _setup("densenet")
    with pytest.raises(ValueError, match=r"DenseNet part='head' expects the stem's output \(N, H, W, 16\)"):
        model.apply(variables, x[None], part="head")
