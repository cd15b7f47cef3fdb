"""Robustness metrics against Quantus 0.6.0 on the same model, explainer and noise draws."""

import warnings

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from jaxretina import evaluate


# Anchor: Quantus 0.6.0 AvgSensitivity, MaxSensitivity (uniform noise of radius 0.2, Frobenius
# norms) and LocalLipschitzEstimate (Gaussian noise σ = 0.1, Euclidean distances), abs/normalise
# off, on the small DenseNet pair in float32 with |∂ logit / ∂ x| as the explainer on both sides
# (PyTorch autograd there, jax.grad here); Quantus' numpy.random.uniform / normal return
# evaluate.draw_noise's draws in its channel-first order.  Tolerance 1e-4 relative (float32
# gradients of two frameworks).
def test_sensitivity_and_lipschitz_match_quantus_with_the_same_draws(torch_dense, monkeypatch):
    torch = pytest.importorskip("torch")
    quantus = pytest.importorskip("quantus")
    from jaxretina import explain
    from tests.anchor_pairs import CLASS, nchw

    model, variables, ref, x, target = torch_dense
    net, key, samples = ref.float().eval(), jax.random.key(11), 4

    def torch_saliency(model, inputs, targets, **kwargs):
        z = torch.tensor(np.asarray(inputs), dtype=torch.float32, requires_grad=True)
        out = net(z)
        out[torch.arange(len(z)), torch.as_tensor(np.asarray(targets))].sum().backward()
        return z.grad.abs().numpy()

    def draws(gaussian, scale):
        d = jax.vmap(lambda s: evaluate.draw_noise(key, s, x.shape, jnp.float32, gaussian=gaussian, scale=scale))(
            jnp.arange(samples))
        return [np.asarray(v).transpose(2, 0, 1).reshape(1, -1) for v in d]   # (1, C·H·W), channel first

    xb = nchw(x, torch.float32).numpy()
    a = torch_saliency(None, xb, [CLASS])
    phi = jax.tree_util.Partial(explain.saliency, explain.model_fn(model, variables, target))
    xj = jnp.asarray(x)
    cases = [
        ("uniform", quantus.AvgSensitivity, dict(lower_bound=0.2), draws(False, 0.2),
         lambda: evaluate.avg_sensitivity(phi, xj, key=key, samples=samples, radius=0.2)),
        ("uniform", quantus.MaxSensitivity, dict(lower_bound=0.2), draws(False, 0.2),
         lambda: evaluate.max_sensitivity(phi, xj, key=key, samples=samples, radius=0.2)),
        ("normal", quantus.LocalLipschitzEstimate, dict(perturb_std=0.1), draws(True, 0.1),
         lambda: evaluate.local_lipschitz(phi, xj, key=key, samples=samples, std=0.1)),
    ]
    for name, metric_class, options, queue, ours in cases:
        def same_draws(*args, size=None, **kwargs):
            assert size == (1, x.size)
            return queue.pop(0)

        monkeypatch.setattr(np.random, name, same_draws)
        metric = metric_class(nr_samples=samples, abs=False, normalise=False, disable_warnings=True,
                              display_progressbar=False, **options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = metric(model=net, x_batch=xb, y_batch=np.array([CLASS]), a_batch=a, explain_func=torch_saliency,
                          channel_first=True, device="cpu")[0]
        monkeypatch.undo()
        assert not queue, metric_class.__name__
        got = float(ours())
        assert float(want) > 0 and got == pytest.approx(float(want), rel=1e-4), (metric_class.__name__, got, want)
