"""The downstream engine shared by the benchmark suites (MP3S, and SUPERB next).

A suite is a list of declarative :class:`~speechbrain_ext.downstream.task.Task` definitions
(``speechbrain_ext/<suite>/tasks.py``) and their probe yamls (package data,
``configs/<suite>/<task>/<probe>.yaml``); the engine runs any of them:

- :mod:`~speechbrain_ext.downstream.engine`: :func:`load_task_hparams` (a task's probe yaml with
  overrides), :func:`run_task` (train and score a task), :func:`run_recipe` (a recipe folder's
  ``train.py``).
- :mod:`~speechbrain_ext.downstream.kinds`: one function per kind of task (``ctc``,
  ``classification``, ``verification``; ``diarization`` in :mod:`~.diarization`), registered
  in :data:`KINDS`.
- :mod:`~speechbrain_ext.downstream.task`: :class:`Task`, the registry of every suite's tasks
  (:func:`get_task` ``"mp3s/SLURP"``), their manifests; :mod:`~.folds`: cross-validation folds.
- :mod:`~speechbrain_ext.downstream.pipeline`: the steps the kinds share (manifests, features,
  targets, probe, ``results.json``).
- :mod:`~speechbrain_ext.downstream.grid`: every task × probe × encoder of a suite into one
  table (the suites' command lines).
- :mod:`~speechbrain_ext.downstream.featurizer`: learned softmax-weighted sum of all layers
  (:class:`WeightedLayerSum`, :class:`SSLFeaturizer`), frozen or fine-tuned;
  :mod:`~.cache`: layer features on disk, keyed by encoder checksum and utterance id;
  :mod:`~.baselines`: :class:`FbankEncoder` and :func:`load_mp3s_encoder` (the encoder, the
  filterbank baseline, the random-encoder baseline); :mod:`~.probes`: the probes by yaml name
  (:func:`build_probe`); :mod:`~.brains`: a SpeechBrain ``Brain`` per kind;
  :mod:`~.tokenizers`, :mod:`~.metrics`: CTC units and scoring.

Adding a task: ``docs/adding_a_task.md``.
"""

from speechbrain_ext.downstream.baselines import FbankEncoder, load_mp3s_encoder
from speechbrain_ext.downstream.engine import (
    load_task_hparams,
    run_recipe,
    run_task,
    task_config,
)
from speechbrain_ext.downstream.featurizer import SSLFeaturizer, WeightedLayerSum
from speechbrain_ext.downstream.kinds import KINDS
from speechbrain_ext.downstream.probes import PROBES, build_probe, list_probes
from speechbrain_ext.downstream.task import Task, get_task, register_task, suite_tasks

__all__ = [
    "KINDS",
    "PROBES",
    "FbankEncoder",
    "SSLFeaturizer",
    "Task",
    "WeightedLayerSum",
    "build_probe",
    "get_task",
    "list_probes",
    "load_mp3s_encoder",
    "load_task_hparams",
    "register_task",
    "run_recipe",
    "run_task",
    "suite_tasks",
    "task_config",
]
