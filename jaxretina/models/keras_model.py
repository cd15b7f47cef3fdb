"""A Keras 3 model on its JAX backend as an explainable model: :func:`from_keras`.

The model becomes a pure function of ``(variables, x)`` — a Flax module whose variables are
the Keras model's (trainable ones in ``params``, the others, BatchNorm statistics, in
``batch_stats``; keys are the variables' paths with ``.`` for ``/``) — with a tap at every
layer's output named by its Keras layer name (functional and Sequential models; a nested model
is one layer).  The layers run inside ``keras.StatelessScope`` with those values, so the Keras
model itself is never changed, and everything jaxretina does to a model works: all-layer
Grad-CAM, IG, layer and neuron attributions, and the rule-based methods (LRP, guided backprop,
deconvnet: :mod:`jaxretina.propagation` finds the layers in the traced program).

Keras must run on JAX: set ``KERAS_BACKEND=jax`` before Keras is first imported (this module
sets it when Keras is not imported yet and refuses another backend).  The model explains what
Keras computes from its own input: a ``keras.applications`` model wants its
``preprocess_input`` applied first (or load its weights into jaxretina's own ResNet/VGG, which
take 0..255 pixels).

Example::

    >>> import os
    >>> _ = os.environ.setdefault("KERAS_BACKEND", "jax")      # before Keras is first imported
    >>> import keras
    >>> net = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
    ...                         keras.layers.GlobalAveragePooling2D(name="pool"), keras.layers.Dense(2, name="logits")])
    >>> model, variables = from_keras(net)
    >>> taps.layer_names(model, (1, 16, 16, 3))
    ('conv', 'pool', 'logits')
    >>> explain.grad_cam(model, variables, jnp.ones((16, 16, 3)), targets.class_logit(0))["conv"].shape
    (16, 16)
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np
import jax
import jax.numpy as jnp
import flax.linen as nn

from jaxretina.models.tap_points import TapPoints, numbered_taps

__all__ = ["KerasModel", "from_keras", "keras_variables"]


def _keras():
    if "keras" not in sys.modules:
        os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        import keras
    except ImportError as err:
        raise ImportError("explaining Keras models needs Keras 3: pip install 'jaxretina[keras]'") from err
    if keras.backend.backend() != "jax":
        raise RuntimeError(f"Keras runs on its {keras.backend.backend()!r} backend; jaxretina explains Keras models on "
                           "JAX: set KERAS_BACKEND=jax before Keras is first imported")
    return keras


def _key(variable) -> str:
    return variable.path.replace("/", ".")


def keras_variables(model: Any) -> dict:
    """``{"params": {path: array}, "batch_stats": {path: array}}``: the Keras model's current
    weights, as :class:`KerasModel` reads them."""
    return {"params": {_key(v): jnp.asarray(np.asarray(v.value)) for v in model.trainable_variables},
            "batch_stats": {_key(v): jnp.asarray(np.asarray(v.value)) for v in model.non_trainable_variables}}


class KerasModel(nn.Module):
    """A Keras model as a Flax module with a tap at every layer (see the module docstring).

    Attributes:
      model: the Keras 3 model (functional or Sequential), built.
      spatial_dims: 2 (images) or 3 (volumes) when known: CAM methods then check the input.
    """

    model: Any
    spatial_dims: int | None = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> Any:
        keras = _keras()
        net = self.model
        tap = numbered_taps(TapPoints(name="taps"))
        mapping = [(v, self.param(_key(v), lambda _, v=v: jnp.asarray(np.asarray(v.value))))
                   for v in net.trainable_variables]
        mapping += [(v, self.variable("batch_stats", _key(v), lambda v=v: jnp.asarray(np.asarray(v.value))).value)
                    for v in net.non_trainable_variables]
        def run(layer, *args, **kwargs):
            if "training" in getattr(layer, "_call_context_args", ()) or isinstance(layer, keras.Model):
                kwargs.setdefault("training", bool(train))
            return tap(layer.name, layer(*args, **kwargs))

        with keras.StatelessScope(state_mapping=mapping):
            if isinstance(net, keras.Sequential):
                out = x
                for layer in net.layers:
                    out = run(layer, out)
                return out
            outputs = net._run_through_graph([x], operation_fn=lambda op: lambda *a, **k: run(op, *a, **k))
            if isinstance(outputs, (list, tuple)):   # the model's output structure (Keras's unpack_singleton)
                return outputs[0] if len(outputs) == 1 else tuple(outputs)
            return outputs


def from_keras(model: Any, *, spatial_dims: int | None = None) -> tuple[KerasModel, dict]:
    """``(explainable model, variables)`` of a built Keras 3 model (see the module docstring)."""
    keras = _keras()
    if not isinstance(model, keras.Model):
        raise TypeError(f"from_keras: expected a keras.Model; found {type(model).__name__}")
    if not model.built:
        raise ValueError(f"from_keras: {model.name} is not built; call it once or give it an Input")
    if spatial_dims not in (None, 2, 3):
        raise ValueError(f"from_keras: spatial_dims must be 2, 3 or None; found {spatial_dims!r}")
    if spatial_dims is None and len(model.inputs or ()) == 1 and len(model.inputs[0].shape) in (4, 5):
        spatial_dims = len(model.inputs[0].shape) - 2
    return KerasModel(model, spatial_dims), keras_variables(model)
