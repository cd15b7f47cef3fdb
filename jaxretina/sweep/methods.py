"""What a sweep computes for one example: model, preprocessing, methods and targets as one
pure function ``(variables, raw, index) -> (maps, scalars)``.

``raw`` is what :mod:`jaxretina.sweep.inputs` loads (uint8 RGB, or a [0, 1] float volume);
the preprocessing runs on the device inside the same program.  Methods (``kind``: options,
defaults in brackets):

* ``ig`` — :func:`jaxretina.explain.integrated_gradients`: ``steps`` [32], ``rule``
  [gausslegendre], ``chunk`` [8], ``stem`` [true], ``baseline`` [black = the preprocessed black
  image for images, 0 for volumes; ``zero``; or a number in model-input units].  Map: the
  attribution (input's shape); scalar ``<name>.delta`` (completeness error).
* ``gradcam`` / ``gradcampp`` — :func:`~jaxretina.explain.grad_cam` (++): ``layers`` [all],
  ``relu`` [true], ``resize`` [true], ``normalize`` [false]; ``gradcampp`` also ``eps`` [0: the
  published formula; 1e-6 is pytorch-grad-cam's].  Maps ``<name>/<layer>``.
* ``hirescam``, ``gradcam_elementwise``, ``xgradcam`` (also ``eps`` [0; 1e-7 is
  pytorch-grad-cam's]), ``layercam``, ``eigencam``, ``eigengradcam`` — the CAM family
  (:mod:`jaxretina.explain.cam_family`), the options and maps of ``gradcam``.
* ``ablationcam``, ``scorecam`` — :mod:`jaxretina.explain.cam_perturbation`: ``layers`` [last:
  the last spatial layer; a run per channel of each], ``chunk`` [8], ``relu``, ``resize``,
  ``normalize`` as ``gradcam``.  Maps ``<name>/<layer>``.
* ``fullgrad`` — :func:`jaxretina.explain.full_grad`: ``eps`` [0; 1e-7 is pytorch-grad-cam's].
  Map: the input's spatial shape, in [0, 1].
* ``occlusion`` — :func:`jaxretina.explain.occlusion`: ``window`` [16] and ``strides`` [8]
  pixels per spatial axis (the window spans the channels), ``baseline`` [black, as ``ig``],
  ``chunk`` [16].  Map: input's shape.
* ``feature_ablation``, ``shapley_value_sampling`` (``permutations`` [8]), ``kernel_shap``
  (``samples`` [256]), ``lime`` (``samples`` [256], ``alpha`` [0.01], ``kernel_width`` [1]) —
  :mod:`jaxretina.explain.shapley`, :mod:`~jaxretina.explain.surrogate`: features are a grid of
  ``cells`` per spatial axis (:func:`jaxretina.explain.grid_features`; [8], 4 for Shapley
  sampling), ``baseline`` [black], ``chunk`` [16]; draws from ``fold_in(key(seed), example
  index)``.  Map: input's shape.
* ``rise`` — :func:`jaxretina.explain.rise`: ``masks`` [4000], ``cells`` [7], ``p`` [0.5],
  ``chunk`` [32]; masks from ``fold_in(key(seed), example index)``.  Map: input's spatial shape.
* ``occlusion_sensitivity`` — :func:`jaxretina.explain.occlusion_sensitivity` (MONAI's):
  ``mask_size`` [16], ``overlap`` [0.6], ``mode`` [gaussian; mean_img, mean_patch or a number],
  ``chunk`` [16].  Map: the target with each box occluded, blended (input's spatial shape).
* ``extremal_perturbation`` — :func:`jaxretina.explain.extremal_perturbation` (TorchRay's
  settings): ``area`` [0.1], ``max_iter`` [800], ``variant`` [preserve; delete, dual].  Map: the
  mask (input's spatial shape).
* ``guided_backprop``, ``deconvnet``, ``gradient_x_input``, ``saliency`` (``abs`` [true]) and
  ``smoothgrad`` (of the saliency: ``samples`` [16], ``sigma`` [0.15: the noise's standard
  deviation as a fraction of the input's value range — 0..255 pixels or [0, 1] voxels — after
  preprocessing],
  ``chunk`` [8]; noise from ``fold_in(key(seed), example index)``, so any batching gives the
  same draws).
* ``smoothgrad`` also takes ``variant`` [smoothgrad; smoothgrad_sq, vargrad: NoiseTunnel's].
* ``deeplift`` — :func:`jaxretina.explain.deeplift`: ``baseline`` [black, as ``ig``].
* ``gradient_shap`` — :func:`jaxretina.explain.gradient_shap`: ``samples`` [16], ``sigma`` [0:
  noise as a fraction of the input's range, as ``smoothgrad``], ``chunk`` [8], ``baselines``
  [black; ``black+white``]; draws from ``fold_in(key(seed), example index)``.
* ``excitation_backprop`` — :func:`jaxretina.explain.excitation_backprop` at the input
  (channels summed: a map of the input's spatial shape).
* ``lrp`` — :func:`jaxretina.explain.lrp`: ``composite`` [epsilon_plus_flat; or epsilon,
  epsilon_plus, epsilon_gamma_box, epsilon_alpha2_beta1, epsilon_alpha2_beta1_flat],
  ``epsilon`` [1e-6], ``gamma`` [0.25, epsilon_gamma_box]; epsilon_gamma_box's z^B bounds are
  the preprocessed values of black and white pixels per channel ([0, 1] for volumes).  Map: the
  relevance (input's shape), starting from the target's value.
* ``guided_gradcam`` — :func:`jaxretina.explain.guided_grad_cams`: ``layers`` [all],
  ``interpolate`` [nearest; linear].  Maps ``<name>/<layer>`` (input's shape).
* ``layer_gradient_x_activation`` — ``layers`` [all]; ``layer_conductance`` and
  ``internal_influence`` — ``layer`` [last: the last spatial layer], ``steps`` [32], ``rule``
  [gausslegendre], ``chunk`` [8], ``baseline`` [black, as ``ig``].  These attribute to a
  layer: with ``sum_channels`` [true] a map is summed over the layer's channels (the layer's
  spatial shape), else the layer's activation shape.  Maps ``<name>/<layer>``.
* ``neuron_conductance`` — :func:`jaxretina.explain.neuron_conductance`: ``layer`` [last],
  ``neuron`` (required: a flat index into the layer's activation), ``steps``, ``rule``,
  ``chunk``, ``baseline`` as ``layer_conductance``.  Map: input's shape.

Metrics (``--metric``, :mod:`jaxretina.sweep.metrics`) score every map of every target inside
the same program: scalars ``<map>:<metric>``, curves ``<map>:<metric>`` among the maps.

Targets (:mod:`jaxretina.targets`, ``kind:options``): ``segmentation_sum`` (the default of the
segmenters), ``segmentation_mean``, ``pixel:i=,j=``, ``class_logit:c=``, ``class_probability:c=``,
``top_class`` (the default of the classifiers), ``argmax_score:c=``, ``soft_count:c=``.  Every
target adds the scalar ``score`` (the target's value at the input).  With several targets each
name is prefixed by the target's (``class_logit_c4/ig``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import numpy as np
import jax
import jax.numpy as jnp

from jaxretina import explain, preprocess, targets, taps
from jaxretina.explain.extremal import VARIANTS
from jaxretina.explain.quadrature import RULES
from jaxretina.models import registry
from jaxretina.sweep import metrics as sweep_metrics
from jaxretina.sweep.config import Spec, finite_number, positive_int

__all__ = ["Computation", "build_computation", "PREPROCESSING", "METHODS", "TARGETS", "default_preprocess",
           "default_targets"]


def _unit(raw):
    return raw.astype(jnp.float32) / 255.0


PREPROCESSING: dict[str, Callable[[jax.Array], jax.Array]] = {
    "driu_caffe": preprocess.driu_caffe_input,        # uint8 RGB -> BGR − Caffe mean
    "imagenet": preprocess.imagenet_normalize,        # uint8 RGB -> (x − mean) / std
    "unit": _unit,                                     # uint8 RGB -> [0, 1]
    "pixels": lambda raw: raw.astype(jnp.float32),    # 0..255 floats (a model normalising inside)
    "none": lambda raw: raw.astype(jnp.float32),      # volumes: already [0, 1]
}

TARGETS = ("segmentation_sum", "segmentation_mean", "pixel", "class_logit", "class_probability", "top_class",
           "argmax_score", "soft_count")
CAMS = {"gradcam": explain.grad_cam, "gradcampp": explain.grad_cam_plus_plus, "hirescam": explain.hires_cam,
        "gradcam_elementwise": explain.grad_cam_elementwise, "xgradcam": explain.xgrad_cam,
        "layercam": explain.layer_cam, "eigencam": explain.eigen_cam, "eigengradcam": explain.eigen_grad_cam}
METHODS = ("ig", *CAMS, "guided_backprop", "deconvnet", "saliency", "gradient_x_input",
           "smoothgrad", "lrp", "deeplift", "gradient_shap", "excitation_backprop", "guided_gradcam",
           "layer_gradient_x_activation", "layer_conductance", "internal_influence", "neuron_conductance",
           "ablationcam", "scorecam", "fullgrad", "occlusion", "feature_ablation", "shapley_value_sampling",
           "kernel_shap", "lime", "rise", "extremal_perturbation", "occlusion_sensitivity")
_PERTURBATION = {"feature_ablation": explain.feature_ablation, "shapley_value_sampling": explain.shapley_value_sampling,
                 "kernel_shap": explain.kernel_shap, "lime": explain.lime}
_LRP = ("epsilon", "epsilon_plus", "epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1",
        "epsilon_alpha2_beta1_flat")


def default_preprocess(model_spec: registry.ModelSpec, model: Any) -> str:
    """The registry's preprocessing of raw input for ``model``."""
    return model_spec.preprocessing_of(model)


