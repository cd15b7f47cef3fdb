"""Attribution methods as pure functions of one example (batch with ``jax.vmap``).

* :func:`grad_cam`, :func:`grad_cam_plus_plus` — every layer from one forward + backward pass.
* :func:`layer_gradients` — activations and target gradients at every layer.
* :func:`integrated_gradients` — all quadrature steps ``vmap``-ed, chunked to a memory budget
  (or ``steps="auto"`` until a completeness tolerance),
  with the completeness error ``delta``.
* :func:`saliency`, :func:`gradient_x_input`, :func:`smoothgrad`.
* :func:`guided_backprop`, :func:`deconvnet` — the model's ReLUs with swapped derivatives.
* :func:`model_fn` — (model, variables, target) as a function of one example.
"""

from jaxretina.explain._core import model_fn
from jaxretina.explain.cam import grad_cam, grad_cam_plus_plus, layer_gradients
from jaxretina.explain.gradients import (
    Attribution, gradient_x_input, integrated_gradients, saliency, smoothgrad,
)
from jaxretina.explain.quadrature import RULES, quadrature
from jaxretina.explain.relu_rules import deconvnet, deconvnet_relu, guided_backprop, guided_relu

__all__ = [
    "Attribution",
    "RULES",
    "deconvnet",
    "deconvnet_relu",
    "grad_cam",
    "grad_cam_plus_plus",
    "gradient_x_input",
    "guided_backprop",
    "guided_relu",
    "integrated_gradients",
    "layer_gradients",
    "model_fn",
    "quadrature",
    "saliency",
    "smoothgrad",
]
