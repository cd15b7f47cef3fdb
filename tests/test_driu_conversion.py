"""DRIU from .caffemodel files (V2 and V1) and from a deepdraw state dict, number for number
against the PyTorch reference in tests/reference/driu_torch.py on random weights."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp

torch = pytest.importorskip("torch")

import jaxretina  # noqa: E402
from tests.reference.caffe_writer import driu_net_bytes  # noqa: E402
from tests.reference.driu_torch import driu_reference, random_driu_weights  # noqa: E402

RTOL = 1e-5  # max |jax - reference| / max |reference|, float32 vs float64, highest precision


@pytest.fixture(scope="module")
def vessel_weights():
    return random_driu_weights("vessel", seed=3)


@pytest.fixture(scope="module")
def odd_input():
    return np.random.default_rng(5).normal(0, 1, (2, 3, 45, 53)).astype(np.float32)  # NCHW


def _run(model, variables, x_nchw):
    with jax.default_matmul_precision("highest"):
        out = jax.jit(model.apply)(variables, jnp.asarray(x_nchw.transpose(0, 2, 3, 1)))
    return np.asarray(out, np.float64).transpose(0, 3, 1, 2)


def _rel(got, want):
    return np.abs(got - want).max() / np.abs(want).max()


def test_caffe_v2_vessel_matches_reference(tmp_path, vessel_weights, odd_input):
    path = tmp_path / "DRIU_DRIVE.caffemodel"
    path.write_bytes(driu_net_bytes(vessel_weights))
    model, variables = jaxretina.load("driu", path)
    assert model.variant == "vessel" and model.ceil_mode and model.crop_offsets == (0, 2, 4, 8)
    want = driu_reference(vessel_weights, odd_input)
    assert _rel(_run(model, variables, odd_input), want) < RTOL
    # The test can tell a wrong deconvolution flip: the reference with flipped kernels differs.
    flipped = {k: ([w[..., ::-1, ::-1].copy(), b] if k.startswith("upsample") else [w, b])
               for k, (w, b) in vessel_weights.items()}
    assert _rel(driu_reference(flipped, odd_input), want) > 100 * RTOL


def test_caffe_v1_unpacked_legacy_file(tmp_path, vessel_weights, odd_input):
    path = tmp_path / "old.caffemodel"
    path.write_bytes(driu_net_bytes(vessel_weights, v1=True, packed=False, legacy_shape=True))
    model, variables, report = jaxretina.loading.load_with_report("driu", path)
    assert report.source_format == "caffemodel (V1)"
    assert _rel(_run(model, variables, odd_input), driu_reference(vessel_weights, odd_input)) < RTOL


def test_caffe_optic_disc_and_options_from_file(tmp_path):
    weights = random_driu_weights("optic_disc", seed=4)
    path = tmp_path / "DRIU_DRIONS.caffemodel"
    offsets = (1, 3, 2, 5)  # explicit Crop offsets in the file win over HED's geometry
    path.write_bytes(driu_net_bytes(weights, crop_offsets=offsets, double=True))
    model, variables = jaxretina.load("driu", path)
    assert model.variant == "optic_disc" and model.crop_offsets == offsets
    x = np.random.default_rng(6).normal(0, 1, (1, 3, 67, 61)).astype(np.float32)
    want = driu_reference(weights, x, variant="optic_disc", crop=offsets)
    assert _rel(_run(model, variables, x), want) < RTOL


def test_caffe_floor_round_mode_is_read(tmp_path, vessel_weights):
    path = tmp_path / "floor.caffemodel"
    path.write_bytes(driu_net_bytes(vessel_weights, round_mode=1))
    model, _ = jaxretina.load("driu", path)
    assert model.ceil_mode is False
    model, _ = jaxretina.load("driu", path, ceil_mode=True)  # the caller overrides the file
    assert model.ceil_mode is True


def deepdraw_state(weights, normalizer=True):
    vgg = {(1, 1): 0, (1, 2): 2, (2, 1): 5, (2, 2): 7, (3, 1): 10, (3, 2): 12, (3, 3): 14,
           (4, 1): 17, (4, 2): 19, (4, 3): 21}
    t = torch.from_numpy
    state = {}
    for (stage, i), idx in vgg.items():
        w, b = weights[f"conv{stage}_{i}"]
        state[f"backbone.features.{idx}.weight"], state[f"backbone.features.{idx}.bias"] = t(w), t(b)
    rng = np.random.default_rng(9)
    for idx in (24, 26, 28):  # the port's VGG keeps conv5, unused by the vessel head
        state[f"backbone.features.{idx}.weight"] = t(rng.normal(size=(512, 512, 3, 3)).astype(np.float32))
        state[f"backbone.features.{idx}.bias"] = t(np.zeros(512, np.float32))
    state["head.conv1_2_16.weight"], state["head.conv1_2_16.bias"] = map(t, weights["conv1_2_16"])
    for f, side in ((2, "conv2_2_16"), (4, "conv3_3_16"), (8, "conv4_3_16")):
        state[f"head.upsample{f}.conv.weight"], state[f"head.upsample{f}.conv.bias"] = map(t, weights[side])
        state[f"head.upsample{f}.upconv.weight"], state[f"head.upsample{f}.upconv.bias"] = map(t, weights[f"upsample{f}_"])
    state["head.concatfuse.conv.weight"], state["head.concatfuse.conv.bias"] = map(t, weights["new-score-weighting"])
    if normalizer:
        state["normalizer.mean"] = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
        state["normalizer.std"] = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
    return state


@pytest.mark.parametrize("backend", ["torch", "jaxretina"])
def test_deepdraw_state_dict_matches_reference(tmp_path, vessel_weights, backend):
    path = tmp_path / "driu.pth"
    torch.save({"model": deepdraw_state(vessel_weights), "epoch": 10, "optimizer": {"lr": 1e-3}}, path)
    model, variables, report = jaxretina.loading.load_with_report("driu", path, backend=backend)
    assert (model.ceil_mode, model.crop_offsets, model.upsample_padding) == (False, "center", (0, 0, 0, 0))
    np.testing.assert_allclose(model.normalization, ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), rtol=1e-6)
    assert len([k for k in report.ignored if ".features.2" in k]) == 6  # conv5 (24, 26, 28) skipped
    x = np.random.default_rng(7).uniform(0, 1, (1, 3, 45, 53)).astype(np.float32)  # RGB in [0, 1]
    want = driu_reference(vessel_weights, x, ceil_mode=False, paddings=(0, 0, 0, 0), crop="center",
                          normalization=model.normalization)
    assert _rel(_run(model, variables, x), want) < RTOL


def test_mismatched_keys_are_listed_together(tmp_path, vessel_weights):
    state = deepdraw_state(vessel_weights, normalizer=False)
    del state["head.upsample4.conv.bias"]                       # missing
    state["head.extra.weight"] = torch.zeros(3)                 # unexpected
    state["head.upsample8.upconv.weight"] = torch.zeros(16, 16, 8, 8)  # mis-shaped
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(ValueError) as err:
        jaxretina.load("driu", path)
    msg = str(err.value)
    assert "head.upsample4.conv.bias" in msg and "head.extra.weight" in msg
    assert "head.upsample8.upconv.weight" in msg and "source shape (16, 16, 8, 8)" in msg
    assert "missing 1" in msg and "unexpected 1" in msg and "mis-shaped 1" in msg


def test_caffe_missing_layer_and_unknown_layers(tmp_path, vessel_weights):
    weights = dict(vessel_weights)
    del weights["conv3_2"]
    extra = [("fc_unknown", "InnerProduct", [np.ones((2, 3), np.float32)])]
    path = tmp_path / "partial.caffemodel"
    path.write_bytes(driu_net_bytes(weights, extra_layers=extra))
    with pytest.raises(ValueError, match=r"missing 2: .*conv3_2.*unexpected 1: \['fc_unknown'\]"):
        jaxretina.load("driu", path)
    # Caffe's rule: unknown layers alone are ignored, and recorded.
    path.write_bytes(driu_net_bytes(vessel_weights, extra_layers=extra))
    _, _, report = jaxretina.loading.load_with_report("driu", path)
    assert report.unexpected == ["fc_unknown"]


def test_caffe_deconvolution_geometry_is_checked(tmp_path, vessel_weights):
    from converters.caffe import read_caffemodel
    from converters.driu import from_caffe
    from tests.reference.caffe_proto import messages

    net = messages(True)["NetParameter"].FromString(driu_net_bytes(vessel_weights))
    layer = next(l for l in net.layer if l.name == "upsample4_")
    layer.convolution_param.stride[:] = [2]
    with pytest.raises(ValueError, match=r"upsample4_: kernel \(8, 8\) stride \(2, 2\) in the file"):
        from_caffe(read_caffemodel(net.SerializeToString()), "test")


@pytest.mark.parametrize("normalizer", [False, True], ids=["plain", "normalizer"])
@pytest.mark.parametrize("variant", ["vessel", "optic_disc"])
def test_deepdraw_own_models_match_what_their_files_say(tmp_path, variant, normalizer):
    """deepdraw 1.5.0's own DRIU classes (installed with --no-deps; they import without the
    rest of deepdraw's dependencies) with random weights, saved as plain state dicts: with or
    without the normaliser module that driu(pretrained_backbone=True) adds.  No normaliser
    keys means no normalisation inside the model (it was assumed before: outputs 1.6-2.7x off)."""
    from collections import OrderedDict

    deepdraw = pytest.importorskip("deepdraw.models.driu")
    from deepdraw.models.driu_od import driu_od
    from deepdraw.models.normalizer import TorchVisionNormalizer

    torch.manual_seed(11)
    net = (deepdraw.driu if variant == "vessel" else driu_od)(pretrained_backbone=False)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * (2.0 / p[0].numel()) ** 0.5 if p.ndim > 1 else torch.randn_like(p) * 0.1)
    if normalizer:
        net = torch.nn.Sequential(OrderedDict([("normalizer", TorchVisionNormalizer()), *net.named_children()]))
    net = net.double().eval()
    path = tmp_path / "driu.pth"
    torch.save(net.state_dict(), path)
    model, variables, report = jaxretina.loading.load_with_report("driu", path)
    assert model.variant == variant and (model.normalization is not None) == normalizer
    assert report.notes["normalization"].startswith("from the file" if normalizer else "none")
    x = np.random.default_rng(8).uniform(0, 1, (1, 3, 47, 58))   # RGB in [0, 1], odd sizes
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    with jax.enable_x64(True), jax.default_matmul_precision("highest"):
        v64 = jax.tree.map(lambda a: np.asarray(a, np.float64), variables)
        got = np.asarray(jax.jit(model.apply)(v64, jnp.asarray(x.transpose(0, 2, 3, 1)))).transpose(0, 3, 1, 2)
    # float64 on both sides: 1e-9 of the largest logit
    np.testing.assert_allclose(got, want, atol=1e-9 * np.abs(want).max())
    record = jaxretina.models.registry.get("driu").config_of(model)
    assert record["normalization"] == model.normalization
