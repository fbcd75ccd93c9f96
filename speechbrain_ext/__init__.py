"""Efficient self-supervised speech encoders on top of SpeechBrain.

Public API
----------
- :func:`list_mixers`, :func:`build_mixer`: token mixers by yaml name.
- :func:`list_encoders`, :func:`list_presets`, :func:`build_encoder`: encoders
  by kind or by the studies' preset names.
- :func:`load_ssl_encoder`: a pretrained (or random) self-supervised encoder
  for downstream use.
"""

from speechbrain_ext.nnet.encoders import build_encoder, list_encoders, list_presets
from speechbrain_ext.nnet.mixers import build_mixer, list_mixers

__all__ = [
    "build_encoder",
    "build_mixer",
    "list_encoders",
    "list_mixers",
    "list_presets",
    "load_ssl_encoder",
]
__version__ = "0.1.0"


def __getattr__(name):
    # Heavy, SpeechBrain-dependent parts are imported on first use.
    if name == "load_ssl_encoder":
        from speechbrain_ext.ssl.export import load_ssl_encoder

        return load_ssl_encoder
    raise AttributeError(f"module 'speechbrain_ext' has no attribute {name!r}")
