"""Integrated Gradients to and from the inside of a network (seed 001, Li et al.).

* :func:`integrated_gradients_vector` — IG of every output of a vector function at once: one
  forward and K backward passes per path point (``vmap`` of the VJP over the K output
  directions), e.g. several classes (:func:`class_integrated_gradients`) or several neurons.
* :func:`layer_integrated_gradients` — IG of the output with respect to the neurons of a
  layer, from the baseline image's activations of that layer to the input's.
* :func:`neuron_integrated_gradients` — IG of chosen neurons' activations with respect to the
  pixels, all neurons in one program; :func:`top_neurons` picks the most positive and most
  negative ones; :func:`resultant_active_region` is their attribution-weighted sum.
* :func:`neuron_study` — the seed's whole procedure in one call.

All take one example (no batch axis); a batch is ``jax.vmap``.  Example::

    model, variables = jaxretina.load("inception_v3", "dr.pth", head="seed001", num_classes=5)
    x = preprocess.seed001_input(image)                      # 0..255, half-gray 128
    model = model.clone(normalization=preprocess.imagenet_normalization(255.0))
    study = explain.neuron_study(model, variables, x, "Mixed_5b", targets.class_probability(4),
                                 baseline=preprocess.HALF_GRAY, k=8, steps=32)
    study.positive_region, study.negative_region             # (256, 256, 3) each
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax.tree_util import Partial

from jaxretina import taps
from jaxretina.explain.core import as_baseline, check_chunk, check_input, chunked_sum, split_fn
from jaxretina.explain.gradients import Attribution, integrated_gradients
from jaxretina.explain.quadrature import quadrature

__all__ = [
    "integrated_gradients_vector", "class_integrated_gradients", "layer_integrated_gradients",
    "neuron_integrated_gradients", "top_neurons", "resultant_active_region", "NeuronStudy", "neuron_study",
    "layer_values",
]


class _JacobianTerm(NamedTuple):
    """``w · J_f(x' + α (x − x'))ᵀ`` for all K outputs: one forward, K backward (vmap of the VJP)."""

    fn: Callable

    def __call__(self, consts, node):
        data, x, baseline = consts
        alpha, weight = node
        out, pullback = jax.vjp(lambda z: self.fn(*data, z), baseline + alpha * (x - baseline))
        _check_vector(out)
        (grads,) = jax.vmap(pullback)(jnp.eye(out.shape[0], dtype=out.dtype))
        return weight * grads


@functools.partial(jax.jit, static_argnums=0)
def _vector_finish(fn, data, x, baseline, grad_sum):
    values = (x - baseline)[None] * grad_sum
    ends = jax.vmap(lambda z: fn(*data, z))(jnp.stack([x, baseline]))
    delta = values.reshape(values.shape[0], -1).sum(1) - (ends[0] - ends[1])
    return Attribution(values, delta)


def _check_vector(out):
    # at trace time (no extra tracing of the model: eval_shape of Inception V3 costs ~0.5 s a call)
    if out.ndim != 1:
        raise ValueError(f"integrated_gradients_vector: the function must map one example to a vector (K,); "
                         f"it returned shape {out.shape}")


def integrated_gradients_vector(
    f: Callable, x: Any, *, baseline: Any, steps: int = 50, rule: str = "gausslegendre",
    chunk: int | str | None = None,
) -> Attribution:
    """Integrated Gradients of each output of ``f: example -> (K,)`` — all K in one program.

    ``IG_k,i = (x_i − x'_i) Σ_s w_s ∂f_k(x' + α_s(x − x'))/∂x_i``.  Each path point costs one
    forward and K backward passes (``jax.vmap`` of the VJP over the K unit covectors), instead of
    K separate IG calls.

    Returns:
      :class:`Attribution` with ``values`` of shape ``(K, *x.shape)`` and ``delta`` of shape
      ``(K,)`` (each output's completeness error).

    Example::

      >>> f = Partial(lambda v, x: jax.nn.softmax(grader.apply(v, x[None])[0])[jnp.array([0, 4])],
      ...             grader_variables)                    # classes 0 and 4 of a small DenseNet
      >>> ig = explain.integrated_gradients_vector(f, z, baseline=128.0, steps=8)
      >>> ig.values.shape, ig.delta.shape                  # (2, H, W, 3), (2,)
      ((2, 64, 64, 3), (2,))
    """
    who = "integrated_gradients_vector"
    x = check_input(x, who=who)
    b = as_baseline(baseline, x, who=who)
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"{who}: steps must be a positive int; found {steps!r}")
    fn, data = split_fn(f)
    alphas, weights = (a.astype(x.dtype) for a in quadrature(rule, steps))
    grad_sum = chunked_sum(_JacobianTerm(fn), (data, x, b), (alphas, weights),
                           chunk=check_chunk(chunk, steps, who=who))
    return _vector_finish(fn, data, x, b, grad_sum)


class _ClassScores(NamedTuple):
    model: Any
    probability: bool

    def __call__(self, variables, classes, x):
        out = self.model.apply(variables, x[None])[0]
        return (jax.nn.softmax(out) if self.probability else out)[classes]


def class_integrated_gradients(
    model: Any, variables: Any, x: Any, classes: Sequence[int], *, baseline: Any, probability: bool = True,
    steps: int = 50, rule: str = "gausslegendre", chunk: int | str | None = None,
) -> Attribution:
    """IG for several classes at once (``values``: ``(len(classes), *x.shape)``).

    The quantity per class is its softmax probability (``probability=True``, seed 001) or logit.
    Equal to :func:`integrated_gradients` with ``targets.class_probability(c)`` for each ``c``.
    ``classes`` are traced: other classes of the same count reuse the compiled program.
    """
    classes = jnp.asarray(classes, jnp.int32).reshape(-1)
    f = Partial(_ClassScores(model, probability), taps.params_only(variables), classes)
    return integrated_gradients_vector(f, x, baseline=baseline, steps=steps, rule=rule, chunk=chunk)


def _layer_shape(model, x, layer, who) -> tuple[int, ...]:
    shapes = taps.layer_shapes(model, None, (1, *x.shape))   # cached per (model, shape)
    taps.select_layers(tuple(shapes), layer)  # unknown names: the error lists the valid ones
    return tuple(shapes[layer].shape[1:])


@functools.partial(jax.jit, static_argnums=(0, 1))
def layer_values(model, layer, variables, xs):
    fns = taps.tap_functions(model)
    _, acts = fns.tapped(variables, xs, fns.zeros(variables, xs))
    return acts[layer]


class _LayerHead(NamedTuple):
    """``target(model with layer := z)`` — the rest of the model as a function of one layer."""

    model: Any
    target: Callable
    layer: str

    def __call__(self, variables, x, z):
        out = taps.tap_functions(self.model).replaced(variables, x[None], {self.layer: z[None]})
        return self.target(out[0])


def layer_integrated_gradients(
    model: Any, variables: Any, x: Any, layer: str, target: Callable, *, baseline: Any,
    steps: int | str = 50, rule: str = "gausslegendre", chunk: int | str | None = None, **ig_kwargs: Any,
) -> Attribution:
    """IG of ``target(model(x))`` with respect to the neurons of ``layer`` (seed 001).

    The layer's baseline is its activation at the baseline image (e.g. half-gray): with
    ``a = A(x)``, ``a' = A(x')`` and ``G`` the model after the layer,
    ``IG_j = (a_j − a'_j) ∫₀¹ ∂G(a' + α(a − a'))/∂a_j dα`` — Captum's
    ``LayerIntegratedGradients``.  Every neuron's value flows through the model after the layer
    (the replaced activation is what the later layers see).  ``delta`` is the completeness error
    against ``G(a) − G(a')``, which is ``F(x) − F(x')`` when every path from input to output
    passes the layer (Inception's Mixed blocks, a DenseNet transition; not a layer inside a
    dense block, whose block input also skips ahead).

    Args:
      layer: a tap name (``model.layer_names()``).
      baseline: the *input* baseline (scalar or image), e.g. ``preprocess.HALF_GRAY``.
      steps, rule, chunk, **ig_kwargs: as :func:`integrated_gradients` (``"auto"`` included).

    Returns:
      :class:`Attribution` with ``values`` of the layer's shape for one example (e.g. (H', W', C)).
    """
    who = "layer_integrated_gradients"
    x = check_input(x, who=who)
    b = as_baseline(baseline, x, who=who)
    _layer_shape(model, x, layer, who)
    params = taps.params_only(variables)
    ends = layer_values(model, layer, params, jnp.stack([x, b]))
    f = Partial(_LayerHead(model, target, layer), params, x)
    return integrated_gradients(f, ends[0], baseline=ends[1], steps=steps, rule=rule, chunk=chunk,
                                stem=False, **ig_kwargs)


class _NeuronValues(NamedTuple):
    model: Any
    layer: str

    def __call__(self, variables, neurons, x):
        return layer_values(self.model, self.layer, variables, x[None])[0].reshape(-1)[neurons]


def neuron_integrated_gradients(
    model: Any, variables: Any, x: Any, layer: str, neurons: Any, *, baseline: Any, steps: int = 50,
    rule: str = "gausslegendre", chunk: int | str | None = None,
) -> Attribution:
    """IG of each chosen neuron's activation with respect to the input, all in one program.

    Args:
      neurons: ``(K,)`` flat indices into one example's activation of ``layer`` (row-major over
        its shape, e.g. from :func:`top_neurons`); traced, so new choices of the same count
        reuse the compiled program.
    Returns:
      :class:`Attribution`, ``values`` ``(K, *x.shape)`` (each neuron's "active region"),
      ``delta`` ``(K,)``.
    """
    who = "neuron_integrated_gradients"
    x = check_input(x, who=who)
    size = 1
    for d in _layer_shape(model, x, layer, who):
        size *= d
    neurons = jnp.asarray(neurons)
    if neurons.ndim != 1 or not jnp.issubdtype(neurons.dtype, jnp.integer):
        raise ValueError(f"{who}: neurons must be a 1-D integer array of flat indices; found shape "
                         f"{neurons.shape}, dtype {neurons.dtype}")
    if not isinstance(neurons, jax.core.Tracer) and neurons.size and (
            int(neurons.min()) < 0 or int(neurons.max()) >= size):
        raise ValueError(f"{who}: neuron indices must lie in [0, {size}) for layer {layer!r}; found "
                         f"[{int(neurons.min())}, {int(neurons.max())}]")
    f = Partial(_NeuronValues(model, layer), taps.params_only(variables), neurons)
    return integrated_gradients_vector(f, x, baseline=baseline, steps=steps, rule=rule, chunk=chunk)


def top_neurons(attribution: Any, k: int) -> tuple[jax.Array, jax.Array]:
    """Flat indices of the ``k`` most positive and the ``k`` most negative attributions.

    Returns ``(positive, negative)``, each ``(k,)`` int32, sorted by magnitude (largest first).
    """
    a = jnp.asarray(attribution).reshape(-1)
    if not (isinstance(k, int) and 1 <= k <= a.size):
        raise ValueError(f"top_neurons: k must be an int in [1, {a.size}]; found {k!r}")
    return jax.lax.top_k(a, k)[1], jax.lax.top_k(-a, k)[1]


def resultant_active_region(neuron_maps: Any, weights: Any) -> jax.Array:
    """``Σ_k weights_k · neuron_maps_k`` — the seed's "resultant active region".

    ``neuron_maps``: ``(K, *x.shape)`` (from :func:`neuron_integrated_gradients`); ``weights``:
    ``(K,)`` (the neurons' attributions).  By linearity of IG this equals the IG of the
    weighted sum of the neurons' activations.
    """
    maps, w = jnp.asarray(neuron_maps), jnp.asarray(weights)
    if w.ndim != 1 or maps.shape[:1] != w.shape:
        raise ValueError(f"resultant_active_region: expected maps (K, ...) and weights (K,); found "
                         f"{maps.shape} and {w.shape}")
    return jnp.tensordot(w.astype(maps.dtype), maps, axes=1)


class NeuronStudy(NamedTuple):
    """Seed 001's intermediate-layer study of one example.

    ``layer``: IG to the layer's neurons (:class:`Attribution`, layer shape);
    ``positive``, ``negative``: ``(k,)`` flat indices of the top neurons;
    ``neuron_maps``: :class:`Attribution` ``(2k, *x.shape)`` — positive neurons first;
    ``positive_region``, ``negative_region``: attribution-weighted sums of their maps.
    """

    layer: Attribution
    positive: jax.Array
    negative: jax.Array
    neuron_maps: Attribution
    positive_region: jax.Array
    negative_region: jax.Array


def neuron_study(
    model: Any, variables: Any, x: Any, layer: str, target: Callable, *, baseline: Any, k: int = 8,
    steps: int = 50, rule: str = "gausslegendre", chunk: int | str | None = None,
) -> NeuronStudy:
    """Layer IG → top-k positive and negative neurons → their pixel maps → resultant regions.

    Example::

      >>> s = explain.neuron_study(grader, grader_variables, z, "denseblock2", targets.class_probability(4),
      ...                          baseline=preprocess.HALF_GRAY, k=4, steps=8)    # seed 001: Mixed_5b
      >>> s.positive_region.shape == z.shape, s.neuron_maps.values.shape
      (True, (8, 64, 64, 3))
    """
    layer_ig = layer_integrated_gradients(model, variables, x, layer, target, baseline=baseline, steps=steps,
                                          rule=rule, chunk=chunk)
    positive, negative = top_neurons(layer_ig.values, k)
    chosen = jnp.concatenate([positive, negative])
    maps = neuron_integrated_gradients(model, variables, x, layer, chosen, baseline=baseline, steps=steps,
                                       rule=rule, chunk=chunk)
    weights = layer_ig.values.reshape(-1)[chosen]
    return NeuronStudy(layer_ig, positive, negative, maps,
                       resultant_active_region(maps.values[:k], weights[:k]),
                       resultant_active_region(maps.values[k:], weights[k:]))
