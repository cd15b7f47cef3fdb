"""Weight import into jaxretina's Flax models: Caffe ``.caffemodel``, PyTorch ``.pth``/``.pt``,
``.safetensors``.

Most users need only ``jaxretina.load(name, path)`` or ``jaxretina convert``; this package is
what they call.  Depends on :mod:`jaxretina` (it needs the models' variable trees), never the
other way round (jaxretina imports it lazily, for foreign files only).

Readers (file → numpy):
  :func:`read_caffemodel` (``caffe.py`` on ``wire.py``), :func:`read_torch` and :func:`unwrap`
  (``torch.py``), :func:`read_safetensors`, :func:`read_weights` (recognises the format by content).
Mappers (numpy → Flax variables, one error for every missing / unexpected / mis-shaped key):
  ``driu.from_caffe``, ``driu.from_deepdraw``, ``densenet.from_state_dict``; the generic
  ``mapping.torch_entries`` maps any model whose Flax paths are its PyTorch module paths.
Output: :func:`convert` writes an Orbax checkpoint plus a JSON record.

Example::

    >>> from converters import read_caffemodel
    >>> net = read_caffemodel("DRIU_DRIVE.caffemodel")
    >>> [(l.name, l.type) for l in net.layers if l.blobs][:2]
    [('conv1_1', 'Convolution'), ('conv1_2', 'Convolution')]
"""

from converters.caffe import CaffeLayer, CaffeNet, DecodeError, read_caffemodel
from converters.convert import convert
from converters.formats import read_weights
from converters.safetensors import read_safetensors
from converters.torch import UnsafeCheckpointError, read_torch, unwrap

__all__ = [
    "CaffeLayer", "CaffeNet", "DecodeError", "UnsafeCheckpointError", "convert", "read_caffemodel",
    "read_safetensors", "read_torch", "read_weights", "unwrap",
]
