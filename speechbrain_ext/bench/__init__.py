"""Cost measurement for any encoder: time, peak memory, storage, FLOP and BOP.

Commands (``python -m speechbrain_ext.bench ...``):

- ``mixers``: one token-mixer layer against length, ours beside SpeechBrain's (:mod:`.mixers`);
- ``speed``: whole BEST-RQ models, inference and training step, against length (:mod:`.speed`);
- ``profile``: storage, FLOP, BOP and an A100 time estimate at any bit widths, and Study A's
  Table 1 (:mod:`.profile`).

Library parts: :mod:`.flops` (:class:`~.flops.CostCounter`, :class:`~.flops.BitWidths`,
:func:`~.flops.storage_bytes`), :mod:`.memory` (fresh-process time and peak memory),
:mod:`.baselines` (SpeechBrain's shipped mixers and Conformer behind our interfaces),
:mod:`.tables` and :mod:`.plots`.
"""
