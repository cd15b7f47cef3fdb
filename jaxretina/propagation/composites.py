"""Composites: which rule each site of a network gets.

A :class:`Composite` is an ordered list of ``(matcher, rule)`` pairs — the first matcher that
accepts a site gives its rule; a site no pair accepts keeps its plain gradient — plus an
optional list for the *first* linear layer (zennit's ``SpecialFirstLayerMapComposite``) and
``merge`` (fold batch norms into the linear layers before them, zennit's canonizers).
A matcher is a site kind (``"conv"``, ``"dense"``, ``"linear"`` = both, ``"affine"``,
``"sum"``, ``"avgpool"``, ``"maxpool"``, ``"activation"``), a layer-name glob
(``"features.1*"``), or a predicate ``site -> bool``.

The named composites are zennit's (same rules, same defaults):

=========================  ======================================================================
name                       rules
=========================  ======================================================================
``epsilon``                every linear layer ε
``epsilon_plus``           convolutions z⁺, dense layers ε
``epsilon_plus_flat``      as ``epsilon_plus``, the first linear layer flat
``epsilon_gamma_box``      convolutions γ, dense ε, the first convolution z^B (``low``, ``high``:
                           numbers or one per channel; [-3, 3] by default)
``epsilon_alpha2_beta1``   convolutions α2β1, dense ε (``…_flat``: the first linear layer flat)
``guided_backprop``        activations guided, everything else the gradient
``deconvnet``              activations deconvnet, everything else the gradient
=========================  ======================================================================

and every LRP composite also has zennit's base map: activations and batch norms pass the
relevance through, sums and average pools share it (``Norm``), max pools route it (gradient).

Example::

    >>> c = named("epsilon_plus_flat")
    >>> [type(r).__name__ for _, r in c.first], c.merge
    (['Flat'], True)
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from jaxretina.propagation import rules as R
from jaxretina.propagation.sites import KINDS, LINEAR, Site

__all__ = ["Composite", "named", "NAMES", "base"]


def _accepts(matcher: Any, site: Site) -> bool:
    if callable(matcher):
        return bool(matcher(site))
    if matcher == "linear":
        return site.kind in LINEAR
    if matcher in KINDS:
        return site.kind == matcher
    return site.matches(matcher)


def _check(rule: Any, site: Site) -> None:
    kinds = getattr(rule, "kinds", None)
    if kinds is not None and site.kind not in kinds:
        raise ValueError(f"the rule {type(rule).__name__} applies to {'/'.join(kinds)} sites; layer {site.name!r} is "
                         f"a {site.kind} site (give it another rule, e.g. Epsilon or Pass)")


class Composite(NamedTuple):
    """Rules per site: ``rules`` ``((matcher, rule), …)``, first match wins; ``first`` the
    same for the first linear layer only; ``merge`` folds batch norms into linear layers."""

    rules: tuple = ()
    first: tuple = ()
    merge: bool = True
    name: str = "custom"

    def choose(self, found: Sequence[Site]) -> dict[int, Callable]:
        """``{site index: rule}`` for the sites this composite gives a rule."""
        picked: dict[int, Callable] = {}
        first_done = not self.first
        for i, site in enumerate(found):
            rule = None
            if not first_done and site.kind in LINEAR:
                rule = next((r for m, r in self.first if _accepts(m, site)), None)
                first_done = rule is not None or first_done
            if rule is None:
                rule = next((r for m, r in self.rules if _accepts(m, site)), None)
            if rule is not None:
                _check(rule, site)
                picked[i] = rule
        return picked

    def __hash__(self):
        return hash((self.name, self.merge, tuple((repr(m), repr(r)) for m, r in (*self.rules, *self.first))))


def base(stabilizer: float = 1e-6) -> tuple:
    """zennit's base map: activations and batch norms pass, sums and average pools share."""
    return (("activation", R.Pass()), ("sum", R.Norm(stabilizer)), ("avgpool", R.Norm(stabilizer)),
            ("affine", R.Pass()))


def _epsilon(epsilon=1e-6, stabilizer=1e-6, zero_bias=False):
    return Composite((*base(stabilizer), ("linear", R.Epsilon(epsilon, zero_bias))), name="epsilon")


