"""The gradient-free CAMs: AblationCAM and ScoreCAM, every channel's forward pass batched.

For a layer with activation ``A`` (spatial…, K) and the target ``t``:

* **AblationCAM** (Desai & Ramaswamy 2020): ``w_k = (t − t_k) / t`` with ``t_k`` the target when
  channel ``k`` of ``A`` is replaced by ``value`` (0, the paper's; pytorch-grad-cam also uses 0
  whenever the layer's minimum is 0, i.e. after a ReLU).  Each ablated run starts **at the
  layer**: the channels are ``vmap``-ed over the layer's replacement tap, so everything before
  the layer does not depend on them and runs once (pytorch-grad-cam reruns the whole model per
  ablation).
* **ScoreCAM** (Wang et al. 2020): ``M_k`` = channel ``k`` upsampled to the input
  (bilinear, ``align_corners=True`` as pytorch-grad-cam's ``UpsamplingBilinear2d``; trilinear
  for volumes) and min–max normalised (a constant channel gives ``M_k = 0``);
  ``w = softmax_k(t(x ⊙ M_k))``.

Both maps are ``Σ_k w_k A_k``, then ReLU, resize and normalisation as :func:`grad_cam`.  The K
runs go ``chunk`` at a time through one compiled program (``budget=`` bytes picks the chunk
by XLA's accounting, :func:`~jaxretina.explain.chunk_for_budget`).  AblationCAM's weights are
differences of nearly equal scores: where one channel moves ``t`` by 1e-4 of itself, float32
scores leave ~1e-3 relative noise in ``w_k`` (run the model in float64 where that matters).

Example::

    >>> m = explain.ablation_cam(grader, grader_variables, z, targets.class_logit(3), layers="transition1")
    >>> m["transition1"].shape == z.shape[:-1]
    True
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import jax
import jax.numpy as jnp

from jaxretina import taps
from jaxretina.explain.cam import check_cam_input, check_cam_layer, chosen_layers, finish_map, min_max
from jaxretina.explain.core import along_axes, chunked_map, example_output, scalar_output
from jaxretina.explain.memory import pick_chunk

__all__ = ["ablation_cam", "score_cam", "resize_align_corners"]


def resize_align_corners(a: jax.Array, shape: Sequence[int]) -> jax.Array:
    """``a`` resized to ``shape`` by (multi)linear interpolation with ``align_corners=True``
    (PyTorch's ``UpsamplingBilinear2d``): output ``i`` samples input ``i · (n_in − 1) / (n_out − 1)``."""
    return along_axes(a, [_interpolation(i, o, a.dtype) if i != o else None for i, o in zip(a.shape, shape)])


def _interpolation(n_in: int, n_out: int, dtype) -> np.ndarray:
    w = np.zeros((n_out, n_in))
    if n_in == 1 or n_out == 1:
        w[:, 0] = 1.0
        return w.astype(dtype)
    src = np.arange(n_out) * (n_in - 1) / (n_out - 1)
    lo = np.minimum(np.floor(src).astype(int), n_in - 2)
    frac = src - lo
    w[np.arange(n_out), lo] = 1 - frac
    w[np.arange(n_out), lo + 1] += frac
    return w.astype(dtype)


def _layer_and_score(model, target, layer, variables, x, who):
    fns = taps.tap_functions(model)
    out, acts = fns.tapped(variables, x[None], fns.zeros(variables, x[None]))
    return acts[layer][0], scalar_output(target(example_output(out, who=who)), who="target")


class _Ablated(NamedTuple):
    """The target with channel ``k`` of ``layer`` replaced by ``value``."""

    model: Any
    target: Callable
    layer: str
    value: float

    def __call__(self, consts, k):
        variables, x, a = consts
        a = jnp.where(jnp.arange(a.shape[-1]) == k, jnp.asarray(self.value, a.dtype), a)
        out = taps.tap_functions(self.model).replaced(variables, x[None], {self.layer: a[None]})
        return scalar_output(self.target(example_output(out, who="ablation_cam")), who="target")


class _Scored(NamedTuple):
    """The target at ``x ⊙ M_k`` (channel ``k`` upsampled and min–max normalised)."""

    model: Any
    target: Callable

    def __call__(self, consts, k):
        variables, x, a = consts
        m = min_max(resize_align_corners(jnp.take(a, k, axis=-1), x.shape[:-1]))
        out = taps.tap_functions(self.model).forward(variables, (x * m[..., None])[None])
        return scalar_output(self.target(example_output(out, who="score_cam")), who="target")


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _activation(model, target, layer, who, variables, x):
    return _layer_and_score(model, target, layer, variables, x, who)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _finish(spatial, relu, resize, normalize, a, w):
    return finish_map((a * w).sum(-1), spatial, relu, resize, normalize)


def _perturbation_cam(kind, model, variables, x, target, layers, relu, resize, normalize, chunk, budget, value=0.0):
    x = check_cam_input(model, x, kind)
    pairs, chosen = chosen_layers(model, x, layers)
    variables = taps.params_only(variables)
    maps = {}
    for layer in chosen:
        a, score = _activation(model, target, layer, kind, variables, x)
        check_cam_layer(layer, a, x, kind)
        term = _Ablated(model, target, layer, float(value)) if kind == "ablation_cam" else _Scored(model, target)
        consts, ks = (variables, x, a), jnp.arange(a.shape[-1])
        scores = chunked_map(term, consts, ks, chunk=pick_chunk(term, consts, ks, chunk, budget, who=kind))
        w = (score - scores) / score if kind == "ablation_cam" else jax.nn.softmax(scores)
        maps[layer] = _finish(x.shape[:-1], bool(relu), bool(resize), bool(normalize), a, w)
    return {asked: maps[layer] for asked, layer in pairs}


def ablation_cam(model: Any, variables: Any, x: Any, target: Callable, *, layers: str | Sequence[str],
                 value: float = 0.0, relu: bool = True, resize: bool = True, normalize: bool = False,
                 chunk: int | str | None = None, budget: float | None = None) -> dict[str, jax.Array]:
    """AblationCAM of each of ``layers`` for one example ``x``: one run per channel, from the
    layer onward, ``chunk`` channels (or as many as fit ``budget`` bytes) per call of one
    compiled program.  ``value`` replaces the ablated channel."""
    return _perturbation_cam("ablation_cam", model, variables, x, target, layers, relu, resize, normalize, chunk,
                             budget, value)


def score_cam(model: Any, variables: Any, x: Any, target: Callable, *, layers: str | Sequence[str],
              relu: bool = True, resize: bool = True, normalize: bool = False, chunk: int | str | None = None,
              budget: float | None = None) -> dict[str, jax.Array]:
    """ScoreCAM of each of ``layers`` for one example ``x``: one masked input per channel,
    ``chunk`` (or as many as fit ``budget`` bytes) per call of one compiled program."""
    return _perturbation_cam("score_cam", model, variables, x, target, layers, relu, resize, normalize, chunk, budget)
