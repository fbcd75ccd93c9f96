"""Self-supervised pretraining: the BEST-RQ objective, model and export.

- :mod:`speechbrain_ext.ssl.bestrq`: random-projection quantizer, span masking, loss.
- :mod:`speechbrain_ext.ssl.frontend`: normalised fbank and the ×4 front ends.
- :mod:`speechbrain_ext.ssl.model`: :func:`build_bestrq_model`, :class:`BestRQModel`.
- :mod:`speechbrain_ext.ssl.export`: :func:`load_ssl_encoder` for downstream use.
- :mod:`speechbrain_ext.ssl.evaluate`: held-out masked-prediction accuracy beside baselines.
- :mod:`speechbrain_ext.ssl.checkpoints`: a checkpointer whose checkpoints appear once complete.

Importing this package is cheap; the SpeechBrain-dependent modules are imported
on first use of these names.
"""

__all__ = ["BestRQ", "BestRQModel", "build_bestrq_model", "load_ssl_encoder"]

_LOCATIONS = {
    "BestRQ": "speechbrain_ext.ssl.bestrq",
    "BestRQModel": "speechbrain_ext.ssl.model",
    "build_bestrq_model": "speechbrain_ext.ssl.model",
    "load_ssl_encoder": "speechbrain_ext.ssl.export",
}


def __getattr__(name):
    if name in _LOCATIONS:
        import importlib

        return getattr(importlib.import_module(_LOCATIONS[name]), name)
    raise AttributeError(f"module 'speechbrain_ext.ssl' has no attribute {name!r}")
