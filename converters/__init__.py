"""Weight import into jaxretina's Flax models (Caffe ``.caffemodel``, PyTorch state dicts).

Depends on :mod:`jaxretina` (it needs the models' parameter trees), never the other way round.
The Caffe and PyTorch readers arrive with the converters issue; until then jaxretina loads
its own Orbax checkpoints (:mod:`jaxretina.checkpoint`).
"""

__all__: list[str] = []
