"""Whole volumes: the sliding-window grid and overlap averaging against a NumPy loop, DS6's
per-patch normalisation, inference and attribution equal to the model on a single patch, no
recompiles, NIfTI round trips and errors, the vessel phantom, MIP/montage views."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp
from jax.tree_util import Partial

from jaxretina import data, explain, targets, views, volumes


class _Squash:
    """A hashable patch function with data: ``tanh(p · s) + mean(p)`` (nonlinear, patch-dependent)."""

    def __call__(self, s, p):
        return jnp.tanh(p * s) + p.mean()

    def __hash__(self):
        return 7

    def __eq__(self, other):
        return isinstance(other, _Squash)


def _numpy_window(volume, patch, overlap, normalize):
    d, h, w, _ = volume.shape
    total, count = np.zeros_like(volume), np.zeros_like(volume[..., :1])
    starts = []
    for n in (d, h, w):  # independent statement of the grid: stride p - overlap·p, last flush
        s = list(range(0, n - patch + 1, patch - int(round(overlap * patch))))
        starts.append(s if s[-1] == n - patch else s + [n - patch])
    for i in starts[0]:
        for j in starts[1]:
            for k in starts[2]:
                p = volume[i:i + patch, j:j + patch, k:k + patch]
                m = np.tanh(p * 0.7) + p.mean()
                if normalize == "max":
                    m = m / m.max()
                elif normalize == "absmax":
                    m = m / np.abs(m).max()
                total[i:i + patch, j:j + patch, k:k + patch] += m
                count[i:i + patch, j:j + patch, k:k + patch] += 1
    return total / count


@pytest.mark.parametrize("normalize", [None, "max", "absmax"])
def test_sliding_window_matches_a_numpy_loop(normalize):
    vol = np.random.default_rng(0).normal(size=(40, 36, 16, 2)).astype(np.float32)
    f = Partial(_Squash(), jnp.float32(0.7))
    got = volumes.sliding_window(f, vol, patch=16, overlap=0.5, batch=3, normalize=normalize)
    np.testing.assert_allclose(np.asarray(got), _numpy_window(vol, 16, 0.5, normalize), rtol=1e-5, atol=1e-5)
    again = volumes.sliding_window(f, vol, patch=16, overlap=0.5, batch=1, normalize=normalize)
    np.testing.assert_allclose(np.asarray(again), np.asarray(got), rtol=1e-6, atol=1e-6)


def test_grid_covers_every_voxel_and_short_axes_are_padded():
    grid = volumes.patch_origins((100, 64, 70), 64, 0.5)
    assert sorted(set(grid[:, 0])) == [0, 32, 36] and sorted(set(grid[:, 1])) == [0]
    assert sorted(set(grid[:, 2])) == [0, 6]
    ones = Partial(_Squash(), jnp.float32(0.0))   # tanh(0) + mean: the patch mean, averaged
    vol = np.ones((10, 20, 16, 1), np.float32)
    out = volumes.sliding_window(ones, vol, patch=16, overlap=0.25)
    # padded to 16 on the first axis with zeros: patch mean 10/16 there
    assert out.shape == vol.shape and np.allclose(np.asarray(out), 10 / 16)


@pytest.fixture(scope="module")
def unet(unet_small):
    return unet_small


def test_single_patch_equals_the_model_and_the_explainer(unet):
    model, variables = unet
    vol = jnp.asarray(np.random.default_rng(1).normal(size=(16, 16, 16, 1)), jnp.float32)
    prob = volumes.predict(model.clone(deep_supervision=True), variables, vol, patch=16, normalize=None)
    want = jax.nn.sigmoid(jax.jit(model.apply)(variables, vol[None])[0])
    np.testing.assert_allclose(np.asarray(prob), np.asarray(want), rtol=1e-5, atol=1e-6)
    ds6 = volumes.predict(model, variables, vol, patch=16)   # DS6: divided by the patch maximum
    assert abs(float(ds6.max()) - 1.0) < 1e-6
    target = targets.segmentation_sum()
    gbp = volumes.attribute("guided_backprop", model, variables, vol, target, patch=16, normalize=None)
    np.testing.assert_allclose(np.asarray(gbp), np.asarray(explain.guided_backprop(model, variables, vol, target)),
                               rtol=1e-5, atol=1e-7)
    ig = volumes.attribute("integrated_gradients", model, variables, vol, target, patch=16, baseline=0.0, steps=4)
    want = explain.integrated_gradients(explain.model_fn(model, variables, target), vol, baseline=0.0, steps=4).values
    np.testing.assert_allclose(np.asarray(ig), np.asarray(want / jnp.abs(want).max()), rtol=1e-4, atol=1e-6)
    layers = volumes.attribute("layerwise_guided_backprop", model, variables, vol, patch=16, layers=["Conv1", "Conv"])
    assert layers.shape == (2, 16, 16, 16, 1)


def test_one_program_per_shape_and_errors(unet):
    model, variables = unet
    vol = np.random.default_rng(2).normal(size=(32, 16, 24, 1)).astype(np.float32)
    volumes.predict(model, variables, vol, patch=16, batch=2)
    from jaxretina.explain import gradients

    programs = lambda: (volumes._mapped._cache_size(), volumes._accumulate._cache_size(),  # noqa: E731
                        gradients.input_gradient._cache_size())
    mapped, acc, grad = programs()
    volumes.predict(model, variables, vol + 1, patch=16, batch=2)   # another volume of the same shape
    assert programs() == (mapped, acc, grad)
    volumes.attribute("saliency", model, variables, vol, targets.argmax_score(1), patch=16, batch=1)
    volumes.attribute("saliency", model, variables, vol * 2, targets.argmax_score(1), patch=16, batch=1)
    assert programs() == (mapped, acc + 1, grad + 1)
    with pytest.raises(ValueError, match="rank 4"):
        volumes.predict(model, variables, vol[..., 0], patch=16)
    with pytest.raises(ValueError, match="unknown method"):
        volumes.attribute("lime", model, variables, vol, patch=16)
    with pytest.raises(ValueError, match="needs a target"):
        volumes.attribute("deconvnet", model, variables, vol, patch=16)
    with pytest.raises(ValueError, match="overlap"):
        volumes.predict(model, variables, vol, patch=16, overlap=1.0)
    with pytest.raises(ValueError, match="normalize"):
        volumes.predict(model, variables, vol, patch=16, normalize="mean")
    with pytest.raises(ValueError, match="NaN"):
        volumes.predict(model, variables, np.full_like(vol, np.nan), patch=16)


def test_nifti_round_trip_and_errors(tmp_path):
    ph = data.vessel_phantom((16, 20, 24), seed=1)
    affine = np.diag([0.3, 0.3, 0.4, 1.0])
    path = data.write_nifti(tmp_path / "sub" / "tof.nii.gz", ph.volume, affine=affine)
    vol = data.read_nifti(path)
    np.testing.assert_array_equal(vol.array, ph.volume)
    np.testing.assert_allclose(vol.affine, affine)
    assert np.allclose(vol.zooms, (0.3, 0.3, 0.4))
    import nibabel as nib   # independent reader: axes in file order
    assert nib.load(path).shape == (16, 20, 24)
    maps = data.write_nifti(tmp_path / "layers.nii", np.zeros((3, 16, 20, 24, 1)))
    assert nib.load(maps).shape == (16, 20, 24, 3)
    with pytest.raises(FileNotFoundError):
        data.read_nifti(tmp_path / "missing.nii.gz")
    (tmp_path / "junk.nii.gz").write_bytes(b"not a nifti file at all")
    with pytest.raises(ValueError, match="not a readable NIfTI"):
        data.read_nifti(tmp_path / "junk.nii.gz")
    raw = (tmp_path / "sub" / "tof.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt|not a readable"):
        data.read_nifti(tmp_path / "cut.nii.gz")
    with pytest.raises(ValueError, match="affine must be 4x4"):
        data.write_nifti(tmp_path / "bad.nii", np.zeros((4, 4, 4)), affine=np.eye(3))


def test_phantom_is_deterministic_and_tubular():
    a, b = data.vessel_phantom((32, 32, 32), seed=4), data.vessel_phantom((32, 32, 32), seed=4)
    np.testing.assert_array_equal(a.volume, b.volume)
    assert not np.array_equal(a.volume, data.vessel_phantom((32, 32, 32), seed=5).volume)
    assert 0.002 < a.mask.mean() < 0.2
    # vessels are brighter than background by about the contrast
    v = a.volume[..., 0]
    assert v[a.mask].mean() - v[~a.mask].mean() > 0.4
    # every segment's midpoint lies in the mask (tubes follow their centre lines)
    mid = np.round(a.segments.mean(1)).astype(int)
    assert a.mask[tuple(mid.T)].all()


def test_views():
    v = np.zeros((4, 5, 6))
    v[2, 3, 4] = 5.0
    assert views.mip(v, 0).shape == (5, 6) and views.mip(v, 0)[3, 4] == 5.0 and views.mip(v, 2)[2, 3] == 5.0
    m = views.montage(np.arange(4)[:, None, None] * np.ones((4, 2, 3)), axis=0, slices=4, cols=2)
    assert m.shape == (4, 6) and m[0, 0] == 0 and m[0, 3] == 1 and m[2, 0] == 2 and m[3, 5] == 3
    assert np.allclose(views.unit_scale(np.array([-2.0, 1.0])), [1.0, 0.5])
    assert np.allclose(views.unit_scale(np.array([-2.0, 1.0]), signed="positive"), [0.0, 1.0])
    rgb = views.red_overlay(np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]]))
    assert rgb.tolist() == [[[255, 0, 0], [255, 255, 255]]]
    panel = views.volume_panel(np.random.default_rng(0).random((8, 10, 12, 1)), np.zeros((8, 10, 12)), slices=4)
    assert panel.dtype == np.uint8 and panel.shape == (20, 12 + 4 + 2 * 12, 3)
    with pytest.raises(ValueError, match="differs"):
        views.volume_panel(np.zeros((8, 10, 12)), np.zeros((8, 10, 11)))
    with pytest.raises(ValueError, match="axis must be"):
        views.mip(v, 3)