def default_targets(model_spec: registry.ModelSpec) -> tuple[Spec, ...]:
    """The registry's default target of the model."""
    return (Spec(model_spec.default_target),)


def target_name(spec: Spec) -> str:
    if "name" in spec.opts:
        return str(spec.opts["name"])
    return spec.kind + "".join(f"_{k}{v}" for k, v in spec.options)


def build_target(spec: Spec) -> targets.Target:
    if spec.kind not in TARGETS:
        raise ValueError(f"sweep: unknown target {spec.kind!r}; expected one of {list(TARGETS)}")
    opts = {k: v for k, v in spec.opts.items() if k != "name"}
    try:
        return getattr(targets, spec.kind)(**opts)
    except TypeError as e:
        raise ValueError(f"sweep: target {spec.text()!r}: {e}") from None


_OPTIONS = {
    "ig": {"steps": 32, "rule": "gausslegendre", "chunk": 8, "stem": True, "baseline": "black"},
    "gradcam": {"layers": "all", "relu": True, "resize": True, "normalize": False},
    "guided_backprop": {}, "deconvnet": {}, "gradient_x_input": {},
    "saliency": {"abs": True},
    "smoothgrad": {"samples": 16, "sigma": 0.15, "chunk": 8, "variant": "smoothgrad"},
    "deeplift": {"baseline": "black"},
    "gradient_shap": {"samples": 16, "sigma": 0.0, "chunk": 8, "baselines": "black"},
    "excitation_backprop": {},
    "lrp": {"composite": "epsilon_plus_flat", "epsilon": 1e-6, "gamma": 0.25},
    "guided_gradcam": {"layers": "all", "interpolate": "nearest"},
    "layer_gradient_x_activation": {"layers": "all", "sum_channels": True},
    "layer_conductance": {"layer": "last", "steps": 32, "rule": "gausslegendre", "chunk": 8, "baseline": "black",
                          "sum_channels": True},
    "neuron_conductance": {"layer": "last", "neuron": None, "steps": 32, "rule": "gausslegendre", "chunk": 8,
                           "baseline": "black"},
}
_OPTIONS.update({
    "fullgrad": {"eps": 0.0},
    "occlusion": {"window": 16, "strides": 8, "baseline": "black", "chunk": 16},
    "feature_ablation": {"cells": 8, "baseline": "black", "chunk": 16},
    "shapley_value_sampling": {"cells": 4, "permutations": 8, "baseline": "black", "chunk": 16},
    "kernel_shap": {"cells": 8, "samples": 256, "baseline": "black", "chunk": 16},
    "lime": {"cells": 8, "samples": 256, "baseline": "black", "chunk": 16, "alpha": 0.01, "kernel_width": 1.0},
    "rise": {"masks": 4000, "cells": 7, "p": 0.5, "chunk": 32},
    "extremal_perturbation": {"area": 0.1, "max_iter": 800, "variant": "preserve"},
    "occlusion_sensitivity": {"mask_size": 16, "overlap": 0.6, "mode": "gaussian", "chunk": 16},
})
_OPTIONS["internal_influence"] = dict(_OPTIONS["layer_conductance"])
_OPTIONS["ablationcam"] = _OPTIONS["scorecam"] = {"layers": "last", "chunk": 8, "relu": True, "resize": True,
                                                 "normalize": False}
