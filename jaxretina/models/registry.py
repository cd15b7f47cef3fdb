"""The registry of named models: what ``jaxretina.load``, ``convert``, the sweep and the CLI
know about each network, in one :class:`ModelSpec` per name.

Adding a model is one model file (a Flax module meeting :mod:`jaxretina.models.spec`), one
converter (anything with ``from_weights(kind, content, source, **options) -> (module,
variables, report)``) and one :func:`register` call; nothing else branches on model names.

Example::

    >>> get("Inception-V3").name, get("unet3d").input, get("driu").default_target
    ('inception_v3', 'volume', 'segmentation_sum')
    >>> get("unet3d").build(base_width=2).base_width
    2
    >>> "resnet9000" in names()
    False
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping

__all__ = ["ModelSpec", "register", "unregister", "get", "names", "spec_of", "INPUTS", "NOT_OPTIONS"]

INPUTS = ("image", "volume")
NOT_OPTIONS = ("parent", "name", "act", "dtype")   # module fields that are not recorded options


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One named model.

    Attributes:
      name: the registry key (lower case, ``_`` for ``-``): ``jaxretina.load(name, …)``.
      module: the Flax module class; its dataclass fields are the model's options.
      converter: a module path (imported when first needed) or an object with
        ``from_weights(kind, content, source, **options) -> (module, variables, report)`` for
        the ``(kind, content)`` of :func:`converters.formats.read_weights`; optionally
        ``reference(module, state) -> (torch module, state dict, input side) | reason`` for the
        parity check of ``jaxretina convert``.
      input: ``"image"`` (2D, RGB files) or ``"volume"`` (3D, NIfTI files).
      default_target: the :mod:`jaxretina.targets` kind a sweep explains by default.
      preprocessing: the sweep's preprocessing of raw input (a key of
        :data:`jaxretina.sweep.methods.PREPROCESSING`), or a function of the module giving it.
      description: one line for listings.
      init_note: what a deterministic initialisation sets besides the random draws (records).
      defaults: options the name fixes beyond the class's defaults (``vgg16_bn``:
        ``batch_norm=True``); a file or option contradicting them is refused.
    """

    name: str
    module: type
    converter: Any
    input: str = "image"
    default_target: str = "top_class"
    preprocessing: str | Callable[[Any], str] = "imagenet"
    description: str = ""
    init_note: str = ""
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.name, str) or _key(self.name) != self.name or not self.name:
            raise ValueError(f"ModelSpec: name must be lower case without '-'; found {self.name!r}")
        if self.input not in INPUTS:
            raise ValueError(f"ModelSpec {self.name}: input must be one of {INPUTS}; found {self.input!r}")
        if not (isinstance(self.module, type) and dataclasses.is_dataclass(self.module)):
            raise TypeError(f"ModelSpec {self.name}: module must be a Flax module class; found {self.module!r}")

    # -- options -------------------------------------------------------------------------------
    def option_fields(self) -> dict[str, dataclasses.Field]:
        """The module's options: its dataclass fields but :data:`NOT_OPTIONS`."""
        return {f.name: f for f in dataclasses.fields(self.module) if f.name not in NOT_OPTIONS}

    def check_options(self, config: Mapping[str, Any], source: str) -> None:
        """Refuse (``ValueError`` naming ``source`` and the option) options that are not fields
        of the module, or whose value is not of the default's type (a JSON/TOML file gives lists
        for tuples and ints for whole floats, both accepted): the first model call is no place
        to find out."""
        fields = self.option_fields()
        unknown = sorted(k for k in config if k not in fields and k not in ("act", "dtype"))   # incl. parent, name
        if unknown:
            raise ValueError(f"{source}: unknown {self.name} options {unknown}; expected some of {sorted(fields)}")
        for option, value in config.items():
            if option not in fields:
                continue
            default = fields[option].default
            if default is dataclasses.MISSING or default is None or value is None:
                continue
            ok = (type(value) is type(default) or (type(default) is float and type(value) is int)
                  or (type(default) is tuple and type(value) is list))
            if not ok:
                raise ValueError(f"{source}: option {option}={value!r:.60} is a {type(value).__name__}; expected a "
                                 f"{type(default).__name__} (like the default {default!r:.60})")

    def build(self, **options: Any) -> Any:
        """The module with these options (lists from JSON become tuples: Flax fields are hashed)."""
        return self.module(**{**self.defaults, **{k: _tuples(v) for k, v in options.items()}})

    def config_of(self, model: Any) -> dict[str, Any]:
        """The JSON-serialisable options of ``model`` (for records and reloading)."""
        return {name: getattr(model, name) for name in self.option_fields()}

    # -- converter and inputs ------------------------------------------------------------------
    def converter_module(self) -> Any:
        """The converter object (imported from its module path when first asked)."""
        return importlib.import_module(self.converter) if isinstance(self.converter, str) else self.converter

    def from_weights(self, kind: str, content: Any, source: str, **options: Any):
        """``(module, variables, report)`` from weights already read by
        :func:`converters.formats.read_weights`."""
        model, variables, report = self.converter_module().from_weights(kind, content, source,
                                                                        **{**self.defaults, **options})
        self.check_model(model, source)
        return model, variables, report

    def reference(self, model: Any, state: Any) -> Any:
        """The converter's parity reference for ``model`` with ``state``: ``(torch module,
        state dict, input side)``, or a string saying why there is none."""
        reference = getattr(self.converter_module(), "reference", None)   # optional in the converter contract
        return reference(model, state) if reference is not None else "no installable reference implementation " \
                                                                          "for this model"

    def check_model(self, model: Any, source: str) -> None:
        """``ValueError`` when ``model`` (e.g. what a file holds) is not this name's network."""
        wrong = {k: getattr(model, k, None) for k, v in self.defaults.items() if getattr(model, k, None) != v}
        if type(model) is not self.module or wrong:
            found = type(model).__name__ + "".join(f", {k}={v!r}" for k, v in wrong.items())
            raise ValueError(f"{source}: holds a {found}; {self.name!r} is a {self.module.__name__}"
                             + "".join(f", {k}={v!r}" for k, v in self.defaults.items()))

    def preprocessing_of(self, model: Any) -> str:
        """The sweep's preprocessing kind for this module."""
        return self.preprocessing(model) if callable(self.preprocessing) else self.preprocessing


