"""Layer taps: a Flax module turned into pure functions that expose named layers.

A model marks each explainable layer by passing its activation through one shared
:class:`TapPoints` submodule (named ``"taps"``)::

    x = self.taps("conv1_1", self.act(conv(x)))

Outside of :mod:`jaxretina.taps` that call is the identity.  Inside, it does two things:

* ``self.perturb(name, x)`` adds a zero array ``delta[name]`` to the activation, so that
  ``d score / d delta[name] == d score / d activation[name]``.  Differentiating one scalar with
  respect to the whole ``deltas`` dict gives the gradient at **every** layer from one backward
  pass — the core of all-layer Grad-CAM.
* ``self.sow("intermediates", name, x)`` records the activation itself.

A value in the ``"scales"`` collection under a layer's name multiplies that layer's activation
(:func:`TapFunctions.scaled`: seed 000's intervention).  A value in the ``"replacements"``
collection under a layer's name takes the place of that layer's activation (what flows on is
the given array): attributions *to* a layer integrate the
rest of the model as a function of it (:func:`TapFunctions.replaced`).  Under ``jit`` the
layers before it are dead code and XLA drops them.

The functions here hide the Flax collections behind a small contract::

    fns = taps.tap_functions(model)
    out = fns.forward(variables, x)                       # x: a batch (N, ...)
    deltas = fns.zeros(variables, x)                      # {layer: zeros like activation}
    out, acts = fns.tapped(variables, x, deltas)          # acts: {layer: activation}
    grads = jax.grad(lambda d: score(fns.tapped(variables, x, d)[0]))(deltas)

Layer names are the source framework's names (DRIU: Caffe blob names such as ``conv1_2_16``,
``upsample2``), in execution order.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxretina import caches
from jaxretina.models import spec
from jaxretina.models.tap_points import (
    INTERMEDIATES, PERTURBATIONS, REPLACEMENTS, SCALES, TAP_COLLECTIONS, TAPS, TapPoints,
)

__all__ = [
    "TapPoints",
    "TapFunctions",
    "tap_functions",
    "layer_shapes",
    "layer_names",
    "activations",
    "select_layers",
    "resolve_layers",
    "layer_aliases",
    "params_only",
    "spatial_layer_names",
]

class TapFunctions(NamedTuple):
    """Pure functions of ``(variables, x[, deltas])`` for one model; ``x`` carries a batch axis.

    ``forward(variables, x) -> out``: the plain model output.
    ``tapped(variables, x, deltas) -> (out, activations)``: ``deltas`` holds one array per tap
    point (zeros to leave the model unchanged); ``activations`` maps every layer name to its
    value (including its delta).
    ``zeros(variables, x) -> deltas``: zero arrays for every tap point, in execution order.
    ``replaced(variables, x, values) -> out``: the output with each named layer's activation
    replaced by ``values[name]`` (batch axis included).
    ``scaled(variables, x, scales) -> out``: the output with each named layer's activation
    multiplied by ``scales[name]`` (broadcast against it: a scalar, one factor per channel, …)
    before it flows on — a functional intervention, the weights untouched.
    """

    forward: Callable[[Any, jax.Array], Any]
    tapped: Callable[[Any, jax.Array, Mapping[str, jax.Array]], tuple[Any, dict[str, jax.Array]]]
    zeros: Callable[[Any, jax.Array], dict[str, jax.Array]]
    replaced: Callable[[Any, jax.Array, Mapping[str, jax.Array]], Any]
    scaled: Callable[[Any, jax.Array, Mapping[str, Any]], Any]


def params_only(variables: Mapping[str, Any]) -> dict[str, Any]:
    # Never forward stale perturbations or intermediates a caller kept from an earlier apply.
    return {k: v for k, v in variables.items() if k not in TAP_COLLECTIONS}


def tap_functions(model: nn.Module, **apply_kwargs: Any) -> TapFunctions:
    """Pure functions giving a model's output and its tapped layers.

    Args:
      model: a Flax linen module that calls a ``TapPoints`` submodule named ``"taps"``
        (every jaxretina model does).
      **apply_kwargs: extra keyword arguments for ``model.apply`` (e.g. ``train=False``).

    Example::

      >>> model = jaxretina.models.DRIU()
      >>> x = jnp.zeros((1, 32, 32, 3))
      >>> variables = model.init(jax.random.key(0), x)
      >>> fns = tap_functions(model)
      >>> out, acts = fns.tapped(variables, x, fns.zeros(variables, x))
      >>> acts["upsample2"].shape
      (1, 32, 32, 16)
    """

    def forward(variables, x):
        return model.apply(params_only(variables), x, **apply_kwargs)

    def tapped(variables, x, deltas):
        full = dict(params_only(variables))
        full[PERTURBATIONS] = {TAPS: dict(deltas)}
        out, state = model.apply(full, x, mutable=[INTERMEDIATES], **apply_kwargs)
        acts = state.get(INTERMEDIATES, {}).get(TAPS)
        if acts is None:
            raise _no_taps(model)
        return out, dict(acts)

    def zeros(variables, x):
        shapes = tap_shapes(model, variables, x, apply_kwargs)
        return {name: _varying_like(jnp.zeros(s.shape, s.dtype), x) for name, s in shapes.items()}

    def replaced(variables, x, values):
        full = dict(params_only(variables))
        full[REPLACEMENTS] = {TAPS: dict(values)}
        return model.apply(full, x, **apply_kwargs)

    def scaled(variables, x, scales):
        full = dict(params_only(variables))
        full[SCALES] = {TAPS: dict(scales)}
        return model.apply(full, x, **apply_kwargs)

    return TapFunctions(forward, tapped, zeros, replaced, scaled)


def _varying_like(z: jax.Array, x: jax.Array) -> jax.Array:
    """``z`` marked as varying over the same ``shard_map`` mesh axes as ``x``.

    Inside ``jax.shard_map`` a constant is the same on every device, and the gradient with
    respect to such a shared value is summed over the devices — right for a shared parameter,
    wrong for the per-example layer perturbations: every device's Grad-CAM would get the sum of
    all devices' layer gradients.  Perturbations that vary like the input keep each device's
    gradient its own.  Outside ``shard_map`` this is the identity.
    """
    aval = jax.typeof(x)
    mat = getattr(aval, "manual_axis_type", None)   # jax 0.10; earlier releases call it ``vma``
    axes = tuple(sorted(mat.varying if mat is not None else getattr(aval, "vma", ()) or ()))
    return jax.lax.pcast(z, axes, to="varying") if axes else z


def _no_taps(model: nn.Module) -> ValueError:
    return ValueError(
        f"{type(model).__name__} has no tap points: expected a TapPoints submodule named "
        f"'{TAPS}' that the model calls on each explainable layer; found none."
    )


def tap_shapes(model, variables, x, apply_kwargs) -> dict[str, jax.ShapeDtypeStruct]:
    order: list[str] = []  # execution order, seen while tracing (pytree outputs sort dict keys)

    def run(v, z):
        _, state = model.apply(params_only(v), z, mutable=[PERTURBATIONS], **apply_kwargs)
        created = state.get(PERTURBATIONS, {}).get(TAPS, {})
        order.extend(created)
        return created

    shapes = jax.eval_shape(run, variables, x)
    if not shapes:
        raise _no_taps(model)
    return {name: shapes[name] for name in order}


# The one cache of layer lookups: (model, input shape, dtype, apply options) -> {layer: shape}.
# Tracing a model's init costs ~0.5-1 s for Inception V3 (Flax overhead, no compute): once per
# key, shared by every method; jaxretina.clear_caches() empties it.
@caches.memoize(maxsize=256)
def _layer_table(model, input_shape: tuple[int, ...], dtype, apply_items: tuple) -> dict[str, jax.ShapeDtypeStruct]:
    apply_kwargs = dict(apply_items)
    x = jax.ShapeDtypeStruct(input_shape, dtype)
    probe = spec.shape_probe(model)   # an init can need more than the forward (see layer_shapes)
    if probe is not None:
        module, example = probe
        variables = jax.eval_shape(module.init, jax.random.key(0), jax.ShapeDtypeStruct(example.shape, dtype))
    else:
        variables = jax.eval_shape(model.init, jax.random.key(0), x, **apply_kwargs)
    return tap_shapes(model, variables, x, apply_kwargs)


def layer_shapes(
    model: nn.Module, variables: Any, input_shape: Sequence[int], dtype: Any = jnp.float32,
    **apply_kwargs: Any,
) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes of every tapped layer for an input of ``input_shape`` (with batch axis), in
    execution order.

    Costs no FLOPs (``jax.eval_shape``).  ``variables`` may be ``None``: the variables' shapes
    are then taken from an abstract ``init`` — on the model's ``shape_probe()`` input when it has
    one (an init can need more than the forward: Inception V3 builds its auxiliary head, which
    needs 299 px, although the evaluation forward never runs it), else on ``input_shape`` — and
    the answer is cached per (model, shape, dtype, options) for every method that asks.
    """
    if variables is None:
        items = tuple(sorted(apply_kwargs.items()))
        return dict(_layer_table(model, tuple(int(d) for d in input_shape), jnp.dtype(dtype), items))
    return tap_shapes(model, variables, jax.ShapeDtypeStruct(tuple(input_shape), dtype), apply_kwargs)


