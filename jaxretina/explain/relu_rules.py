"""Guided backprop and deconvnet: the model's nonlinearity with a different backward rule.

Both keep the forward pass and replace only the derivative of every activation of the model:
they are the composites ``guided_backprop`` and ``deconvnet`` of the one rule mechanism
(:mod:`jaxretina.propagation`, no hooks):

* **guided backprop** (Springenberg et al. 2015): pass the gradient where the ReLU's input
  *and* the incoming gradient are positive, ``g_in = g · [x > 0] · [g > 0]``;
* **deconvnet** (Zeiler & Fergus 2014): keep only the positive part of the incoming gradient,
  whatever the input, ``g_in = max(g, 0)``.

These are Captum's ``GuidedBackprop`` / ``Deconvolution`` rules (a backward hook returning
``relu(grad_input)`` or ``relu(grad_output)`` on every ``nn.ReLU``).  The attribution is the
modified gradient of the target with respect to the input (shape of ``x``), as in Captum.

Which activations change: every ReLU the tracer finds (``jax.nn.relu``, ``max(x, 0)``) and
every call of the nonlinearity a model holds in its ``act`` field — every ReLU of DenseNet,
Inception V3, ResNet, VGG and the DS6 U-Net, DRIU's trunk ReLUs (its side branches are
linear), and those of wrapped Flax and Keras networks.  A model whose ``act`` is not the ReLU
(DS6's LeakyReLU variants) gets the rules' natural extension, forward unchanged:
guided ``g_in = act'(x) · max(g, 0)`` (for the ReLU, ``act'(x) = [x > 0]``: the rule above) and
deconvnet ``g_in = max(g, 0)``.  Captum only reaches ``nn.ReLU`` modules, so it leaves a
LeakyReLU — and a functional ``F.relu`` in a PyTorch model (torchvision's Inception
``BasicConv2d``, DenseNet's last ReLU) — with its plain gradient.

:func:`layerwise_guided_backprop` (seed 003, Fig. 5) gives the guided-backprop map of every
layer's activation in one program.

Example::

    >>> gb = explain.guided_backprop(grader, grader_variables, z, targets.class_logit(3))
    >>> gb.shape == z.shape
    True
    >>> maps, names = explain.layerwise_guided_backprop(unet, unet_variables, volume[:16, :16, :16])
    >>> maps.shape, names[:2]                                   # (L, D, H, W, 1)
    ((16, 16, 16, 16, 1), ('Conv1', 'Conv2'))
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from jaxretina import caches, taps
from jaxretina.explain.core import check_chunk, check_input
from jaxretina.explain.lrp import for_rules, propagate
from jaxretina.propagation import named, with_rules

__all__ = [
    "guided_relu", "deconvnet_relu", "guided", "deconvnet_rule", "guided_backprop", "deconvnet",
    "layerwise_guided_backprop",
]


@jax.custom_vjp
def guided_relu(x: jax.Array) -> jax.Array:
    """ReLU whose backward pass is guided backprop's: ``g · [x > 0] · [g > 0]``."""
    return jax.nn.relu(x)


def _guided_fwd(x):
    return jax.nn.relu(x), x > 0


def _guided_bwd(positive, g):
    return (jnp.where(positive & (g > 0), g, jnp.zeros_like(g)),)


guided_relu.defvjp(_guided_fwd, _guided_bwd)


@jax.custom_vjp
def deconvnet_relu(x: jax.Array) -> jax.Array:
    """ReLU whose backward pass is deconvnet's: ``max(g, 0)``, whatever the input."""
    return jax.nn.relu(x)


def _deconv_fwd(x):
    return jax.nn.relu(x), None


def _deconv_bwd(_, g):
    return (jax.nn.relu(g),)


deconvnet_relu.defvjp(_deconv_fwd, _deconv_bwd)


@caches.memoize(maxsize=64)
def guided(act: Callable) -> Callable:
    """``act`` with guided backprop's backward rule ``act'(x) · max(g, 0)`` (forward unchanged).

    The ReLU gives :func:`guided_relu`.  Cached per ``act``: the same function object each
    call, so a cloned model compares equal and explainers do not recompile.
    """
    if act is jax.nn.relu or act is guided_relu:
        return guided_relu

    @jax.custom_vjp
    def rule(x):
        return act(x)

    def fwd(x):
        return act(x), x

    def bwd(x, g):
        return jax.vjp(act, x)[1](jax.nn.relu(g))

    rule.defvjp(fwd, bwd)
    return rule