def _key(name: str) -> str:
    return name.lower().replace("-", "_")


def _tuples(value: Any) -> Any:
    # JSON turns tuples into lists; model options are tuples (hashable, as Flax fields must be).
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


_SPECS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec, *, replace: bool = False) -> ModelSpec:
    """Add ``spec`` under ``spec.name`` (``replace=True`` to overwrite an existing entry)."""
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"register: expected a ModelSpec; found {type(spec).__name__}")
    if spec.name in _SPECS and not replace:
        raise ValueError(f"register: a model named {spec.name!r} is registered already (replace=True to overwrite)")
    _SPECS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove the model ``name`` (a ``KeyError`` if it is not registered)."""
    del _SPECS[get(name).name]


def names() -> tuple[str, ...]:
    """The registered model names, in registration order."""
    return tuple(_SPECS)


def get(name: str) -> ModelSpec:
    """The spec of model ``name`` (case and ``-``/``_`` insensitive); ``ValueError`` listing
    the registered names when unknown."""
    if not isinstance(name, str) or _key(name) not in _SPECS:
        raise ValueError(f"unknown model {name!r}; expected one of {list(_SPECS)}")
    return _SPECS[_key(name)]


def spec_of(model: Any) -> ModelSpec | None:
    """The spec whose module class is ``model``'s and whose defaults it has, else ``None``."""
    exact = [s for s in _SPECS.values() if type(model) is s.module]
    for s in exact:
        if all(getattr(model, k, None) == v for k, v in s.defaults.items()):
            return s
    return None


def _normalising_inside(model: Any) -> str:
    # A grader that normalises inside (``normalization`` set) takes 0..255 pixels; else ImageNet-normalised input.
    return "imagenet" if model.normalization is None else "pixels"


def _register_builtins() -> None:
    from jaxretina.models.densenet import DenseNet121
    from jaxretina.models.driu import DRIU
    from jaxretina.models.inception import InceptionV3
    from jaxretina.models.resnet import ResNet18, ResNet34, ResNet50, ResNet101, ResNet152
    from jaxretina.models.unet3d import UNet3D
    from jaxretina.models.vgg import VGG11, VGG13, VGG16, VGG19

    register(ModelSpec("driu", DRIU, "converters.driu", default_target="segmentation_sum",
                       preprocessing=DRIU.input_kind, description="DRIU retinal vessel / optic-disc segmenter (seed 000)",
                       init_note="with DRIU's bilinear upsampling kernels and zero biases"))
    register(ModelSpec("densenet121", DenseNet121, "converters.densenet", preprocessing=_normalising_inside,
                       description="DenseNet121 diabetic-retinopathy grader (seed 002)"))
    register(ModelSpec("inception_v3", InceptionV3, "converters.inception", preprocessing=_normalising_inside,
                       description="Inception V3 diabetic-retinopathy grader (seed 001)"))
    for depth, cls in ((18, ResNet18), (34, ResNet34), (50, ResNet50), (101, ResNet101), (152, ResNet152)):
        register(ModelSpec(f"resnet{depth}", cls, "converters.resnet", preprocessing=_normalising_inside,
                           description=f"ResNet-{depth} (torchvision names; Keras applications' weights too)"))
    for depth, cls in ((11, VGG11), (13, VGG13), (16, VGG16), (19, VGG19)):
        for bn in (False, True):
            register(ModelSpec(f"vgg{depth}{'_bn' if bn else ''}", cls, "converters.vgg", preprocessing=_normalising_inside,
                               defaults={"batch_norm": bn},
                               description=f"VGG-{depth}{' with BatchNorm' if bn else ''} (torchvision names; Keras "
                                           f"applications' weights too)"))
    register(ModelSpec("unet3d", UNet3D, "converters.unet3d", input="volume", default_target="segmentation_sum",
                       preprocessing="none", description="DS6 3D U-Net for vessels in MRA volumes (seed 003)"))


_register_builtins()
