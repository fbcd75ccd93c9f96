"""Weight and activation quantizers behind one registry.

A quantizer is an ``nn.Module`` registered with ``@QUANTIZERS.register(name)`` and built as
``QUANTIZERS.build(name, bits=...)`` (activation quantizers take more keyword options). Its class
attribute ``kind`` is ``"weight"`` or ``"activation"``. Every module in this folder is imported
with the package, so a new quantizer is one file.

- weight quantizers map a latent FP32 weight to its quantized value (straight-through gradient)
  and can :meth:`encode` it to integer codes plus FP32 scalars and :meth:`decode` those back,
  bit-exactly (``forward(w) == decode(*encode(w))``): what :mod:`speechbrain_ext.quant.packing`
  stores on disk;
- activation quantizers have learnable FP32 parameters (BiT's scale α and shift β).

Example
-------
>>> from speechbrain_ext.quant.quantizers import QUANTIZERS, default_quantizer
>>> QUANTIZERS.names()
['bwn', 'elastic_binary', 'elastic_uniform', 'uniform']
>>> default_quantizer("weight", 1), default_quantizer("activation", 4)
('bwn', 'elastic_uniform')
"""

import importlib
import pkgutil

import torch

from speechbrain_ext.registry import Registry

QUANTIZERS = Registry("quantizer")

#: Supported bit widths; 32 means "not quantized".
BITS = (1, 2, 4, 8, 32)


def default_quantizer(kind: str, bits: int) -> str:
    """The registry name used for ``kind`` (``"weight"``/``"activation"``) at ``bits`` bits."""
    if kind == "weight":
        return "bwn" if bits == 1 else "uniform"
    if kind == "activation":
        return "elastic_binary" if bits == 1 else "elastic_uniform"
    raise ValueError(f"quantizer kind must be 'weight' or 'activation', got {kind!r}")


def binary_sign(x: torch.Tensor) -> torch.Tensor:
    """±1 of ``x`` with sign(0) = +1 (so every value has one bit), in ``x``'s dtype.

    >>> binary_sign(torch.tensor([-2.0, 0.0, 3.0]))
    tensor([-1.,  1.,  1.])
    """
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
