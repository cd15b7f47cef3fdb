"""Inception V3 against torchvision ``inception_v3`` on the same random weights and BatchNorm
statistics: logits (full size and the smallest valid size), intermediate blocks, the auxiliary
classifier in training, the seed-001 head, the converter's key mapping and its errors."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import jaxretina  # noqa: E402
from converters.convert import convert  # noqa: E402
from converters.inception import from_state_dict  # noqa: E402
from jaxretina import taps  # noqa: E402
from jaxretina.models import InceptionV3  # noqa: E402
from tests.reference.inception_torch import Seed001 as _Seed001, reference as _reference  # noqa: E402


def _state(model):
    return {k: v.numpy() for k, v in model.state_dict().items()}


def _nhwc(x):
    return jnp.asarray(x.numpy().transpose(0, 2, 3, 1))


def _rel(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return np.abs(got - want).max() / np.abs(want).max()


@pytest.mark.fullsize
def test_inception_v3_matches_torchvision(tmp_path):
    ref = _reference(transform_input=True)
    path = tmp_path / "grader.pth"
    torch.save(ref.state_dict(), path)
    model, variables = jaxretina.load("inception_v3", path, transform_input=True)
    assert (model.num_classes, model.aux_logits, model.head) == (5, True, "torchvision")
    n_params = sum(v.size for v in jax.tree.leaves(variables["params"]))
    assert n_params == sum(p.numel() for p in ref.parameters())
    x = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(2))  # seed 001's size
    with torch.no_grad():
        want = ref(x).numpy()
    with jax.default_matmul_precision("highest"):
        got = jax.jit(model.apply)(variables, _nhwc(x))
    assert _rel(got, want) < 1e-4
    # jaxretina convert: parity against torchvision at 299x299 recorded, options kept on reload.
    record = convert(path, "inception_v3", tmp_path / "converted", transform_input=True)
    assert record["parity"]["available"] and record["parity"]["max_rel"] < 1e-4
    again, reloaded = jaxretina.load("inception_v3", tmp_path / "converted")
    assert (again.transform_input, again.aux_logits, again.num_classes) == (True, True, 5)
    jax.tree.map(np.testing.assert_array_equal, reloaded, variables)


def test_small_sizes_blocks_and_aux_in_training_match_torchvision():
    ref = _reference(aux_logits=True, seed=3)
    model, variables, report = from_state_dict(_state(ref), "memory")
    assert report.unexpected == [] and model.aux_logits
    blocks = ["Conv2d_4a_3x3", "Mixed_5b", "Mixed_6a", "Mixed_6e", "Mixed_7a", "Mixed_7c"]
    seen = {}
    hooks = [getattr(ref, n).register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o.detach()))
             for n in blocks]
    with jax.default_matmul_precision("highest"):
        for hw in ((75, 75), (97, 111)):
            x = torch.randn(1, 3, *hw, generator=torch.Generator().manual_seed(hw[0]))
            with torch.no_grad():
                want = ref(x).numpy()
            out, acts = taps.activations(model, variables, _nhwc(x), blocks)
            assert _rel(out, want) < 1e-4, hw
            for n in blocks:
                assert _rel(acts[n][0], seen[n].numpy()[0].transpose(1, 2, 0)) < 1e-4, (hw, n)
    for h in hooks:
        h.remove()
    # Training: batch statistics, and the auxiliary classifier's logits (dropout off on both sides).
    ref.train()
    ref.dropout.p = 0.0
    x = torch.randn(2, 3, 299, 299, generator=torch.Generator().manual_seed(9))  # aux needs >= 299
    with torch.no_grad():
        want = ref(x)
    train = jax.jit(lambda v, z: model.clone(dropout=0.0).apply(v, z, train=True, mutable=["batch_stats"]))
    with jax.default_matmul_precision("highest"):
        (logits, aux), _ = train(variables, _nhwc(x))
    assert _rel(logits, want.logits.numpy()) < 1e-3
    assert _rel(aux, want.aux_logits.numpy()) < 1e-3


def test_seed001_head_read_from_the_file():
    ref = _Seed001().eval()
    state = {k.removeprefix("trunk."): v.numpy() for k, v in ref.state_dict().items()}
    model, variables, _ = from_state_dict(state, "memory")
    assert (model.head, model.hidden, model.num_classes, model.aux_logits) == ("seed001", (64, 32), 5, False)
    x = torch.randn(2, 3, 80, 90, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = ref(x).numpy()
    with jax.default_matmul_precision("highest"):
        got = jax.jit(model.apply)(variables, _nhwc(x))
    assert _rel(got, want) < 1e-4
    assert model.layer_names()[-3:] == ("head.fc1", "head.fc2", "head.out")


@pytest.mark.parametrize("head", ["torchvision", "seed001"])
def test_layer_names_are_the_tap_order(head):
    model = InceptionV3(num_classes=3, head=head, hidden=(8, 4))
    names = model.layer_names()
    assert tuple(taps.layer_shapes(model, None, (1, 75, 75, 3), jnp.float32)) == names
    # with the auxiliary head (its init needs 299 px) the evaluation forward's taps below 299 px
    aux = model.clone(aux_logits=True)
    assert tuple(taps.layer_shapes(aux, None, (1, 75, 75, 3), jnp.float32)) == aux.layer_names() == names
    assert len(names) == len(set(names)) == 5 + 11 + 3 * 7 + 4 + 4 * 10 + 6 + 2 * 9 + (1 if head == "torchvision" else 3)


def test_errors():
    model = InceptionV3(num_classes=3)
    with pytest.raises(ValueError, match="at least 75x75 pixels; found 74x80"):
        model.init(jax.random.key(0), jnp.zeros((1, 74, 80, 3)))
    with pytest.raises(ValueError, match="unknown InceptionV3 head 'keras'"):
        InceptionV3(head="keras").init(jax.random.key(0), jnp.zeros((1, 75, 75, 3)))
    state = _state(_reference(aux_logits=False, seed=7))
    del state["Mixed_6b.branch7x7_2.conv.weight"]
    state["Mixed_6b.branch7x7_3.bn.weight"] = state["Mixed_6b.branch7x7_3.bn.weight"][:5]
    with pytest.raises(ValueError, match=r"(?s)Mixed_6b\.branch7x7_2\.conv\.weight.*Mixed_6b\.branch7x7_3\.bn\.weight"):
        from_state_dict(state, "broken.pth")
    with pytest.raises(ValueError, match="without Inception V3 keys"):
        from converters.inception import from_weights
        from_weights("pytorch", {"features.conv0.weight": np.zeros((1,))}, "dense.pth")
