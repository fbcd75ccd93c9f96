"""The SUPERB suite: ten downstream tasks on frozen SSL encoders, with SUPERB's protocols.

``python -m speechbrain_ext.superb --encoder PATH [PATH ...] --tasks all`` scores encoders, the
fbank and the random-encoder baselines on PR, ASR, KS, QbE, SID, ASV, SD, ER, IC and SF (the
built-in corpus by default, the real corpora with ``--data_folder TASK=PATH``) and writes a
Markdown and CSV table with the SUPERB aggregate score. The tasks run on the downstream engine
(:mod:`speechbrain_ext.downstream`) like the MP3S ones.

- :mod:`~speechbrain_ext.superb.tasks`: the ten task definitions and their real-corpus
  preparers; probe yamls in ``speechbrain_ext/downstream/configs/superb/<task>/``.
- :mod:`~speechbrain_ext.superb.runner`: the command line (the engine's
  :mod:`~speechbrain_ext.downstream.cli`, with the aggregate).
- :mod:`~speechbrain_ext.superb.aggregate`: the SUPERB score (fbank 0, reference 1000) and its
  reference values.
- :mod:`~speechbrain_ext.superb.metrics`: MTWV and MAP (QbE), slot-type F1 and slot-value CER
  (SF), DER through ``pyannote.metrics`` (SD).
- :mod:`~speechbrain_ext.superb.qbe`: training-free query-by-example scoring by subsequence DTW
  (the ``qbe`` kind).
- :mod:`~speechbrain_ext.superb.diarization`: LSTM diarization head and permutation-invariant BCE.
- :mod:`~speechbrain_ext.superb.s3prl_upstream`: our SSL encoders behind s3prl's upstream contract.
"""