_OPTIONS["gradcampp"] = _OPTIONS["xgradcam"] = {**_OPTIONS["gradcam"], "eps": 0.0}
for _kind in ("hirescam", "gradcam_elementwise", "layercam", "eigencam", "eigengradcam"):
    _OPTIONS[_kind] = dict(_OPTIONS["gradcam"])


def _layers(v) -> bool:
    return isinstance(v, str) or (isinstance(v, tuple) and bool(v) and all(isinstance(x, str) for x in v))


# Each option's check and what it expects: a wrong value is an error naming the option, before
# anything is traced (not a "cannot take input shape" from deep inside the model).
_OPTION_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "steps": (lambda v: positive_int(v) or v == "auto", "a positive integer or 'auto'"),
    "rule": (lambda v: v in RULES, f"one of {list(RULES)}"),
    "chunk": (lambda v: positive_int(v) or v == "all", "a positive integer or 'all'"),
    "stem": (lambda v: isinstance(v, bool), "true or false"),
    "baseline": (lambda v: v in ("black", "zero") or finite_number(v), "'black', 'zero' or a number"),
    "layers": (_layers, "'all', a layer name or names joined with '+'"),
    "relu": (lambda v: isinstance(v, bool), "true or false"),
    "resize": (lambda v: isinstance(v, bool), "true or false"),
    "normalize": (lambda v: isinstance(v, bool), "true or false"),
    "abs": (lambda v: isinstance(v, bool), "true or false"),
    "samples": (positive_int, "a positive integer"),
    "sigma": (lambda v: finite_number(v) and v >= 0, "a non-negative number"),
    "eps": (lambda v: finite_number(v) and v >= 0, "a non-negative number"),
    "composite": (lambda v: v in _LRP, f"one of {list(_LRP)}"),
    "variant": (lambda v: isinstance(v, str), "a variant name"),
    "baselines": (lambda v: v in ("black", ("black", "white")), "'black' or 'black+white'"),
    "epsilon": (lambda v: finite_number(v) and v >= 0, "a non-negative number"),
    "gamma": (lambda v: finite_number(v) and v >= 0, "a non-negative number"),
    "interpolate": (lambda v: v in ("nearest", "linear"), "'nearest' or 'linear'"),
    "sum_channels": (lambda v: isinstance(v, bool), "true or false"),
    "layer": (lambda v: isinstance(v, str) and bool(v), "a layer name or 'last'"),
    "window": (positive_int, "a positive integer (pixels per spatial axis)"),
    "strides": (positive_int, "a positive integer (pixels per spatial axis)"),
    "cells": (positive_int, "a positive integer (grid cells per spatial axis)"),
    "permutations": (positive_int, "a positive integer"),
    "masks": (positive_int, "a positive integer"),
    "p": (lambda v: finite_number(v) and 0 < v < 1, "a number between 0 and 1"),
    "alpha": (lambda v: finite_number(v) and v >= 0, "a non-negative number"),
    "kernel_width": (lambda v: finite_number(v) and v > 0, "a positive number"),
    "area": (lambda v: finite_number(v) and 0 < v < 1, "a fraction between 0 and 1"),
    "max_iter": (positive_int, "a positive integer"),
    "mask_size": (positive_int, "a positive integer (voxels per spatial axis)"),
    "overlap": (lambda v: finite_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "mode": (lambda v: v in explain.MONAI_MODES or finite_number(v), f"a number or one of {list(explain.MONAI_MODES)}"),
    "neuron": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
               "a flat index (a non-negative integer) into the layer's activation"),
}