def layer_names(model: nn.Module, input_shape: Sequence[int], **apply_kwargs: Any) -> tuple[str, ...]:
    """The explainable layer names of ``model`` for ``input_shape``, in execution order."""
    return tuple(layer_shapes(model, None, _one_example(input_shape), **apply_kwargs))


def _one_example(input_shape: Sequence[int]) -> tuple[int, ...]:
    # names and ranks do not depend on the batch size: every batch shares the lookup of batch 1
    return (1, *tuple(input_shape)[1:])


def spatial_layer_names(model: nn.Module, input_shape: Sequence[int], **apply_kwargs: Any) -> tuple[str, ...]:
    """The layers with a spatial map: activation rank equal to the input's (``(N, H, W, C)``
    for images) — what CAM methods call ``"all"`` (a classifier's logits have no map)."""
    shapes = layer_shapes(model, None, _one_example(input_shape), **apply_kwargs)
    return tuple(name for name, s in shapes.items() if len(s.shape) == len(input_shape))


def layer_aliases(model: Any) -> dict[str, str]:
    """``{other name: layer name}`` a model declares (``model.layer_aliases()``, e.g. the
    PyTorch module paths of the network it reimplements), else ``{}``."""
    return spec.layer_aliases(model)


def resolve_layers(available: Sequence[str], layers: str | Sequence[str],
                   aliases: Mapping[str, str] | None = None) -> tuple[tuple[str, str], ...]:
    """``((name asked for, layer name), ...)``: :func:`select_layers` that also accepts the
    model's aliases (:func:`layer_aliases`), so results can be keyed by the name asked for."""
    aliases = aliases or {}
    if isinstance(layers, str):
        layers = tuple(available) if layers == "all" else (layers,)
    asked = tuple(layers)
    chosen = select_layers(available, tuple(aliases.get(n, n) if n not in available else n for n in asked))
    return tuple(zip(asked, chosen))


