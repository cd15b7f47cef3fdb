"""The model contract: what a model offers jaxretina's methods, declared in one place.

Every method asks a model only what :class:`ExplainableModel` lists, and only through the
functions of this module (nothing else in jaxretina probes a model's members).  One member is
required, the rest are optional and widen what works:

=========================  ==================================================================
member                     what it gives, and who needs it
=========================  ==================================================================
``__call__(x, train)``     required: a Flax linen module, batch first, channels last, that
                           calls one :class:`~jaxretina.models.tap_points.TapPoints` submodule
                           named ``"taps"`` on each explainable layer (every layer method:
                           Grad-CAM, layer gradients and IG, neuron studies, interventions)
``spatial_dims``           class constant, 2 (images ``(N, H, W, C)``) or 3 (volumes); without
                           it the CAM methods accept either rank
``act``                    a field holding the activation function; rule-based methods
                           (LRP, DeepLIFT, guided backprop, …) mark each of its calls as an
                           activation site (without it they find the ReLUs in the traced
                           program by themselves)
``AFFINE_STEM``            ``True`` when ``apply(..., part="stem" | "head")`` splits the model
                           into an affine stem and the rest (exact IG shortcut,
                           :mod:`jaxretina.models.stem`)
``shape_probe()``          ``(module, example input)`` whose abstract ``init`` gives the
                           variables' shapes (random variables, checkpoint loading, layer
                           lookups without variables)
``fixed_parameters(v)``    the variables with the parameters its init sets rather than draws
                           (DRIU's bilinear upsampling kernels)
``layer_aliases()``        ``{other name: layer name}``, e.g. the PyTorch module paths
``fuse_inputs()``          ``{layer: kernel rows}`` of a linear fuse layer ``FUSE_LAYER``
                           (seed 000's weight edit)
``for_explaining()``       the same network with the one output methods explain (the DS6
                           U-Net drops its deep-supervision outputs)
=========================  ==================================================================

A model lacking what a method needs gets one :class:`MissingCapability` (a ``TypeError``)
naming the method, the member and what it is for.

Example::

    >>> from jaxretina.models import DRIU, UNet3D
    >>> capabilities(DRIU())["act"], spatial_dims(UNet3D()), has_affine_stem(UNet3D())
    (True, 3, False)
    >>> for_explaining(UNet3D(deep_supervision=True)).deep_supervision
    False
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Mapping, Protocol, Sequence

__all__ = [
    "ExplainableModel", "MissingCapability", "MEMBERS", "capabilities", "require", "spatial_dims",
    "has_affine_stem", "activation", "with_activation", "shape_probe", "fixed_parameters", "layer_aliases",
    "fuse_inputs", "for_explaining",
]


class ExplainableModel(Protocol):
    """What jaxretina's methods ask of a model (see the module docstring for each member).

    Only ``__call__`` is required; the members below are optional (read with this module's
    functions, never probed elsewhere).
    """

    spatial_dims: ClassVar[int]
    AFFINE_STEM: ClassVar[bool]
    act: Callable[[Any], Any]

    def __call__(self, x: Any, train: bool = False) -> Any: ...

    def shape_probe(self) -> tuple[Any, Any]: ...

    def fixed_parameters(self, variables: Any) -> Any: ...

    def layer_aliases(self) -> Mapping[str, str]: ...

    def fuse_inputs(self) -> Mapping[str, Sequence[int]]: ...

    def for_explaining(self) -> Any: ...


# member -> what it is for, in the words of the error a model lacking it gets
MEMBERS = {
    "spatial_dims": "the class constant 2 (images) or 3 (volumes)",
    "act": "a field holding the activation function, whose calls rule-based methods mark as activations",
    "AFFINE_STEM": "apply(..., part='stem' | 'head') splitting off an affine stem",
    "shape_probe": "a method returning (module, example input) whose init gives the variables' shapes",
    "fixed_parameters": "a method setting the parameters its init fixes rather than draws",
    "layer_aliases": "a method returning {other name: layer name}",
    "fuse_inputs": "a method returning {layer: kernel rows} of its linear fuse layer FUSE_LAYER",
    "for_explaining": "a method returning the network with the one output methods explain",
}


class MissingCapability(TypeError):
    """A model lacks a member of the contract that a method needs."""


def _member(model: Any, name: str) -> Any:
    # the one place that looks a contract member up on a model
    return getattr(model, name, None)


def capabilities(model: Any) -> dict[str, bool]:
    """``{member: whether model offers it}`` for every optional member (:data:`MEMBERS`)."""
    return {name: _member(model, name) is not None for name in MEMBERS}


def require(model: Any, member: str, who: str) -> Any:
    """``model``'s ``member``, or :class:`MissingCapability` naming ``who`` needs it and what it is."""
    if member not in MEMBERS:
        raise ValueError(f"require: {member!r} is not a member of the model contract; expected one of {list(MEMBERS)}")
    value = _member(model, member)
    if value is None:
        raise MissingCapability(f"{who} needs the model's `{member}` ({MEMBERS[member]}); "
                                f"{type(model).__name__} has none (see jaxretina.models.spec)")
    return value


def spatial_dims(model: Any) -> int | None:
    """2 (images), 3 (volumes), or ``None`` when the model does not say."""
    value = _member(model, "spatial_dims")
    return None if value is None else int(value)


def has_affine_stem(model: Any) -> bool:
    """Whether ``model.apply(..., part="stem" | "head")`` splits off an affine stem."""
    return bool(_member(model, "AFFINE_STEM"))


def activation(model: Any, who: str) -> Callable:
    """The activation function rule-based methods swap (``model.act``)."""
    return require(model, "act", who)


def with_activation(model: Any, act: Callable, who: str) -> Any:
    """``model`` with its activation replaced by ``act`` (a clone; the weights are shared)."""
    require(model, "act", who)
    return model.clone(act=act)


def shape_probe(model: Any, who: str | None = None) -> tuple[Any, Any] | None:
    """``(module, example input)`` whose ``init`` gives ``model``'s variable shapes; ``None``
    when the model has no probe (or :class:`MissingCapability` when ``who`` needs one)."""
    probe = _member(model, "shape_probe") if who is None else require(model, "shape_probe", who)
    return None if probe is None else probe()


def fixed_parameters(model: Any, variables: Any) -> Any:
    """``variables`` with the parameters ``model``'s init fixes set as it sets them (unchanged
    for a model that fixes none)."""
    fix = _member(model, "fixed_parameters")
    return variables if fix is None else fix(variables)


def layer_aliases(model: Any) -> dict[str, str]:
    """``{other name: layer name}`` the model declares, else ``{}``."""
    aliases = _member(model, "layer_aliases")
    return dict(aliases()) if aliases is not None else {}


def fuse_inputs(model: Any, who: str) -> tuple[str, dict[str, Any]]:
    """``(fuse layer's parameter name, {layer: kernel rows})`` of a model with a linear fuse layer."""
    rows = require(model, "fuse_inputs", who)()
    return model.FUSE_LAYER, dict(rows)


def for_explaining(model: Any) -> Any:
    """The network whose one output methods explain (``model.for_explaining()``, else ``model``)."""
    form = _member(model, "for_explaining")
    return model if form is None else form()
