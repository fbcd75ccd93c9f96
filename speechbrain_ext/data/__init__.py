"""Data preparation: manifest helpers, shared checks and one preparer per real corpus.

- :mod:`speechbrain_ext.data.manifest`: write/read SpeechBrain CSVs in the schema of
  ``docs/manifests.md``.
- :mod:`speechbrain_ext.data.checks`: missing folders, duplicate IDs, unreadable, empty or
  wrongly sampled audio.
- :mod:`speechbrain_ext.data.validate`: :func:`validate_manifests`, a recipe's manifests checked
  before training (errors named, bad rows dropped and counted).
- :mod:`speechbrain_ext.data.prepare`: ``prepare_<corpus>(data_folder, save_folder, ...)``
  and the ``python -m speechbrain_ext.data.prepare`` command line.
"""

from speechbrain_ext.data.manifest import (
    COMMON_COLUMNS,
    TASK_COLUMNS,
    read_manifest,
    write_manifest,
)

__all__ = ["COMMON_COLUMNS", "TASK_COLUMNS", "read_manifest", "write_manifest"]
