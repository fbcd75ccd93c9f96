"""The built-in multi-task speech corpus, synthesized offline with eSpeak NG.

``python -m speechbrain_ext.corpus --out DIR --minutes N --seed S`` (or
:func:`ensure_builtin_corpus` from a recipe) writes 16 kHz audio standing in for every
benchmark the recipes use (LibriSpeech pretraining/ASR/PR, Speech Commands, Fluent Speech
Commands, SLURP, SNIPS, IEMOCAP, VoxCeleb1, LibriMix, QUESST, CommonVoice Welsh and Basque)
and the manifests described in ``docs/manifests.md``.

Modules, one concept each: :mod:`~speechbrain_ext.corpus.espeak` (the synthesizer),
:mod:`~speechbrain_ext.corpus.text` (vocabularies and grammar),
:mod:`~speechbrain_ext.corpus.speakers` (voices and speaking styles),
:mod:`~speechbrain_ext.corpus.augment` (recording conditions),
:mod:`~speechbrain_ext.corpus.tasks` (what each task's clips say),
:mod:`~speechbrain_ext.corpus.render` (clip → audio file),
:mod:`~speechbrain_ext.corpus.manifests` (CSVs, RTTM, trials) and
:mod:`~speechbrain_ext.corpus.generate` (the whole run).
"""

from speechbrain_ext.corpus.espeak import EspeakUnavailableError
from speechbrain_ext.corpus.generate import (
    DEFAULT_MINUTES,
    DEFAULT_SEED,
    ensure_builtin_corpus,
    generate_corpus,
    read_marker,
)
from speechbrain_ext.corpus.speakers import plan_speakers
from speechbrain_ext.corpus.tasks import PROPORTIONS, plan_corpus

__all__ = [
    "DEFAULT_MINUTES",
    "DEFAULT_SEED",
    "PROPORTIONS",
    "EspeakUnavailableError",
    "ensure_builtin_corpus",
    "generate_corpus",
    "plan_corpus",
    "plan_speakers",
    "read_marker",
]
