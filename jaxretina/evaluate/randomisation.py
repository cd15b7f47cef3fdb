"""Model parameter randomisation (Adebayo et al. 2018's sanity check): a map that stays the same
when the model's layers are re-initialised explains the architecture, not what the model learnt.

The variables are data: every layer's re-initialisation is drawn once (layer ``i`` from
``fold_in(key, i)``), and each randomised model is selected from the original and that one fresh
copy inside the compiled program — two parameter sets are held, never a stack of ``L`` — and
``chunk`` randomised models run batched (``jax.vmap``) per call (on a CPU, ``chunk=1`` is
fastest: batching models batches their weights).

* :func:`parameter_layers` — the model's layers that hold parameters (every innermost dictionary
  of ``variables["params"]`` with arrays), in the order a forward pass calls them.
* :func:`reinitialised` — ``variables`` with the chosen layers re-initialised as PyTorch's
  ``reset_parameters`` does (Quantus' MPRT calls it): kernels and their biases
  ``U(−1/√fan_in, 1/√fan_in)`` (``fan_in`` = the kernel's size without its output axis), batch
  norms' scale 1, offset 0, running mean 0 and variance 1.
* :func:`parameter_randomisation` — ``similarity(Φ(θ), Φ(θ_l))`` for each step ``l``:
  ``"cascading"`` re-initialises the top ``l + 1`` layers (from the output down), ``"independent"``
  only layer ``l`` (top-down order); ``Φ`` is ``explainer(variables, x)``.  A step may be a
  group of layers (a tuple of paths: a DenseNet's block), re-initialised together.  With
  ``smooth=N`` it is Hedström et al.'s smooth MPRT: ``Φ`` is the mean map over ``N`` noisy copies
  ``x + ε_s``, ``ε_s ~ N(0, (noise · (max x − min x))²)`` drawn from
  ``fold_in(fold_in(key, NOISE_STREAM), s)`` — the same draws for every model, so the noise the
  explainer carries is averaged out of both sides alike.  With ``batch=True``, ``x`` is a batch
  ``(N, …)``: each randomised model explains the ``N`` examples in one batched call.
* :func:`efficient_randomisation` — Hedström et al.'s efficient MPRT: the relative rise of the
  map's complexity (:func:`~jaxretina.evaluate.discrete_entropy`) from the model to the model
  with every given layer re-initialised, ``(H(Φ(θ_all)) − H(Φ(θ))) / H(Φ(θ))``: large when
  randomising the model scrambles the map (Quantus' ``EfficientMPRT``).
* :func:`random_logit` (Sixt et al. 2020; Quantus' ``RandomLogit``) — ``similarity(Φ(x, c),
  Φ(x, c'))`` with ``c'`` drawn uniformly from the other classes (:func:`draw_other_class`): a
  map that does not change with the class explained does not explain the class.

Example::

    >>> def saliency_of(v, x):
    ...     return explain.saliency(explain.model_fn(grader, v, targets.class_logit(3)), x).sum(-1)
    >>> layers = evaluate.parameter_layers(grader, grader_variables, z)
    >>> r = evaluate.parameter_randomisation(saliency_of, grader_variables, z, layers=layers[-3:],
    ...                                      key=jax.random.key(0))
    >>> r.shape
    (3,)
    >>> def class_saliency(v, x, c):                                       # c: a traced class
    ...     return explain.saliency(explain.model_fn(grader, v, targets.class_logit(c)), x).sum(-1)
    >>> phi = jax.tree_util.Partial(class_saliency, grader_variables)
    >>> s = evaluate.random_logit(phi, z, 3, classes=5, key=jax.random.key(0))
    >>> bool(-1 <= s <= 1)
    True
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxretina.evaluate.agreement import spearman, ssim
from jaxretina.evaluate.complexity import discrete_entropy
from jaxretina.explain.core import check_input, chunked_map, split_fn
from jaxretina.explain.memory import pick_chunk

__all__ = ["parameter_layers", "reinitialised", "parameter_randomisation", "RANDOMISATION_MODES", "random_logit",
           "draw_other_class", "efficient_randomisation", "NOISE_STREAM"]

RANDOMISATION_MODES = ("cascading", "independent")
NOISE_STREAM = 0x6E6F6973   # smooth MPRT's draws: fold_in(fold_in(key, NOISE_STREAM), s); layers use fold_in(key, i)


def parameter_layers(model: Any, variables: Any, x: Any) -> list[str]:
    """Paths (``"block/layer"``) of the layers of the Flax ``model`` that hold parameters (the
    innermost dictionaries of ``variables["params"]`` with arrays), in the order a forward pass
    at the example ``x`` calls them (bottom-up); found by one abstract trace (no compile)."""
    params = variables.get("params") if isinstance(variables, dict) else None
    if not isinstance(params, dict) or not params:
        raise ValueError("parameter_layers: expected Flax variables with a non-empty 'params' collection; found "
                         f"{type(variables).__name__} with keys {sorted(variables) if isinstance(variables, dict) else '—'}")
    holders = set()

    def walk(tree, path):
        if any(not isinstance(v, dict) for v in tree.values()):
            holders.add("/".join(path))
        for name, sub in tree.items():
            if isinstance(sub, dict):
                walk(sub, path + (name,))

    walk(params, ())
    called: list[str] = []

    def record(next_fun, args, kwargs, context):
        path = "/".join(context.module.path)
        if path in holders and path not in called:
            called.append(path)
        return next_fun(*args, **kwargs)

    example = jax.ShapeDtypeStruct((1, *np.shape(x)), jnp.result_type(x))
    with nn.intercept_methods(record):
        jax.eval_shape(lambda v, z: model.apply(v, z), variables, example)
    missing = sorted(holders - set(called))
    if missing:
        raise ValueError(f"parameter_layers: the forward pass never called the layers {missing[:5]}; are these "
                         "the model's variables?")
    return called


def _get(tree, path):
    for part in path.split("/"):
        tree = tree[part]
    return tree


def _replace(tree, path, new):
    head, _, rest = path.partition("/")
    return {**tree, head: new if not rest else _replace(tree[head], rest, new)}


def _fresh(layer_params: dict, layer_stats: dict | None, key: jax.Array) -> tuple[dict, dict | None]:
    """One layer re-initialised as PyTorch's ``reset_parameters``."""
    kernel = layer_params.get("kernel")
    fan_in = math.prod(kernel.shape[:-1]) if kernel is not None and kernel.ndim >= 2 else None
    params = {}
    for j, (name, value) in enumerate(sorted(layer_params.items())):
        if not isinstance(value, jax.Array) and not hasattr(value, "shape"):
            params[name] = value
        elif name == "scale":
            params[name] = jnp.ones_like(value)
        elif fan_in is None:            # a batch norm's offset, or a layer without a kernel
            params[name] = jnp.zeros_like(value)
        else:
            bound = 1.0 / math.sqrt(fan_in)
            params[name] = jax.random.uniform(jax.random.fold_in(key, j), value.shape, value.dtype, -bound, bound)
    stats = None
    if layer_stats is not None:
        stats = {n: (jnp.ones_like(v) if n == "var" else jnp.zeros_like(v)) for n, v in layer_stats.items()}
    return params, stats


