"""Token mixers behind one registry.

Every mixer is an ``nn.Module`` built with keyword arguments
``(d_model=..., nhead=..., **options)`` whose ``forward(x, key_padding_mask=None)``
maps ``x`` (batch, time, d_model) to a tensor of the same shape. Padded frames
(``key_padding_mask`` True) never influence valid frames.

Each module of this package registers its mixers with ``@MIXERS.register(name)``;
every module in this folder is imported when the package is, so adding a file
is all it takes to add a mixer.

Example
-------
>>> import torch
>>> from speechbrain_ext.nnet.mixers import build_mixer, list_mixers
>>> "fastformer" in list_mixers()
True
>>> mixer = build_mixer("fastformer", d_model=32, nhead=4)
>>> mixer(torch.randn(2, 10, 32)).shape
torch.Size([2, 10, 32])
"""

import importlib
import pkgutil

from speechbrain_ext.registry import Registry

MIXERS = Registry("mixer")


def list_mixers() -> list[str]:
    """Names of every registered token mixer."""
    return MIXERS.names()


def build_mixer(name: str, *, d_model: int, nhead: int = 1, **options):
    """Build the mixer registered as ``name``.

    Arguments
    ---------
    name : str
        Registry name, one of :func:`list_mixers`.
    d_model : int
        Model width.
    nhead : int
        Number of heads (ignored by mixers without heads).
    **options
        Mixer-specific keyword options.
    """
    return MIXERS.build(name, d_model=d_model, nhead=nhead, **options)


for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
