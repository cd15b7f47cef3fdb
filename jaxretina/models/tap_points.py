"""The tap point: the one layer every explainable model routes its named activations through.

A model creates one :class:`TapPoints` submodule named :data:`TAPS` and calls it with each
explainable layer's name and activation::

    x = self.taps("conv1_1", self.act(conv(x)))

Outside of :mod:`jaxretina.taps` that call is the identity.  :mod:`jaxretina.taps` turns the
Flax collections below into pure functions (perturb a layer, record it, replace it, scale it);
this module holds only the layer, so models depend on nothing above them.

Example::

    >>> TapPoints().apply({}, "conv1", jnp.ones((1, 2, 2, 3))).shape
    (1, 2, 2, 3)
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["TapPoints", "numbered_taps", "TAPS", "PERTURBATIONS", "INTERMEDIATES", "REPLACEMENTS", "SCALES", "TAP_COLLECTIONS",
           "TAP_SCOPE"]

TAPS = "taps"                      # the name models give their TapPoints submodule
PERTURBATIONS = "perturbations"    # zero arrays added to activations (gradients at every layer)
INTERMEDIATES = "intermediates"    # the activations, recorded
REPLACEMENTS = "replacements"      # arrays that take a layer's place
SCALES = "scales"                  # factors that multiply a layer's activation
TAP_COLLECTIONS = (PERTURBATIONS, INTERMEDIATES, REPLACEMENTS, SCALES)
TAP_SCOPE = "jaxretina.tap"        # the jax.named_scope of a tap's own operations


class TapPoints(nn.Module):
    """Identity at named points; adds a perturbation and records the value when tapped.

    Models create one instance named ``"taps"`` and call it with a layer name and the layer's
    activation (after the layer's own nonlinearity, as a Caffe in-place ReLU leaves the blob).
    """

    @nn.compact
    def __call__(self, name: str, x: jax.Array) -> jax.Array:
        # under its own scope: rule-based methods see a tap as instrumentation, not a layer
        with jax.named_scope(TAP_SCOPE):
            return self._tap(name, x)

    def _tap(self, name: str, x: jax.Array) -> jax.Array:
        if self.has_variable(REPLACEMENTS, name):
            value = self.get_variable(REPLACEMENTS, name)
            if value.shape != x.shape:
                raise ValueError(f"replacement for layer {name!r}: expected shape {x.shape} (with batch "
                                 f"axis); found {value.shape}")
            x = value.astype(x.dtype)
        if self.has_variable(SCALES, name):
            x = x * jnp.asarray(self.get_variable(SCALES, name), x.dtype)
        x = self.perturb(name, x, collection=PERTURBATIONS)
        self.sow(INTERMEDIATES, name, x, init_fn=lambda: None, reduce_fn=_keep_last)
        return x


def _keep_last(_previous: Any, value: Any) -> Any:
    return value


def numbered_taps(taps: TapPoints) -> Callable[[str, Any], Any]:
    """``tap(name, out)`` for wrapped networks, whose layers may run several times: the first
    call of a layer is tapped as ``name``, the next ones as ``name#1``, ``name#2``, …; outputs
    that are not one array pass through untapped."""
    calls: dict[str, int] = {}

    def tap(name: str, out: Any) -> Any:
        if not isinstance(out, jax.Array):
            return out
        seen = calls.get(name, 0)
        calls[name] = seen + 1
        return taps(name if seen == 0 else f"{name}#{seen}", out)

    return tap
