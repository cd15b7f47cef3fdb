"""One rule mechanism for propagation methods (LRP, guided backprop, deconvnet, …).

A network is traced to a flat program (:mod:`~jaxretina.propagation.program`), its operations
grouped into *sites* (:mod:`~jaxretina.propagation.sites`) — linear layers (with bias and, merged, batch norm), sums, pools,
activations — and a :class:`~jaxretina.propagation.composites.Composite` picks a rule
(:mod:`~jaxretina.propagation.rules`) per site.  :func:`with_rules` evaluates the network with
each ruled site as a ``jax.custom_vjp`` (forward unchanged, backward the rule), so one
reverse-mode pass propagates relevance — on any model of arrays: jaxretina's own, wrapped
Flax and Keras networks, 2-D and 3-D.

Example::

    >>> from jaxretina import propagation
    >>> comp = propagation.named("epsilon_plus_flat")
    >>> found = propagation.layer_sites(grader, grader_variables, z)   # a small DenseNet: conv0 + 9 in blocks
    >>> [s.name for s in found if s.kind == "conv"][0], sum(s.kind == "conv" for s in found)
    ('features/conv0', 10)
    >>> [type(comp.choose(found)[i]).__name__ for i in range(3)]     # its input normalisation, conv0, ReLU
    ['Pass', 'Flat', 'Pass']
"""

from jaxretina.propagation.composites import NAMES, Composite, base, named
from jaxretina.propagation.evaluate import SiteView, with_rules
from jaxretina.propagation.program import trace
from jaxretina.propagation.probes import site_gradients, site_offset
from jaxretina.propagation.sites import KINDS, Site, layer_sites, mark_activation, sites
from jaxretina.propagation.rules import (
    AlphaBeta, Deconv, Epsilon, Excitation, Flat, Gamma, Guided, Norm, Pass, Rescale, RescaleMaxPool, WeightRule, WSquare, ZBox, ZPlus,
    captum_alpha1_beta0, captum_gamma, stabilize,
)

__all__ = [
    "Composite", "named", "NAMES", "base", "with_rules", "SiteView", "Site", "KINDS", "sites", "trace",
    "layer_sites", "mark_activation", "site_gradients", "site_offset", "stabilize", "Epsilon", "Norm", "ZPlus", "AlphaBeta", "Gamma", "Flat",
    "WSquare", "ZBox", "WeightRule", "Pass", "Guided", "Deconv", "Rescale", "RescaleMaxPool", "Excitation", "captum_gamma", "captum_alpha1_beta0",
]
