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


def random_variables(model, example_shape, seed=0):
    """Variables of ``model`` without compiling its init (3D U-Net inits compile for ~10 s on
    CPU): shapes from ``eval_shape``, kernels N(0, 1/fan_in), biases N(0, 0.1), BatchNorm
    identity (mean 0, var 1, scale 1, bias 0)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(example_shape, jnp.float32))
    shapes = {k: v for k, v in shapes.items() if k in ("params", "batch_stats")}

    def fill(path, s):
        name = jax.tree_util.keystr(path)
        if "kernel" in name:
            return jnp.asarray(rng.normal(0, 1 / np.sqrt(np.prod(s.shape[:-1])), s.shape), s.dtype)
        if "var" in name or "scale" in name:
            return jnp.ones(s.shape, s.dtype)
        if "mean" in name:
            return jnp.zeros(s.shape, s.dtype)
        return jnp.asarray(rng.normal(0, 0.1, s.shape), s.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.fixture(scope="session")
def unet_small():
    """A width-2 DS6 U-Net (main output only) and random variables, shared by the 3D tests."""
    from jaxretina.models import UNet3D

    model = UNet3D(base_width=2, deep_supervision=False)
    return model, random_variables(model, (1, 16, 16, 16, 1), seed=3)
