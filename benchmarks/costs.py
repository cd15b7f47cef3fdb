"""Work of a benchmarked program in FLOPs, from XLA's cost analysis of the compiled program."""

from __future__ import annotations

__all__ = ["xla_flops", "forward_flops"]


def xla_flops(fn, *args) -> float:
    """FLOPs XLA counts for ``jax.jit(fn)(*args)`` (0 where the backend reports none)."""
    import jax

    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", 0.0)) if cost else 0.0


def forward_flops(model, variables, target, x) -> float:
    """FLOPs of one forward pass ``target(model(x))`` of one example, parameters as arguments."""
    import jax

    from jaxretina import explain, taps

    return xla_flops(lambda v, z: explain.model_fn(model, v, target)(z), taps.params_only(variables),
                     jax.numpy.asarray(x))
