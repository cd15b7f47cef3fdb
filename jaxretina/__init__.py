"""jaxretina: explain retinal and vascular imaging networks with JAX."""