def reinitialised(variables: Any, layers: Sequence[str], key: jax.Array, chosen: jax.Array) -> Any:
    """``variables`` with layer ``layers[i]`` re-initialised (from ``fold_in(key, i)``) where
    ``chosen[i]``; traceable (``chosen`` may be traced)."""
    return _select(variables, _every_fresh(variables, tuple(layers), key), layers, chosen)


def _stats_of(variables, path):
    if "batch_stats" not in variables:
        return None
    try:
        return _get(variables["batch_stats"], path)
    except KeyError:
        return None


def _every_fresh(variables: Any, layers: tuple, key: jax.Array) -> Any:
    """``variables`` with every layer of ``layers`` re-initialised (layer ``i`` from ``fold_in(key, i)``)."""
    out = dict(variables)
    for i, path in enumerate(layers):
        stats = _stats_of(variables, path)
        new_params, new_stats = _fresh(_get(variables["params"], path), stats, jax.random.fold_in(key, i))
        out["params"] = _replace(out["params"], path, new_params)
        if stats is not None:
            out["batch_stats"] = _replace(out["batch_stats"], path, new_stats)
    return out


def _select(variables: Any, fresh: Any, layers: Sequence[str], chosen: jax.Array) -> Any:
    """``variables`` with layer ``layers[i]`` taken from ``fresh`` where ``chosen[i]``."""
    out = dict(variables)
    for i, path in enumerate(layers):
        pick = lambda new, old: jnp.where(chosen[i], new, old)  # noqa: E731
        out["params"] = _replace(out["params"], path, jax.tree.map(pick, _get(fresh["params"], path),
                                                                   _get(variables["params"], path)))
        stats = _stats_of(variables, path)
        if stats is not None:
            out["batch_stats"] = _replace(out["batch_stats"], path,
                                          jax.tree.map(pick, _get(fresh["batch_stats"], path), stats))
    return out


_fresh_variables = jax.jit(_every_fresh, static_argnums=1)