# options whose values depend on the method
_CHOICES = {("smoothgrad", "variant"): tuple(explain.NOISE_TUNNEL), ("extremal_perturbation", "variant"): VARIANTS}


def method_options(spec: Spec) -> dict[str, Any]:
    """The spec's options over the method's defaults; unknown kinds and options, and values of
    the wrong type, are errors naming the option."""
    if spec.kind not in _OPTIONS:
        raise ValueError(f"sweep: unknown method {spec.kind!r}; expected one of {list(METHODS)}")
    known = _OPTIONS[spec.kind]
    given = {k: v for k, v in spec.opts.items() if k != "name"}
    bad = sorted(set(given) - set(known))
    if bad:
        raise ValueError(f"sweep: method {spec.text()!r}: unknown options {bad}; {spec.kind} takes "
                         f"{sorted(known) + ['name']}")
    for key, value in given.items():
        check, expected = _OPTION_TYPES[key]
        if not check(value):
            raise ValueError(f"sweep: method {spec.text()!r}: option {key}={value!r:.60} is not {expected}")
    choices = _CHOICES.get((spec.kind, "variant"))
    if "variant" in given and given["variant"] not in choices:
        raise ValueError(f"sweep: method {spec.text()!r}: option variant={given['variant']!r:.60} is not one of "
                         f"{list(choices)}")
    if spec.kind == "neuron_conductance" and "neuron" not in given:
        raise ValueError(f"sweep: method {spec.text()!r} needs neuron=<a flat index into the layer's activation>")
    return {**known, **given}


