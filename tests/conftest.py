"""Test settings: strict dtype promotion (an implicit float64 or int->float mix is a bug here),
warnings as errors (pyproject's filterwarnings), small shared DRIU fixtures."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxretina  # noqa: F401  (applies the XLA defaults before a backend starts)

jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture(scope="session")
def driu_small():
    """A vessel DRIU, its variables (deterministic init) and one odd-sized input (37, 45, 3)."""
    from jaxretina.models import DRIU

    model = DRIU()
    x = jnp.asarray(np.random.default_rng(0).normal(0, 40, (37, 45, 3)), jnp.float32)
    variables = model.init(jax.random.key(0), x[None])
    return model, variables, x
