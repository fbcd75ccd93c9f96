"""MP3S downstream benchmark on frozen (or fine-tuned) self-supervised encoders.

One concept per module:

- :mod:`~speechbrain_ext.mp3s.featurizer`: learned softmax-weighted sum of all layers
  (:class:`WeightedLayerSum`, :class:`SSLFeaturizer`), frozen or fine-tuned.
- :mod:`~speechbrain_ext.mp3s.cache`: layer features on disk, keyed by encoder checksum and
  utterance id.
- :mod:`~speechbrain_ext.mp3s.baselines`: :class:`FbankEncoder` and :func:`load_mp3s_encoder`
  (the encoder, the filterbank baseline, the random-encoder baseline).
- :mod:`~speechbrain_ext.mp3s.probes`: the probes by yaml name (:func:`build_probe`).
- :mod:`~speechbrain_ext.mp3s.tasks`: the five tasks, their manifests and folds.
- :mod:`~speechbrain_ext.mp3s.tokenizers`, :mod:`~speechbrain_ext.mp3s.metrics`: CTC units and
  scoring (SpeechBrain's ``ErrorRateStats`` and ``EER``).
- :mod:`~speechbrain_ext.mp3s.brains`, :mod:`~speechbrain_ext.mp3s.recipe`: what the
  ``MP3S/<task>/train.py`` recipes share.
- :mod:`~speechbrain_ext.mp3s.runner`: ``python -m speechbrain_ext.mp3s``, the task × probe
  grid for an encoder and its baselines.
"""

from speechbrain_ext.mp3s.baselines import FbankEncoder, load_mp3s_encoder
from speechbrain_ext.mp3s.featurizer import SSLFeaturizer, WeightedLayerSum
from speechbrain_ext.mp3s.probes import PROBES, build_probe, list_probes
from speechbrain_ext.mp3s.tasks import TASKS, get_task, list_tasks

__all__ = [
    "PROBES",
    "TASKS",
    "FbankEncoder",
    "SSLFeaturizer",
    "WeightedLayerSum",
    "build_probe",
    "get_task",
    "list_probes",
    "list_tasks",
    "load_mp3s_encoder",
]