class Computation(NamedTuple):
    """``fn(variables, raw, index) -> (maps, scalars)`` for one example (hashable: it is the
    static part of the sweep's program), plus what it is made of for the record."""

    fn: Callable
    description: dict

    def parts(self, programs: str = "method") -> tuple[Callable, ...]:
        """``fn`` split for compiling: one per method (each target's score computed by the
        first), or ``(fn,)`` for ``programs="one"``.  The parts' maps and scalars together are
        ``fn``'s."""
        if programs == "one" or len(self.fn.methods) == 1:
            return (self.fn,)
        return tuple(dataclasses.replace(self.fn, methods=(m,), score=k == 0) for k, m in enumerate(self.fn.methods))


@dataclasses.dataclass(frozen=True)
class _Example:
    """The per-example function (a frozen dataclass: hashable, and a real object JAX can
    reference weakly, which a tuple is not)."""

    model: Any
    prep: str
    methods: tuple[tuple[str, str, tuple], ...]   # (store name, kind, sorted options)
    targets: tuple[tuple[str, targets.Target], ...]
    seed: int
    span: float   # the model input's value range (SmoothGrad's noise scale)
    low: float | tuple[float, ...]    # its lowest and highest values per channel (LRP's z^B rule)
    high: float | tuple[float, ...]
    metrics: tuple[tuple[str, tuple], ...] = ()   # (kind, sorted options)
    score: bool = True   # compute each target's score (one part of a split computation does)

    @property
    def bounds(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high}

    def __call__(self, variables, raw, index, regions=None):
        """``(maps, scalars)`` of one example; ``regions``: ``{"mask", "fov"}`` booleans of the
        input's spatial shape where the sweep reads them (the localisation metrics').  Metric
        curves are among the maps, named ``<map>:<metric>``."""
        x = PREPROCESSING[self.prep](raw)
        maps, scalars = {}, {}
        out = taps.tap_functions(self.model).forward(variables, x[None])[0] if self.score else None
        if self.metrics:   # the metrics' references and draws, the same for every target
            key = jax.random.fold_in(jax.random.fold_in(jax.random.key(self.seed), index), sweep_metrics.METRIC_STREAM)
            black = _baseline("black", self, raw, x)
            gray = 0.5 if self.prep == "none" else PREPROCESSING[self.prep](jnp.full_like(raw, 128))
        for tname, target in self.targets:
            prefix = f"{tname}/" if len(self.targets) > 1 else ""
            if self.score:
                scalars[f"{prefix}score"] = target(out)
            f = explain.model_fn(self.model, variables, target)
            made = set(maps)
            for name, kind, opts in self.methods:
                _run(kind, dict(opts), self, variables, raw, x, f, target, index, f"{prefix}{name}", maps, scalars)
            if self.metrics:
                curves = {}
                mine = {k: v for k, v in maps.items() if k not in made}
                sweep_metrics.score_maps(self.metrics, mine, x, f, key=key, black=black, gray=gray,
                                         regions=dict(regions or {}), scalars=scalars, curves=curves)
                maps.update(curves)
        return maps, scalars



