"""SUPERB-style downstream pieces: QbE by DTW, diarization head, metrics, s3prl upstream.

- :mod:`speechbrain_ext.superb.metrics`: MTWV and MAP (QbE), slot-type F1 and slot-value CER
  (SF), DER through ``pyannote.metrics`` (SD).
- :mod:`speechbrain_ext.superb.qbe`: training-free query-by-example scoring by subsequence DTW.
- :mod:`speechbrain_ext.superb.diarization`: LSTM diarization head and permutation-invariant BCE.
- :mod:`speechbrain_ext.superb.s3prl_upstream`: our SSL encoders behind s3prl's upstream contract.
"""
