"""Fine-tuning: loss falls on the fake dataset, frozen layers (and their BatchNorm statistics)
stay put, partial-training BatchNorm semantics equal PyTorch's, resume reproduces an
uninterrupted run, the learning-rate schedule, and errors."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp
from flax import traverse_util

from jaxretina import data, models, preprocess, train
from jaxretina.models.layers import Training

SMALL = dict(growth_rate=8, block_config=(2, 3), num_init_features=16, bn_size=2)
TRAINABLE = ("features.denseblock2.denselayer3", "classifier")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = data.make_fake_dataset(tmp_path_factory.mktemp("dr"), per_class=6, size=80, seed=1)
    src = data.kaggle_manual_dir(root / "manual", "train")
    model = models.DenseNet121(num_classes=5, normalization=preprocess.imagenet_normalization(255.0), **SMALL)
    variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    return src, model, variables


def _order(src):
    return lambda start: data.class_balanced(src.labels, data.SEED001_FRACTIONS, 16, seed=2, start=start)


def _flat(tree):
    return {".".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}


def test_loss_falls_and_frozen_layers_stay(setup):
    src, model, variables = setup
    trainer = train.Trainer(model, variables, trainable=TRAINABLE, learning_rate=3e-3)
    state, history = trainer.fit(src, _order(src), steps=30, size=64, progress=False)
    losses = [h["loss"] for h in history]
    assert len(losses) == 30 and all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5])
    before, after = _flat(variables["params"]), _flat(trainer.variables(state)["params"])
    for name in before:
        moved = not np.array_equal(before[name], after[name])
        assert moved == Training(TRAINABLE).trains(name.rsplit(".", 1)[0]), name
    sb, sa = _flat(variables["batch_stats"]), _flat(state.batch_stats)
    for name in sb:
        moved = not np.array_equal(sb[name], sa[name])
        assert moved == name.startswith("features.denseblock2.denselayer3."), name
    # Adam moments only for the trainable parameters
    n_trainable = sum(v.size for k, v in before.items() if Training(TRAINABLE).trains(k.rsplit(".", 1)[0]))
    assert sum(x.size for x in jax.tree.leaves(state.opt_state)) == 2 * n_trainable + 1
    ev = trainer.evaluate(state, src, batch_size=8, size=64)
    assert ev["probabilities"].shape == (len(src), 5) and ev["labels"].tolist() == src.labels.tolist()


def test_resume_reproduces_an_uninterrupted_run(setup, tmp_path):
    src, model, variables = setup
    trainer = train.Trainer(model, variables, trainable=TRAINABLE, learning_rate=1e-3)
    straight, _ = trainer.fit(src, _order(src), steps=8, size=48, progress=False)
    first, h1 = trainer.fit(src, _order(src), steps=5, size=48, progress=False, checkpoint_dir=tmp_path / "ck",
                            checkpoint_every=3)
    assert len(h1) == 5 and sorted(p.name for p in (tmp_path / "ck").iterdir() if p.name.isdigit()) == ["3", "5"]
    resumed, h2 = trainer.fit(src, _order(src), steps=8, size=48, progress=False, checkpoint_dir=tmp_path / "ck",
                              checkpoint_every=3)
    assert int(resumed.step) == 8 and len(h2) == 3
    a, b = _flat(trainer.variables(straight)), _flat(trainer.variables(resumed))
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-6, atol=1e-7, err_msg=k)


def test_partial_training_batch_norm_matches_pytorch():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    from converters.densenet import from_state_dict
    from tests.reference.densenet_torch import randomize

    tv = randomize(torchvision.models.DenseNet(num_classes=3, **SMALL), seed=4)
    # (the torch forward below updates these buffers in place; the converter must not alias them)
    model, variables, _ = from_state_dict({k: v.numpy() for k, v in tv.state_dict().items()}, "t", **SMALL)
    x = np.random.default_rng(0).normal(size=(4, 40, 40, 3)).astype(np.float32)
    tv.eval()
    tv.features.denseblock2.denselayer3.train()           # PyTorch: only this layer in training mode
    with torch.no_grad():
        want = tv(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    got, updates = jax.jit(lambda v, z: model.apply(v, z, train=Training(("features.denseblock2.denselayer3",)),
                                                    mutable=["batch_stats"]))(variables, x)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-5)
    ours = np.asarray(updates["batch_stats"]["features"]["denseblock2"]["denselayer3"]["norm1"]["mean"])
    np.testing.assert_allclose(ours, tv.features.denseblock2.denselayer3.norm1.running_mean.numpy(), rtol=1e-5,
                               atol=1e-6)


def test_schedule_and_presets():
    lr = train.piecewise_constant(*train.SEED001_SCHEDULE)
    for step, want in [(0, 1e-3), (549, 1e-3), (550, 2e-4), (899, 2e-4), (900, 5e-5), (1394, 5e-5)]:
        assert float(lr(step)) == pytest.approx(want), step
    dense = jax.eval_shape(models.DenseNet121(num_classes=5).init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    chosen = train.trainable_paths(dense["params"], train.SEED002_TRAINABLE)
    assert {k[:3] for k in chosen if k[0] == "features"} == {("features", "denseblock4", f"denselayer{i}")
                                                             for i in (14, 15, 16)}
    inc = jax.eval_shape(models.InceptionV3(num_classes=5, head="seed001").init, jax.random.key(0),
                         jnp.zeros((1, 75, 75, 3)))
    assert {k[:2] for k in train.trainable_paths(inc["params"], train.SEED001_TRAINABLE)} == {
        ("head", "fc1"), ("head", "fc2"), ("head", "out")}


def test_errors(setup):
    _, model, variables = setup
    with pytest.raises(ValueError, match=r"\['features.denseblock9'\] match no parameters"):
        train.Trainer(model, variables, trainable=("features.denseblock9",))
    with pytest.raises(ValueError, match="one positive length per value"):
        train.piecewise_constant((1e-3, 1e-4), (10,))


def test_transfer_variables_keeps_matching_and_reinitialises_the_head(setup):
    _, model, variables = setup
    five = model.clone(num_classes=7)
    moved, fresh = train.transfer_variables(variables, five)
    assert sorted(fresh) == ["params.classifier.bias", "params.classifier.kernel"]
    a, b = _flat(variables), _flat(moved)
    assert all(np.array_equal(a[k], b[k]) for k in b if not k.startswith("params.classifier"))
    assert b["params.classifier.kernel"].shape[-1] == 7


def test_trained_variables_save_and_load_back(setup, tmp_path):
    import jaxretina

    _, model, variables = setup
    trainer = train.Trainer(model, variables, trainable=TRAINABLE, learning_rate=1e-3)
    state = trainer.init()
    out = jaxretina.save("densenet121", model, trainer.variables(state), tmp_path / "tuned", extra={"steps": 0})
    again, loaded = jaxretina.load("densenet121", out)
    assert again == model
    x = jnp.full((1, 48, 48, 3), 100.0)
    np.testing.assert_allclose(np.asarray(again.apply(loaded, x)), np.asarray(model.apply(trainer.variables(state), x)),
                               rtol=1e-6)


def test_augment_fundus_is_a_random_rigid_motion_and_jitter():
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.uniform(0, 255, (3, 33, 33, 3)), jnp.float32)
    # identity settings: no rotation, shift, gray or jitter -> only flips (which are exact)
    out = train.augment_fundus(jax.random.key(0), images, max_degrees=0.0, max_shift=0.0, gray_probability=0.0,
                               jitter=0.0)
    for o, im in zip(np.asarray(out), np.asarray(images)):
        candidates = [im, im[::-1], im[:, ::-1], im[::-1, ::-1]]
        assert min(np.abs(o - c).max() for c in candidates) < 1e-3
    # rotations are rigid about the centre: a bright blob keeps its distance from it
    blob = np.zeros((1, 41, 41, 3), np.float32)
    blob[0, 20 - 2 : 20 + 3, 30 - 2 : 30 + 3] = 255.0                       # centre (20, 30): radius 10
    for k in range(4):
        turned = np.asarray(train.augment_fundus(jax.random.key(10 + k), jnp.asarray(blob), max_shift=0.0,
                                                 gray_probability=0.0, jitter=0.0))[0, ..., 0]
        rows, cols = np.mgrid[:41, :41]
        r, c = (turned * rows).sum() / turned.sum(), (turned * cols).sum() / turned.sum()   # blob centroid
        assert abs(np.hypot(r - 20, c - 20) - 10) <= 0.5 and turned.sum() == pytest.approx(blob[0, ..., 0].sum(),
                                                                                        rel=0.02)
    out = train.augment_fundus(jax.random.key(1), images, max_degrees=0.0, max_shift=0.0, gray_probability=1.0,
                               jitter=0.0)
    assert np.allclose(np.asarray(out)[..., 0], np.asarray(out)[..., 2])          # grayscale
    a = train.augment_fundus(jax.random.key(2), images)
    assert a.shape == images.shape and float(a.min()) >= 0 and float(a.max()) <= 255
    assert not np.allclose(np.asarray(a), np.asarray(train.augment_fundus(jax.random.key(3), images)))