def _baseline(value, ex: _Example, raw, x):
    if value == "black":
        return 0.0 if ex.prep == "none" else PREPROCESSING[ex.prep](jnp.zeros_like(raw))
    if value == "zero":
        return 0.0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"sweep: ig baseline must be 'black', 'zero' or a number; found {value!r}")


def _span(prep: str) -> float:
    """The model input's value range for raw 0..255 pixels (or [0, 1] voxels) after ``prep``."""
    if prep == "none":
        return 1.0
    lo, hi = (np.asarray(PREPROCESSING[prep](jnp.full((1, 1, 3), v, jnp.uint8))) for v in (0, 255))
    return float(np.abs(hi - lo).max())


def _bounds(prep: str) -> tuple[Any, Any]:
    """The model input's lowest and highest values per channel for raw 0..255 pixels (or [0, 1]
    voxels) after ``prep``."""
    if prep == "none":
        return 0.0, 1.0
    ends = [np.asarray(PREPROCESSING[prep](jnp.full((1, 1, 3), v, jnp.uint8)))[0, 0] for v in (0, 255)]
    return tuple(float(v) for v in np.minimum(*ends)), tuple(float(v) for v in np.maximum(*ends))


def _run(kind, o, ex, variables, raw, x, f, target, index, name, maps, scalars):
    if kind == "ig":
        ig = explain.integrated_gradients(f, x, baseline=_baseline(o["baseline"], ex, raw, x), steps=int(o["steps"]),
                                          rule=o["rule"], chunk=o["chunk"], stem=bool(o["stem"]))
        maps[name] = ig.values
        scalars[f"{name}.delta"] = ig.delta
    elif kind in CAMS:
        cam = functools.partial(CAMS[kind], eps=o["eps"]) if "eps" in o else CAMS[kind]
        for layer, m in cam(ex.model, variables, x, target, layers=_layer_list(o["layers"]), relu=o["relu"],
                            resize=o["resize"], normalize=o["normalize"]).items():
            maps[f"{name}/{layer}"] = m
    elif kind == "guided_backprop":
        maps[name] = explain.guided_backprop(ex.model, variables, x, target)
    elif kind == "deconvnet":
        maps[name] = explain.deconvnet(ex.model, variables, x, target)
    elif kind == "saliency":
        maps[name] = explain.saliency(f, x, abs=bool(o["abs"]))
    elif kind == "gradient_x_input":
        maps[name] = explain.gradient_x_input(f, x)
    elif kind == "lrp":
        extra = {}
        if o["composite"] == "epsilon_gamma_box":
            extra = dict(gamma=float(o["gamma"]), **ex.bounds)
        maps[name] = explain.lrp(ex.model, variables, x, target, composite=o["composite"], epsilon=float(o["epsilon"]),
                                 **extra)
    elif kind == "smoothgrad":
        key = jax.random.fold_in(jax.random.key(ex.seed), index)
        sigma = float(o["sigma"]) * ex.span
        maps[name] = explain.smoothgrad(functools.partial(explain.saliency, f, abs=False), x, key=key,
                                        samples=int(o["samples"]), sigma=sigma, chunk=o["chunk"], variant=o["variant"])
    elif kind == "deeplift":
        maps[name] = explain.deeplift(ex.model, variables, x, target, baseline=_baseline(o["baseline"], ex, raw, x))
    elif kind == "gradient_shap":
        key = jax.random.fold_in(jax.random.key(ex.seed), index)
        black = jnp.broadcast_to(jnp.asarray(_baseline("black", ex, raw, x), x.dtype), x.shape)
        bases = [black]
        if o["baselines"] == ("black", "white"):
            white = 1.0 if ex.prep == "none" else PREPROCESSING[ex.prep](jnp.full_like(raw, 255))
            bases.append(jnp.broadcast_to(jnp.asarray(white, x.dtype), x.shape))
        maps[name] = explain.gradient_shap(f, x, jnp.stack(bases), key=key, samples=int(o["samples"]),
                                           stdev=float(o["sigma"]) * ex.span, chunk=o["chunk"])
    elif kind == "excitation_backprop":
        maps[name] = explain.excitation_backprop(ex.model, variables, x, target)
    elif kind in ("ablationcam", "scorecam"):
        cam = explain.ablation_cam if kind == "ablationcam" else explain.score_cam
        for layer, m in cam(ex.model, variables, x, target, layers=_layer_list(_last(o["layers"], ex, x)),
                            chunk=o["chunk"], relu=o["relu"], resize=o["resize"], normalize=o["normalize"]).items():
            maps[f"{name}/{layer}"] = m
    elif kind == "occlusion_sensitivity":
        mask = tuple(min(int(o["mask_size"]), n) for n in x.shape[:-1])   # at most the input
        maps[name] = explain.occlusion_sensitivity(f, x, mask_size=mask, overlap=float(o["overlap"]),
                                                   mode=o["mode"] if isinstance(o["mode"], str) else float(o["mode"]),
                                                   chunk=o["chunk"])
    elif kind == "extremal_perturbation":
        maps[name] = explain.extremal_perturbation(f, x, areas=(float(o["area"]),), max_iter=int(o["max_iter"]),
                                                   variant=o["variant"]).masks[0]
    elif kind == "fullgrad":
        maps[name] = explain.full_grad(ex.model, variables, x, target, eps=float(o["eps"]))
    elif kind in ("occlusion", "feature_ablation", "shapley_value_sampling", "kernel_shap", "lime", "rise"):
        _perturbation(kind, o, ex, raw, x, f, index, name, maps)
    elif kind == "guided_gradcam":
        for layer, m in explain.guided_grad_cams(ex.model, variables, x, target, layers=_layer_list(o["layers"]),
                                                 interpolate=o["interpolate"]).items():
            maps[f"{name}/{layer}"] = m
    elif kind == "layer_gradient_x_activation":
        for layer, m in explain.layer_gradient_x_activation(ex.model, variables, x, target,
                                                            layers=_layer_list(o["layers"])).items():
            maps[f"{name}/{layer}"] = m.sum(axis=-1) if o["sum_channels"] else m
    elif kind in ("layer_conductance", "internal_influence", "neuron_conductance"):
        layer = _last(o["layer"], ex, x)
        path = dict(baseline=_baseline(o["baseline"], ex, raw, x), steps=int(o["steps"]), rule=o["rule"],
                    chunk=o["chunk"])
        if kind == "neuron_conductance":
            maps[name] = explain.neuron_conductance(ex.model, variables, x, layer, int(o["neuron"]), target, **path)
        else:
            m = getattr(explain, kind)(ex.model, variables, x, layer, target, **path)
            maps[f"{name}/{layer}"] = m.sum(axis=-1) if o["sum_channels"] else m