def _epsilon_plus(epsilon=1e-6, stabilizer=1e-6, zero_bias=False):
    return Composite((*base(stabilizer), ("conv", R.ZPlus(stabilizer, zero_bias)),
                      ("dense", R.Epsilon(epsilon, zero_bias))), name="epsilon_plus")


def _epsilon_plus_flat(epsilon=1e-6, stabilizer=1e-6, zero_bias=False):
    c = _epsilon_plus(epsilon, stabilizer, zero_bias)
    return c._replace(first=(("linear", R.Flat(stabilizer)),), name="epsilon_plus_flat")


def _bound(v: Any) -> float | tuple:
    # a scalar or per-channel values, as Python floats: composites are static (hashed, compared)
    a = np.asarray(v, np.float64)
    if a.ndim > 1 or not np.all(np.isfinite(a)):
        raise ValueError(f"z^B bounds must be finite numbers or one per channel; found {v!r}")
    return float(a) if a.ndim == 0 else tuple(float(b) for b in a)


def _epsilon_gamma_box(low=-3.0, high=3.0, epsilon=1e-6, gamma=0.25, stabilizer=1e-6, zero_bias=False):
    return Composite((*base(stabilizer), ("conv", R.Gamma(gamma, stabilizer, zero_bias)),
                      ("dense", R.Epsilon(epsilon, zero_bias))),
                     (("conv", R.ZBox(_bound(low), _bound(high), stabilizer)),), name="epsilon_gamma_box")


def _epsilon_alpha2_beta1(epsilon=1e-6, stabilizer=1e-6, zero_bias=False):
    return Composite((*base(stabilizer), ("conv", R.AlphaBeta(2.0, 1.0, stabilizer, zero_bias)),
                      ("dense", R.Epsilon(epsilon, zero_bias))), name="epsilon_alpha2_beta1")


def _epsilon_alpha2_beta1_flat(epsilon=1e-6, stabilizer=1e-6, zero_bias=False):
    c = _epsilon_alpha2_beta1(epsilon, stabilizer, zero_bias)
    return c._replace(first=(("linear", R.Flat(stabilizer)),), name="epsilon_alpha2_beta1_flat")


def _guided_backprop():
    return Composite((("activation", R.Guided()),), merge=False, name="guided_backprop")


def _deconvnet():
    return Composite((("activation", R.Deconv()),), merge=False, name="deconvnet")


def _excitation_backprop(eps=1e-20):
    rule = R.Excitation(eps)
    return Composite((("linear", rule), ("avgpool", rule), ("sum", rule), ("affine", R.Pass())), merge=False,
                     name="excitation_backprop")


def _deeplift(eps=1e-10):
    return Composite((("activation", R.Rescale(eps)), ("maxpool", R.RescaleMaxPool(eps))), merge=False,
                     name="deeplift")


_NAMED: dict[str, Callable[..., Composite]] = {
    "epsilon": _epsilon,
    "epsilon_plus": _epsilon_plus,
    "epsilon_plus_flat": _epsilon_plus_flat,
    "epsilon_gamma_box": _epsilon_gamma_box,
    "epsilon_alpha2_beta1": _epsilon_alpha2_beta1,
    "epsilon_alpha2_beta1_flat": _epsilon_alpha2_beta1_flat,
    "guided_backprop": _guided_backprop,
    "deconvnet": _deconvnet,
    "deeplift": _deeplift,
    "excitation_backprop": _excitation_backprop,
}
NAMES = tuple(_NAMED)


def named(name: str | Composite, **options: Any) -> Composite:
    """The composite called ``name`` with ``options`` (e.g. ``epsilon=0.25``, ``low``/``high``
    for ``epsilon_gamma_box``); a :class:`Composite` is returned as it is."""
    if isinstance(name, Composite):
        if options:
            raise ValueError(f"options {sorted(options)} are for a named composite; this one is already built")
        return name
    if name not in _NAMED:
        raise ValueError(f"unknown composite {name!r}; expected one of {list(NAMES)} or a Composite")
    try:
        return _NAMED[name](**options)
    except TypeError as e:
        raise ValueError(f"composite {name!r}: {e}") from None
