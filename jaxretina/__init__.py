"""jaxretina: explain retinal and vascular imaging networks with JAX.

Models (:mod:`jaxretina.models`) are Flax linen modules with the source framework's layer
names, meeting one declared contract (:mod:`jaxretina.models.spec`) and named in one registry
(:mod:`jaxretina.models.registry`); any other Flax module (:func:`explainable`) or Keras 3
model (:func:`jaxretina.models.from_keras`) explains as it is.  Explainers
(:mod:`jaxretina.explain`) are pure functions of one example that batch with ``jax.vmap`` and
compile once per (model, shape, method); the propagation methods (LRP, DeepLIFT, excitation
backprop, guided backprop) are rules of one mechanism (:mod:`jaxretina.propagation`) on any
model; :func:`clear_caches` empties what jaxretina remembers.

Example::

    import jax
    from skimage import data
    from jaxretina import explain, preprocess, targets
    from jaxretina.models import DRIU

    x = preprocess.driu_caffe_input(data.retina()[::4, ::4])   # (353, 353, 3)
    model = DRIU()
    variables = model.init(jax.random.key(0), x[None])
    target = targets.segmentation_sum()                        # Σ vessel probability
    cams = explain.grad_cam(model, variables, x, target)       # every layer, one pass
    f = explain.model_fn(model, variables, target)
    ig = explain.integrated_gradients(f, x, baseline=0.0, steps=32, chunk=8)
"""

from jaxretina import xla_defaults

xla_defaults.apply_defaults()  # before anything creates a JAX backend; see jaxretina/xla_defaults.py

from jaxretina import (  # noqa: E402
    data, evaluate, explain, intervention, metrics, models, preprocess, propagation, sweep, targets, taps, train, views,
    volumes,
)
from jaxretina.explain import Attribution  # noqa: E402
from jaxretina.caches import clear_caches  # noqa: E402
from jaxretina.loading import load, save  # noqa: E402
from jaxretina.models.explainable import explainable  # noqa: E402

__version__ = "0.1.0"

__all__ = ["Attribution", "clear_caches", "data", "evaluate", "explainable", "explain", "intervention", "load", "metrics", "models",
           "preprocess", "propagation", "save", "sweep", "targets", "taps", "train", "views", "volumes", "__version__"]