def _perturbation(kind, o, ex, raw, x, f, index, name, maps):
    key = jax.random.fold_in(jax.random.key(ex.seed), index)
    if kind == "rise":
        maps[name] = explain.rise(f, x, key=key, masks=int(o["masks"]), cells=int(o["cells"]), p=float(o["p"]),
                                  chunk=o["chunk"])
        return
    base = _baseline(o["baseline"], ex, raw, x)
    if kind == "occlusion":
        window = tuple(min(int(o["window"]), n) for n in x.shape[:-1])   # at most the image
        strides = tuple(min(int(o["strides"]), k) for k in window)
        maps[name] = explain.occlusion(f, x, window=window, strides=strides, baseline=base, chunk=o["chunk"])
        return
    extra = {}
    if kind == "shapley_value_sampling":
        extra = dict(key=key, permutations=int(o["permutations"]))
    elif kind == "kernel_shap":
        extra = dict(key=key, samples=int(o["samples"]))
    elif kind == "lime":
        extra = dict(key=key, samples=int(o["samples"]), alpha=float(o["alpha"]), kernel_width=float(o["kernel_width"]))
    labels = explain.grid_features(x.shape[:-1], min(int(o["cells"]), *x.shape[:-1]))
    maps[name] = _PERTURBATION[kind](f, x, labels, baseline=base, chunk=o["chunk"], **extra)