class _Randomised(NamedTuple):
    explainer: Callable
    layers: tuple      # every path, top-down
    group: tuple       # each path's step (its group's place, top-down)
    cascading: bool
    smooth: int
    noise: float
    batch: bool = False

    def __call__(self, consts, step):
        """``Φ(θ_step)`` (smoothed over noisy copies when ``smooth``); step −1 is the original model.
        The re-initialised layers are drawn once, outside (``fresh``): a step only selects; with
        ``batch`` every example of ``x`` is explained by the same selected model."""
        variables, fresh, x, key = consts
        order = jnp.asarray(self.group)
        chosen = (order <= step) if self.cascading else (order == step)
        v = _select(variables, fresh, self.layers, chosen)
        if self.batch:   # the weights shared, the examples batched
            return jax.vmap(self.explain, in_axes=(None, 0, None))(v, x, key)
        return self.explain(v, x, key)

    def explain(self, v, x, key):
        """``Φ`` of one example under the variables ``v``."""
        if not self.smooth:
            return jnp.asarray(self.explainer(v, x))
        sigma = self.noise * (x.max() - x.min())
        noise_key = jax.random.fold_in(key, NOISE_STREAM)

        def noisy(s):
            eps = sigma * jax.random.normal(jax.random.fold_in(noise_key, s), x.shape, x.dtype)
            return jnp.asarray(self.explainer(v, x + eps))

        # the first draw starts the sum (its shape and mesh variance are the map's)
        return jax.lax.fori_loop(1, self.smooth, lambda s, total: total + noisy(s), noisy(0)) / self.smooth


def _steps(variables, layers, who):
    """``(top-down paths, each path's step)`` from ``layers`` (bottom-up paths or groups)."""
    params = variables.get("params", {}) if isinstance(variables, dict) else {}
    groups = [tuple(g) if isinstance(g, (list, tuple)) else (g,) for g in (layers or ())]
    unknown = []
    for path in (p for g in groups for p in g):
        try:
            _get(params, path)
        except (KeyError, TypeError):
            unknown.append(path)
    if not groups or unknown or any(not g for g in groups):
        raise ValueError(f"{who}: layers must be a non-empty list of parameter_layers(model, variables, x) paths "
                         f"(or tuples of them); unknown: {unknown[:5]}")
    top_down = list(reversed(groups))
    return tuple(p for g in top_down for p in g), tuple(k for k, g in enumerate(top_down) for _ in g), len(groups)


def _checked(x, batch, who):
    """``x`` as an array: one example, or with ``batch`` a non-empty batch of examples."""
    if not isinstance(batch, bool):
        raise ValueError(f"{who}: batch must be True or False; found {batch!r}")
    x = check_input(x, who=who)
    if batch and (x.ndim < 2 or x.shape[0] == 0):
        raise ValueError(f"{who}: with batch=True x must be a non-empty batch (N, …) of examples; found shape "
                         f"{x.shape}")
    return x


def parameter_randomisation(explainer: Callable, variables: Any, x: Any, *, layers: Sequence[Any], key: jax.Array,
                            mode: str = "cascading", similarity: Callable = spearman, smooth: int = 0,
                            noise: float = 0.1, chunk: int | str | None = None,
                            budget: float | None = None, batch: bool = False) -> jax.Array:
    """``(len(layers),)``: ``similarity(Φ(θ), Φ(θ_l))`` per step, ``layers`` given bottom-up (as
    :func:`parameter_layers` lists them, e.g. its last few; an entry may be a tuple of paths
    randomised together) and randomised top-down (module docstring); ``smooth`` > 0: smooth MPRT.
    ``explainer(variables, x)`` returns one map; it must be hashable and the same object from
    call to call (a module-level function), or every call compiles anew.

    ``batch=True``: ``x`` is a batch ``(N, …)`` and the result ``(N, len(layers))``, row ``n``
    equal to the call on ``x[n]`` alone; each randomised model explains the ``N`` examples in one
    batched call (``jax.vmap`` over the examples, the weights shared), so the selection of the
    model and the per-call cost are paid once a step, not once an example."""
    who = "parameter_randomisation"
    x = _checked(x, batch, who)
    if mode not in RANDOMISATION_MODES:
        raise ValueError(f"{who}: mode must be one of {RANDOMISATION_MODES}; found {mode!r}")
    if isinstance(smooth, bool) or not isinstance(smooth, (int, np.integer)) or smooth < 0:
        raise ValueError(f"{who}: smooth must be an integer ≥ 0 (noisy copies per map); found {smooth!r}")
    if not (isinstance(noise, (int, float)) and not isinstance(noise, bool) and noise > 0):
        raise ValueError(f"{who}: noise must be a positive share of the input's range; found {noise!r}")
    paths, group, steps = _steps(variables, layers, who)
    term = _Randomised(explainer, paths, group, mode == "cascading", int(smooth), float(noise), batch)
    consts, xs = (variables, _fresh_variables(variables, paths, key), x, key), jnp.arange(-1, steps)
    chunk = 1 if chunk is None and budget is None else chunk   # one model per call unless asked
    maps = chunked_map(term, consts, xs, chunk=pick_chunk(term, consts, xs, chunk, budget, who=who))
    return _compare_to_first(similarity, maps, batch)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _compare_to_first(similarity: Callable, maps: jax.Array, batch: bool = False) -> jax.Array:
    """``similarity(maps[0], maps[i])`` for ``i ≥ 1`` (``(steps,)``; with ``batch`` the maps are
    ``(1 + steps, N, …)`` and the result ``(N, steps)``): one compiled program per (similarity,
    shape) instead of its operations one by one."""
    def against_first(m):
        return jax.vmap(similarity, in_axes=(None, 0))(m[0], m[1:])

    return jax.vmap(against_first, in_axes=1)(maps) if batch else against_first(maps)


