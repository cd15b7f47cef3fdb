"""Excitation backprop and its contrastive form (Zhang et al. 2016; TorchRay's
``excitation_backprop`` / ``contrastive_excitation_backprop``), as the ``excitation_backprop``
composite of :mod:`jaxretina.propagation`.

The target's output gradient (one-hot for a class logit) is passed down as a *marginal winning
probability*: each linear layer shares it among its inputs in proportion to ``x · W⁺``, pools
and residual sums by their inputs, batch norms pass it, ReLUs and max pools take their
gradient.  The map is read at ``layer`` (a tap: the probability of that layer's neurons summed
over channels, TorchRay's saliency) or at the input (``layer=None``).

Contrastive: the same is done with the classifier's weights negated down to ``contrast`` (a
tap between ``layer`` and the output), that "other classes" probability is subtracted there,
and the difference is passed on to ``layer``; the map is clamped at 0.  The classifier is the
last linear layer the network runs (``classifier`` names its kernel otherwise, as a parameter
path ``"classifier.6/kernel"``).

Example::

    >>> m = explain.excitation_backprop(grader, grader_variables, z, targets.class_logit(3), layer="transition1")
    >>> m.shape == explain.activation_maps(grader, grader_variables, z, "transition1").shape[:-1]
    True
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import traverse_util

from jaxretina import taps
from jaxretina.explain.cam import chosen_layers
from jaxretina.explain.core import OneExample, check_input, example_output
from jaxretina.explain.lrp import for_rules
from jaxretina.propagation import named, sites, trace, with_rules

__all__ = ["excitation_backprop"]


class _Tapped(NamedTuple):
    """``(x, deltas) -> output``: the model with a zero added at its taps (their gradient is
    what flows past each layer)."""

    model: Any

    def __call__(self, params, inputs):
        x, deltas = inputs
        fns = taps.tap_functions(self.model)
        out, _ = fns.tapped(params, x[None], deltas)
        return example_output(out, who="excitation_backprop")


class _Head(NamedTuple):
    """``a -> output`` with the tap ``layer`` replaced by ``a`` (``x`` fixed)."""

    model: Any
    layer: str
    x: Any

    def __call__(self, params, a):
        out = taps.tap_functions(self.model).replaced(params, self.x[None], {self.layer: a[None]})
        return example_output(out, who="excitation_backprop")


def _last_kernel(model: Any, params: Any, x: Any) -> str:
    """The parameter path of the kernel of the last linear layer ``model`` runs."""
    program = trace(OneExample(model, "excitation_backprop"), params, x)
    linear = [s for s in sites(program) if s.kind in ("conv", "dense")]
    producers = program.producers()
    paths = ["/".join(str(getattr(k, "key", k)) for k in path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    if linear:
        ref = linear[-1].kernel
        while isinstance(ref, int) and ref not in program.param_ids and ref in producers:
            ref = producers[ref].ins[0]   # through the reshapes, casts and transposes of the kernel
        if isinstance(ref, int) and ref in program.param_ids:
            return paths[program.param_ids.index(ref)]
    raise ValueError("excitation_backprop: found no linear layer whose kernel is a parameter; name the classifier's "
                     "kernel with classifier=")


def _negate_classifier(params: Any, path: str) -> Any:
    flat = traverse_util.flatten_dict(params, sep="/")
    if path not in flat:
        kernels = [k for k in flat if k.endswith("kernel")]
        raise ValueError(f"excitation_backprop: classifier {path!r} is not a parameter path; e.g. {kernels[-2:]}")
    flat = dict(flat)
    flat[path] = -flat[path]
    return traverse_util.unflatten_dict(flat, sep="/")


def _pass(f, params, x, seed):
    """``(rule-propagated input cotangent, seed)`` of ``f`` at ``x``; ``seed`` an array or a
    function of the output (the output comes from the ruled forward itself: one forward)."""
    composite = named("excitation_backprop")
    ruled = with_rules(f, composite.choose, merge=composite.merge)
    out, pull = jax.vjp(lambda z: ruled(params, z), x)
    seed = seed(out) if callable(seed) else seed
    return pull(seed)[0], seed


class _Seed(NamedTuple):
    """The target's output gradient (one-hot for a class logit): TorchRay's backward start."""

    target: Callable

    def __call__(self, out):
        return jax.grad(lambda y: self.target(y))(out)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _excitation(model, target, layer, contrast, classifier, params, x):
    fns = taps.tap_functions(model)
    deltas = fns.zeros(params, x[None])
    if contrast is None:
        (gx, gd), _ = _pass(_Tapped(model), params, (x, deltas), _Seed(target))
        return gx.sum(-1) if layer is None else gd[layer][0].sum(-1)
    _, acts = fns.tapped(params, x[None], deltas)
    a = acts[contrast][0]
    mine, seed = _pass(_Head(model, contrast, x), params, a, _Seed(target))
    other, _ = _pass(_Head(model, contrast, x), _negate_classifier(params, classifier), a, seed)
    # from the input to the contrast layer, the difference passed down (TorchRay's injection)
    (gx, gd), _ = _pass(_Body(model, contrast), params, (x, deltas), mine - other)
    m = gx.sum(-1) if layer is None else gd[layer][0].sum(-1)
    return jnp.maximum(m, 0)


class _Body(NamedTuple):
    """``(x, deltas) -> activation of layer`` (the model up to a tap)."""

    model: Any
    layer: str

    def __call__(self, params, inputs):
        x, deltas = inputs
        _, acts = taps.tap_functions(self.model).tapped(params, x[None], deltas)
        return acts[self.layer][0]


def excitation_backprop(model: Any, variables: Any, x: Any, target: Callable, *, layer: str | None = None,
                        contrast: str | None = None, classifier: str | None = None) -> jax.Array:
    """Excitation backprop of ``target`` for one example ``x``: the spatial map at ``layer``
    (``None``: the input), summed over channels; with ``contrast`` (a later tap) the
    contrastive form, clamped at 0."""
    who = "excitation_backprop"
    x = check_input(x, who=who)
    names = [n for n in (layer, contrast) if n is not None]
    chosen = chosen_layers(model, x, names)[1] if names else ()
    resolved = dict(zip(names, chosen))
    params = taps.params_only(variables)
    net = for_rules(model, who)
    if contrast is not None and classifier is None:
        classifier = _last_kernel(net, params, x)
    return _excitation(net, target, resolved.get(layer), resolved.get(contrast), classifier, params, x)
