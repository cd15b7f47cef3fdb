"""Named scopes a model puts around operations so the rule mechanism
(:mod:`jaxretina.propagation`) reads them as one unit.

* :data:`LINEAR_SCOPE`: the operations under it compute **one linear map** of one input with
  one learned kernel whose last axis is the output channel axis (the output's last axis) — a
  3-D convolution written as several 2-D ones (:func:`jaxretina.models.layers3d.conv3d`).
  A propagation rule then sees one ``conv`` site and replays the whole region with a modified
  kernel (``W⁺``, ones, …), exactly as it would one ``conv_general_dilated``.
* :data:`MAXPOOL_SCOPE`: one max pool written as strided views and selections
  (:func:`jaxretina.models.layers.first_max`): a ``maxpool`` site, so a rule may act on it
  (DeepLIFT's max-pool rule); otherwise its gradient routes as before.
* :data:`ACTIVATION_SCOPE`: one elementwise nonlinearity (a model's ``act`` field).

Outside the rule mechanism a named scope changes nothing but the names in a profile.

Example::

    >>> with jax.named_scope(LINEAR_SCOPE):
    ...     y = jnp.ones((2, 3)) @ jnp.ones((3, 4))
    >>> y.shape
    (2, 4)
"""

from __future__ import annotations

import functools
from typing import Callable

import jax

__all__ = ["LINEAR_SCOPE", "MAXPOOL_SCOPE", "ACTIVATION_SCOPE", "scoped"]

LINEAR_SCOPE = "jaxretina.linear"
MAXPOOL_SCOPE = "jaxretina.maxpool"
ACTIVATION_SCOPE = "jaxretina.activation"


def scoped(scope: str) -> Callable[[Callable], Callable]:
    """Decorator: the function's operations run under ``jax.named_scope(scope)``."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            with jax.named_scope(scope):
                return fn(*args, **kwargs)
        return inner

    return wrap
