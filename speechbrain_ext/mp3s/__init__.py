"""The MP3S suite: five downstream tasks scored on frozen (or fine-tuned) SSL encoders.

- :mod:`~speechbrain_ext.mp3s.tasks`: the five task definitions and their real-corpus
  preparers (run by the engine, :mod:`speechbrain_ext.downstream`).
- :mod:`~speechbrain_ext.mp3s.runner`: ``python -m speechbrain_ext.mp3s``, the task × probe
  grid for an encoder and its baselines (:mod:`speechbrain_ext.downstream.grid`).

The featurizer, cache, probes, Brains, metrics and baselines are the engine's
(:mod:`speechbrain_ext.downstream`); the names below are kept here for convenience.
"""

from speechbrain_ext.downstream import (
    PROBES,
    FbankEncoder,
    SSLFeaturizer,
    WeightedLayerSum,
    build_probe,
    list_probes,
    load_mp3s_encoder,
)
from speechbrain_ext.mp3s.tasks import TASKS, get_task, list_tasks

__all__ = [
    "PROBES",
    "TASKS",
    "FbankEncoder",
    "SSLFeaturizer",
    "WeightedLayerSum",
    "build_probe",
    "get_task",
    "list_tasks",
    "list_probes",
    "load_mp3s_encoder",
]
