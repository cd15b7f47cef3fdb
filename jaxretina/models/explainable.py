"""Any Flax linen module, unmodified, as an explainable model: :func:`explainable`.

The wrapper runs the user's module under :func:`flax.linen.intercept_methods`: the output of
every chosen submodule call passes through jaxretina's tap point, named by the submodule's
path (``"layer1_0/Conv_1"``; a module called twice gets ``"…#1"`` for its second call).  The
wrapper shares the module's scope, so it takes the module's own variables unchanged
(``explainable(net).apply(variables, x) == net.apply(variables, x)``).  All layer methods
work on it: all-layer Grad-CAM, layer gradients and layer IG, neuron studies, interventions.

Rule-based methods (LRP, guided backprop, deconvnet, layer-wise guided maps) work too: the
rule mechanism (:mod:`jaxretina.propagation`) finds the network's convolutions, dense layers,
sums, pools and ReLUs in its traced program (not inside ``lax.scan``/``cond`` bodies).

Which calls are tapped (``layers``): ``"all"`` (every submodule call), a module class or a
tuple of classes (``nn.Conv``, ``nn.Dense``, ``nn.BatchNorm``, your block class), path globs
(``"layer4_*"``), a predicate ``(path, module) -> bool``, or a tuple mixing them.

Measured (``make bench``): see the README's model table for the wrapped-vs-native timing.

Example::

    >>> class Net(nn.Module):
    ...     @nn.compact
    ...     def __call__(self, x):
    ...         x = nn.relu(nn.Conv(4, (3, 3), name="conv")(x))
    ...         return nn.Dense(2, name="head")(x.mean(axis=(1, 2)))
    >>> net = Net()
    >>> variables = net.init(jax.random.key(0), jnp.ones((1, 8, 8, 3)))
    >>> model = explainable(net, layers=nn.Conv, spatial_dims=2)
    >>> taps.layer_names(model, (1, 8, 8, 3))
    ('conv',)
    >>> cams = explain.grad_cam(model, variables, jnp.ones((8, 8, 3)), targets.class_logit(1))
    >>> cams["conv"].shape
    (8, 8)
"""

from __future__ import annotations

import fnmatch
from typing import Any

import flax.linen as nn

from jaxretina.models.tap_points import TapPoints, numbered_taps

__all__ = ["Explainable", "explainable"]

Selector = Any   # "all" | type | str glob | Callable[[str, nn.Module], bool] | tuple of these


def _selectors(layers: Selector) -> tuple:
    items = layers if isinstance(layers, (tuple, list)) else (layers,)
    for s in items:
        if not (isinstance(s, (str, type)) or callable(s)):
            raise TypeError(f"explainable: layers must be 'all', module classes, path globs or predicates "
                            f"(path, module) -> bool; found {s!r}")
    if not items:
        raise ValueError("explainable: layers is empty; expected 'all' or at least one selector")
    return tuple(items)


def _chosen(selectors: tuple, path: str, module: nn.Module) -> bool:
    for s in selectors:
        if s == "all":
            return True
        if isinstance(s, type):
            if isinstance(module, s):
                return True
        elif isinstance(s, str):
            if fnmatch.fnmatchcase(path, s):
                return True
        elif s(path, module):
            return True
    return False


class Explainable(nn.Module):
    """A Flax module with taps at chosen submodule calls (see the module docstring).

    Attributes:
      module: the user's Flax linen module (unbound).
      layers: the selectors of tapped calls.
      spatial_dims: 2 (images) or 3 (volumes) when known: CAM methods then check the input.
    """

    module: nn.Module
    layers: tuple = ("all",)
    spatial_dims: int | None = None

    @nn.compact
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        tap = numbered_taps(TapPoints(name="taps"))
        child = self.module.clone(parent=self, name="wrapped")
        nn.share_scope(self, child)

        def intercept(next_fun, call_args, call_kwargs, context):
            out = next_fun(*call_args, **call_kwargs)
            module = context.module
            if context.method_name != "__call__" or module is child or isinstance(module, TapPoints):
                return out
            path = "/".join(module.path)
            return tap(path, out) if _chosen(self.layers, path, module) else out

        with nn.intercept_methods(intercept):
            return child(*args, **kwargs)



def explainable(module: nn.Module, layers: Selector = "all", *, spatial_dims: int | None = None) -> Explainable:
    """``module`` as an explainable model tapping the calls ``layers`` selects (see the
    module docstring); its variables are the module's own."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"explainable: expected a flax.linen Module; found {type(module).__name__}")
    if spatial_dims not in (None, 2, 3):
        raise ValueError(f"explainable: spatial_dims must be 2, 3 or None; found {spatial_dims!r}")
    return Explainable(module, _selectors(layers), spatial_dims)

