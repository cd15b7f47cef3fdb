"""Guided backprop and deconvnet: the model's ReLU with a different backward rule.

Both keep the forward pass and replace only the derivative of every ReLU the model routes
through its ``act`` field (``model.clone(act=...)``; no hooks):

* **guided backprop** (Springenberg et al. 2015): pass the gradient where the ReLU's input
  *and* the incoming gradient are positive, ``g_in = g · [x > 0] · [g > 0]``;
* **deconvnet** (Zeiler & Fergus 2014): keep only the positive part of the incoming gradient,
  whatever the input, ``g_in = max(g, 0)``.

These are Captum's ``GuidedBackprop`` / ``Deconvolution`` rules (a backward hook returning
``relu(grad_input)`` or ``relu(grad_output)`` on every ``nn.ReLU``).  The attribution is the
modified gradient of the target with respect to the input (shape of ``x``), as in Captum.

Which ReLUs change: those behind ``act`` — every ReLU of DenseNet, DRIU's trunk ReLUs (its
side branches are linear).  Captum only reaches ``nn.ReLU`` modules, so a functional
``F.relu`` in a PyTorch model (torchvision DenseNet's last one) keeps its plain gradient there.

Example::

    >>> gb = explain.guided_backprop(model, variables, x, targets.class_logit(3))
    >>> gb.shape == x.shape
    True
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxretina.explain._core import model_fn
from jaxretina.explain.gradients import saliency

__all__ = ["guided_relu", "deconvnet_relu", "guided_backprop", "deconvnet"]


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


def _with_act(model: Any, act: Callable, who: str) -> Any:
    if not hasattr(model, "act"):
        raise TypeError(f"{who}: {type(model).__name__} has no 'act' field to swap; jaxretina models route "
                        "their ReLUs through `act` (found none)")
    return model.clone(act=act)


def guided_backprop(model: Any, variables: Any, x: Any, target: Callable) -> jax.Array:
    """Guided-backprop attribution of ``target`` for one example ``x``: shape of ``x``.

    Compiles once per (model, target, shape): the cloned model compares equal across calls.
    """
    return saliency(model_fn(_with_act(model, guided_relu, "guided_backprop"), variables, target), x, abs=False)


def deconvnet(model: Any, variables: Any, x: Any, target: Callable) -> jax.Array:
    """Deconvnet attribution of ``target`` for one example ``x``: shape of ``x``."""
    return saliency(model_fn(_with_act(model, deconvnet_relu, "deconvnet"), variables, target), x, abs=False)