@caches.memoize(maxsize=64)
def deconvnet_rule(act: Callable) -> Callable:
    """``act`` with deconvnet's backward rule ``max(g, 0)`` (forward unchanged); cached per ``act``."""
    if act is jax.nn.relu or act is deconvnet_relu:
        return deconvnet_relu

    @jax.custom_vjp
    def rule(x):
        return act(x)

    rule.defvjp(lambda x: (act(x), None), lambda _, g: (jax.nn.relu(g),))
    return rule


def guided_backprop(model: Any, variables: Any, x: Any, target: Callable) -> jax.Array:
    """Guided-backprop attribution of ``target`` for one example ``x``: shape of ``x``.

    Compiles once per (model, target, shape).
    """
    return propagate(model, variables, x, target, named("guided_backprop"), start="gradient", who="guided_backprop")


def deconvnet(model: Any, variables: Any, x: Any, target: Callable) -> jax.Array:
    """Deconvnet attribution of ``target`` for one example ``x``: shape of ``x``."""
    return propagate(model, variables, x, target, named("deconvnet"), start="gradient", who="deconvnet")


class _LayerScores(NamedTuple):
    """``(L,)``: ``Σ |A_l|`` (or over one channel) of each chosen layer, one forward pass."""

    model: Any
    chosen: tuple[str, ...]
    channel: int | None

    def __call__(self, variables, x):
        fns = taps.tap_functions(self.model)
        _, acts = fns.tapped(variables, x[None], fns.zeros(variables, x[None]))
        scores = []
        for name in self.chosen:
            a = acts[name][0]
            if self.channel is not None:
                if not -a.shape[-1] <= self.channel < a.shape[-1]:
                    raise ValueError(f"layerwise_guided_backprop: channel {self.channel} out of range for layer "
                                     f"{name!r} with {a.shape[-1]} channels")
                a = a[..., self.channel]
            scores.append(jnp.abs(a).sum())
        return jnp.stack(scores)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _layerwise_program(scores, composite, chunk, variables, x):
    ruled = with_rules(scores, composite.choose, merge=composite.merge)
    out, pullback = jax.vjp(lambda z: ruled(variables, z), x)
    eye = jnp.eye(out.shape[0], dtype=out.dtype)
    # Chunks of layers, each a vmap of the pullback: one program, memory ~ chunk backward passes.
    parts = [jax.vmap(pullback)(eye[i:i + chunk])[0] for i in range(0, out.shape[0], chunk)]
    return jnp.concatenate(parts, axis=0)


def layerwise_guided_backprop(
    model: Any, variables: Any, x: Any, layers: str | Sequence[str] = "all", *, channel: int | None = None,
    rule: str = "guided", chunk: int | str | None = "all",
) -> tuple[jax.Array, tuple[str, ...]]:
    """Guided-backprop map of every layer's activation with respect to the input (seed 003, Fig. 5).

    For each chosen layer ``l`` with activation ``A_l(x)`` (its tap: after the layer's
    nonlinearity), the map is ``∂̃ Σ |A_l(x)| / ∂x`` with the guided rule on every ``act`` —
    the "layer activation with guided backprop" of the CNN-visualisation library the seed used,
    which sums ``|A_l|`` over one filter (``channel``; ``None`` = all channels).  One forward
    pass and ``L`` backward passes as a ``vmap`` of the pullback over the ``L`` unit covectors —
    one compiled program per (model, layers, shape), no Python loop over layers.

    Args:
      x: one example (H, W, C) or (D, H, W, C), no batch axis.
      layers: ``"all"`` (every tap, in execution order) or names.
      channel: one filter of every layer (must exist in each), or ``None``.
      rule: ``"guided"`` or ``"deconvnet"`` (the same construction with deconvnet's rule).
      chunk: layers per ``vmap`` inside the program: ``"all"`` (fastest; memory ~ L backward
        passes), an int, or ``None`` (= 8).

    Returns:
      ``(maps, names)``: ``maps`` of shape ``(L, *x.shape)``, ``names`` the L layer names.

    Example::

      >>> maps, names = explain.layerwise_guided_backprop(unet, unet_variables, volume[:16, :16, :16])
      >>> maps.shape                                 # seed 003: a 64³ patch, (16, 64, 64, 64, 1)
      (16, 16, 16, 16, 1)
    """
    who = "layerwise_guided_backprop"
    x = check_input(x, who=who)
    if rule not in ("guided", "deconvnet"):
        raise ValueError(f"{who}: rule must be 'guided' or 'deconvnet'; found {rule!r}")
    composite = named("guided_backprop" if rule == "guided" else "deconvnet")
    chosen = taps.select_layers(taps.layer_names(model, (1, *x.shape)), layers)
    scores = _LayerScores(for_rules(model, who), chosen, channel)
    maps = _layerwise_program(scores, composite, check_chunk(chunk, len(chosen), who=who), taps.params_only(variables),
                              x)
    return maps, chosen