def _layer_list(layers):
    return list(layers) if isinstance(layers, tuple) else layers


def _last(layers, ex: _Example, x):
    """``layers``, with ``"last"`` meaning the model's last spatial layer."""
    return taps.spatial_layer_names(ex.model, (1, *x.shape))[-1] if layers == "last" else layers


def build_computation(model_spec: registry.ModelSpec, model: Any, methods, target_specs, *, prep: str | None = None,
                      seed: int = 0, metrics=(), regions: tuple[str, ...] = ()) -> Computation:
    """The per-example function of a sweep; checks every method, option, metric and target
    name (``regions``: the region masks the sweep reads, of ``("mask", "fov")``)."""
    prep = prep or default_preprocess(model_spec, model)
    if prep not in PREPROCESSING:
        raise ValueError(f"sweep: unknown preprocess {prep!r}; expected one of {sorted(PREPROCESSING)}")
    target_specs = tuple(target_specs) or default_targets(model_spec)
    built_targets = tuple((target_name(s), build_target(s)) for s in target_specs)
    names = [n for n, _ in built_targets]
    if len(set(names)) != len(names):
        raise ValueError(f"sweep: targets {names} repeat a name; give each a name= option")
    built_methods = []
    for spec in methods:
        opts = method_options(spec)
        built_methods.append((spec.name, spec.kind, tuple(sorted(opts.items()))))
    built_metrics = []
    for spec in metrics:
        opts = sweep_metrics.metric_options(spec)
        if sweep_metrics.needs_masks(spec.kind) and "mask" not in regions:
            raise ValueError(f"sweep: metric {spec.kind!r} compares maps with a region: give masks= (a folder or "
                             "a template of each example's mask file)")
        built_metrics.append((spec.kind, tuple(sorted(opts.items()))))
    ex = _Example(model, prep, tuple(built_methods), built_targets, int(seed), _span(prep), *_bounds(prep),
                  metrics=tuple(built_metrics))
    description = {"preprocess": prep,
                   "targets": {n: t.description for n, t in built_targets},
                   "methods": {n: {"kind": k, **dict(o)} for n, k, o in built_methods}}
    if built_metrics:
        description["metrics"] = {k: dict(o) for k, o in built_metrics}
    return Computation(ex, description)
