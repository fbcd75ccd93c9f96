"""A SpeechBrain checkpointer whose checkpoints appear only once complete.

SpeechBrain 1.1.2 writes a checkpoint's ``CKPT.yaml`` first and its parameter
files after, in the final folder. A process killed while saving therefore
leaves a checkpoint that looks complete but has missing or truncated files,
and the next run's ``recover_if_possible`` picks it and fails. Here every
checkpoint is written in a staging folder and renamed into place at the end
(an atomic rename on one file system), so killing the process at any moment and
rerunning the same command resumes from the last complete checkpoint.

Example
-------
>>> import torch
>>> folder = getfixture("tmp_path")
>>> layer = torch.nn.Linear(2, 2)
>>> checkpointer = AtomicCheckpointer(folder / "save", recoverables={"layer": layer})
>>> ckpt = checkpointer.save_checkpoint(meta={"step": 1})
>>> ckpt.path.parent == folder / "save", sorted(p.name for p in ckpt.path.iterdir())
(True, ['CKPT.yaml', 'layer.ckpt'])
>>> checkpointer.find_checkpoint().meta["step"]
1
"""

import logging
import shutil
from pathlib import Path

from speechbrain.utils.checkpoints import CKPT_PREFIX, Checkpoint, Checkpointer
from speechbrain.utils.distributed import ddp_broadcast, if_main_process

STAGING = ".incomplete"


class AtomicCheckpointer(Checkpointer):
    """:class:`speechbrain.utils.checkpoints.Checkpointer` with atomic saves.

    Same arguments as SpeechBrain's ``Checkpointer``. Checkpoints are staged in
    ``<checkpoints_dir>/.incomplete`` (ignored when looking for checkpoints;
    emptied at every save) and moved into ``checkpoints_dir`` when complete.
    """

    def save_checkpoint(self, meta=None, end_of_epoch=True, name=None, verbosity=logging.INFO):
        """Save a checkpoint; it is visible only once every file is written."""
        final_dir = staging_root = None
        if if_main_process():
            final_dir = (
                self._new_checkpoint_dirpath()
                if name is None
                else self._custom_checkpoint_dirpath(name)
            )
            staging_root = Path(self.checkpoints_dir) / STAGING
            shutil.rmtree(staging_root, ignore_errors=True)  # leftovers of a killed save
            staging_root.mkdir(parents=True)
        final_dir, staging_root = ddp_broadcast((final_dir, staging_root), src=0)
        real_dir = self.checkpoints_dir
        staged_name = final_dir.name[len(CKPT_PREFIX) + 1 :]
        self.checkpoints_dir = staging_root
        try:
            staged = super().save_checkpoint(
                meta=meta or {}, end_of_epoch=end_of_epoch, name=staged_name, verbosity=verbosity
            )
        finally:
            self.checkpoints_dir = real_dir
        if not if_main_process():
            return None
        if final_dir.exists():  # a checkpoint saved under the same (custom) name earlier
            shutil.rmtree(final_dir)
        staged.path.rename(final_dir)
        files = {key: final_dir / path.name for key, path in staged.paramfiles.items()}
        return Checkpoint(final_dir, staged.meta, files)