def select_layers(available: Sequence[str], layers: str | Sequence[str]) -> tuple[str, ...]:
    """Resolve ``"all"``, one name or a list of names against the available layers.

    Raises ``ValueError`` naming the unknown layers and listing the valid ones.
    """
    if isinstance(layers, str):
        layers = tuple(available) if layers == "all" else (layers,)
    layers = tuple(layers)
    unknown = [name for name in layers if name not in available]
    if unknown:
        raise ValueError(
            f"unknown layer name(s) {unknown}; expected 'all' or names among {list(available)}"
        )
    if not layers:
        raise ValueError("no layers requested; expected 'all' or at least one layer name")
    return layers


def activations(
    model: nn.Module, variables: Any, x: jax.Array, layers: str | Sequence[str] = "all",
    **apply_kwargs: Any,
) -> tuple[Any, dict[str, jax.Array]]:
    """``(output, {layer: activation})`` of one batched forward pass, compiled once per
    (model, layers, options, shape) — not run op by op (an Inception V3 forward eagerly is
    ~200 small compiles on its first call).  ``apply_kwargs`` must be hashable (``train=False``).

    Example::

      >>> out, acts = activations(model, variables, xs, ["conv1_2", "upsample2"])
      >>> out.shape, acts["conv1_2"].shape, acts["upsample2"].shape
      ((2, 32, 32, 1), (2, 32, 32, 64), (2, 32, 32, 16))
    """
    items = tuple(sorted(apply_kwargs.items()))
    chosen = select_layers(layer_names(model, jnp.shape(x), **apply_kwargs), layers)
    out, values = _activations(model, chosen, items, variables, x)
    return out, dict(zip(chosen, values))  # in execution / asked-for order (a jit's output dict is key-sorted)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _activations(model, chosen, apply_items, variables, x):
    fns = tap_functions(model, **dict(apply_items))
    out, acts = fns.tapped(variables, x, fns.zeros(variables, x))
    return out, tuple(acts[name] for name in chosen)