@functools.partial(jax.jit, static_argnames="bins")
def _entropy_rise(maps: jax.Array, *, bins: int) -> jax.Array:
    """``(N,)`` relative entropy rises from the maps ``(2, N, …)`` (before, after)."""
    entropy = jax.vmap(functools.partial(discrete_entropy, bins=bins))
    before, after = entropy(maps[0]), entropy(maps[1])
    return (after - before) / before


def efficient_randomisation(explainer: Callable, variables: Any, x: Any, *, layers: Sequence[Any], key: jax.Array,
                            bins: int = 100, batch: bool = False) -> jax.Array:
    """Efficient MPRT (module docstring): ``(H(Φ(θ_all)) − H(Φ(θ))) / H(Φ(θ))`` with every layer of
    ``layers`` re-initialised in ``θ_all`` and ``H`` the ``bins``-bin discrete entropy.  Two
    explainer calls in one program; ``batch=True``: ``x`` is a batch ``(N, …)`` and the result
    ``(N,)``, each model explaining the ``N`` examples in one call."""
    who = "efficient_randomisation"
    x = _checked(x, batch, who)
    paths, _, _ = _steps(variables, layers, who)
    term = _Randomised(explainer, paths, (0,) * len(paths), True, 0, 1.0, batch)
    maps = chunked_map(term, (variables, _fresh_variables(variables, paths, key), x, key), jnp.arange(-1, 1), chunk=2)
    if not batch:
        return _entropy_rise(maps[:, None], bins=bins)[0]
    return _entropy_rise(maps, bins=bins)


def draw_other_class(key: jax.Array, c: Any, classes: int) -> jax.Array:
    """A class other than ``c`` among ``classes``, uniformly: ``j ~ U{0, …, classes − 2}`` from
    ``key``, then ``j + (j ≥ c)`` (Quantus' ``RandomLogit`` indexes the other classes the same way)."""
    j = jax.random.randint(key, (), 0, classes - 1)
    return j + (j >= c).astype(j.dtype)


class _ForClass(NamedTuple):
    fn: Callable   # static half of the explainer (core.split_fn); its data travel traced in consts

    def __call__(self, consts, c):
        data, x = consts
        return jnp.asarray(self.fn(*data, x, c))


def random_logit(explainer: Callable, x: Any, c: Any, *, classes: int, key: jax.Array,
                 similarity: Callable = ssim) -> jax.Array:
    """``similarity(Φ(x, c), Φ(x, c'))``, ``c' = draw_other_class(key, c, classes)``; ``Φ`` is
    ``explainer(x, class)`` called with a traced ``int32`` class (e.g. a ``Partial`` over
    ``explain.model_fn(model, v, targets.class_logit(k))``), both maps in one batched call."""
    who = "random_logit"
    x = check_input(x, who=who)
    if isinstance(classes, bool) or not isinstance(classes, (int, np.integer)) or classes < 2:
        raise ValueError(f"{who}: classes must be an integer ≥ 2; found {classes!r}")
    if isinstance(c, (int, np.integer)) and not 0 <= c < classes:
        raise ValueError(f"{who}: class {c} out of range for {classes} classes")
    if key is None:
        raise ValueError(f"{who}: a key is required (the other class is drawn from it)")
    fn, data = split_fn(explainer)
    c = jnp.asarray(c, jnp.int32)
    pair = jnp.stack([c, draw_other_class(key, c, classes).astype(jnp.int32)])
    maps = chunked_map(_ForClass(fn), (data, x), pair, chunk=2)
    return _compare_to_first(similarity, maps)[0]
