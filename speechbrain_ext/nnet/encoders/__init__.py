"""Encoders (stacks of layers around any token mixer) behind one registry.

An encoder kind is registered with ``@ENCODERS.register(kind)``; a preset is a
named dict of keyword arguments for a kind, registered with
:func:`register_preset`. ``build_encoder(kind_or_preset, **overrides)`` builds
either. Every encoder's ``forward(x, key_padding_mask=None)`` takes
``x`` (batch, time, d_model) and returns the list of every layer's output, each
(batch, time, d_model); the last is the encoder output.

Every module in this folder is imported when the package is.
"""

import importlib
import pkgutil

from speechbrain_ext.registry import Registry

ENCODERS = Registry("encoder")
PRESETS: dict[str, dict] = {}


def register_preset(name: str, *, kind: str, **config) -> None:
    """Register ``name`` as ``kind`` built with ``config``."""
    if name in PRESETS:
        raise ValueError(f"encoder preset {name!r} is already registered")
    PRESETS[name] = {"kind": kind, **config}


def list_encoders() -> list[str]:
    """Names of the registered encoder kinds."""
    return ENCODERS.names()


def list_presets() -> list[str]:
    """Names of the registered encoder presets."""
    return sorted(PRESETS)


def preset_config(name: str) -> dict:
    """A copy of the preset's configuration (including ``kind``)."""
    if name not in PRESETS:
        valid = ", ".join(list_presets())
        raise KeyError(f"unknown encoder preset {name!r}; valid presets: {valid}")
    return dict(PRESETS[name])


def build_encoder(kind_or_preset: str, **overrides):
    """Build an encoder from a kind or a preset name, with keyword overrides.

    Arguments
    ---------
    kind_or_preset : str
        An encoder kind (:func:`list_encoders`) or preset (:func:`list_presets`).
    **overrides
        Keyword arguments replacing the preset's (``num_layers``, ``d_model``,
        ``nhead``, ``mixer``, ...). Overriding ``mixer`` with another mixer drops the
        preset's ``mixer_options`` unless new ones are given.

    Example
    -------
    >>> encoder = build_encoder("bestrq_base_mhsa", mixer="fastformer", num_layers=1, d_model=32)
    >>> type(encoder.layers[0].mixer).__name__
    'Fastformer'
    """
    if kind_or_preset in PRESETS:
        config = preset_config(kind_or_preset)
        kind = config.pop("kind")
        if overrides.get("mixer", config.get("mixer")) != config.get("mixer"):
            # The preset's mixer options belong to its own mixer, not to the new one.
            config.pop("mixer_options", None)
        config.update(overrides)
    elif kind_or_preset in ENCODERS:
        kind, config = kind_or_preset, dict(overrides)
    else:
        valid = ", ".join(list_encoders() + list_presets())
        raise KeyError(f"unknown encoder kind or preset {kind_or_preset!r}; valid names: {valid}")
    return ENCODERS.build(kind, **config)


for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
