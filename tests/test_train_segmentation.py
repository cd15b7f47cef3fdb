"""Seed 000's DRIU retraining: BCE against its formula, every layer trains, exact resume, evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxretina import data, metrics, preprocess, train
from jaxretina.models import DRIU


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = data.make_fake_drive(tmp_path_factory.mktemp("drive"), n_train=3, n_test=2, height=40, width=36)
    model = DRIU()
    src = data.drive_folder(root, "training")
    images, vessels, masks = src.arrays()
    variables = jax.jit(model.init)(jax.random.key(0), preprocess.seed000_driu_input(images[:1], masks[:1]))
    forward = jax.jit(lambda v, images, masks: model.apply(v, preprocess.seed000_driu_input(images, masks)))
    return model, variables, root, src, forward


def _order(src):
    return lambda start: data.shuffled(len(src), 1, seed=3, start=start)


def _flat(tree):
    return {k: np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}


def _bce(z, y, w):
    # −[y log σ(z) + (1 − y) log(1 − σ(z))], weighted mean; log σ(z) = −log(1 + e^{−z})
    z, y, w = (np.asarray(a, np.float64) for a in (z, y, w))
    loss = y * np.logaddexp(0, -z) + (1 - y) * np.logaddexp(0, z)
    return (loss * w).sum() / w.sum()


@pytest.mark.parametrize("region", ["image", "fov"])
def test_loss_is_the_bce_formula(setup, region):
    model, variables, _, src, forward = setup
    trainer = train.SegmentationTrainer(model, variables, region=region, learning_rate=1e-4)
    images, vessels, masks = src.arrays()
    state = trainer.init()
    loss, (_, acc) = jax.jit(trainer._loss)(state.trainable, state, jnp.asarray(images), jnp.asarray(vessels),
                                            jnp.asarray(masks), jnp.ones(3, bool))
    z = np.asarray(forward(variables, images, masks))[..., 0]
    w = masks if region == "fov" else np.ones_like(masks)
    assert float(loss) == pytest.approx(_bce(z, vessels, w), rel=1e-5)
    assert float(acc) == pytest.approx((((z > 0) == vessels) * w).sum() / w.sum(), rel=1e-6)


def test_every_layer_trains_resume_is_exact_and_evaluate_reports(setup, tmp_path):
    model, variables, root, src, forward = setup
    trainer = train.SegmentationTrainer(model, variables, learning_rate=1e-4)
    full, history = trainer.fit(src, _order(src), steps=4, progress=False)
    assert len(history) == 4
    arrays = [jnp.asarray(a) for a in src.arrays()] + [jnp.ones(3, bool)]
    loss = jax.jit(trainer._loss)
    start = trainer.init()
    assert float(loss(full.trainable, full, *arrays)[0]) < float(loss(start.trainable, start, *arrays)[0])
    before, after = _flat(variables["params"]), _flat(trainer.variables(full)["params"])
    assert all(not np.array_equal(before[k], after[k]) for k in before)            # "all": trunk included

    ckpt = tmp_path / "ckpt"
    trainer.fit(src, _order(src), steps=2, checkpoint_dir=ckpt, checkpoint_every=1, progress=False)
    resumed, rest = trainer.fit(src, _order(src), steps=4, checkpoint_dir=ckpt, checkpoint_every=1, progress=False)
    assert int(resumed.step) == 4 and len(rest) == 2
    for k, v in _flat(trainer.variables(full)["params"]).items():
        np.testing.assert_allclose(_flat(trainer.variables(resumed)["params"])[k], v, rtol=1e-6, atol=1e-7)

    test = data.drive_folder(root, "test")
    out = trainer.evaluate(full, test)
    images, vessels, masks = test.arrays()
    probs = jax.nn.sigmoid(forward(trainer.variables(full), images, masks))[..., 0]
    np.testing.assert_allclose(out["probabilities"], probs, rtol=1e-5, atol=1e-6)
    assert out["names"] == test.names
    assert out["report"]["mean_miou"] == pytest.approx(float(metrics.masked_miou(probs > 0.5, vessels, masks).mean()),
                                                       rel=1e-6)


def test_named_layers_only_and_errors(setup):
    model, variables, _, src, forward = setup
    trainer = train.SegmentationTrainer(model, variables, trainable=("new_score_weighting",), learning_rate=1e-3)
    state, _ = trainer.fit(src, _order(src), steps=1, progress=False)
    before, after = _flat(variables["params"]), _flat(trainer.variables(state)["params"])
    changed = {k[0] for k in before if not np.array_equal(before[k], after[k])}
    assert changed == {"new_score_weighting"}
    with pytest.raises(ValueError, match="region must be"):
        train.SegmentationTrainer(model, variables, region="mask")
    schedule = train.seed000_schedule(100)
    assert float(schedule(0)) == pytest.approx(1e-6) and float(schedule(100)) == pytest.approx(1e-7)
