"""A SpeechBrain checkpointer whose checkpoints appear only once complete.

SpeechBrain 1.1.2 writes a checkpoint's ``CKPT.yaml`` first and its parameter
files after, in the final folder. A process killed while saving therefore
leaves a checkpoint that looks complete but has missing or truncated files,
and the next run's ``recover_if_possible`` picks it and fails. Here every
checkpoint is written in a staging folder and renamed into place at the end
(an atomic rename on one file system), so killing the process at any moment and
rerunning the same command resumes from the last complete checkpoint.

It also never keeps or resumes a bad state:

- a save whose model or optimiser holds a non-finite value is refused (logged, nothing
  written, older checkpoints kept), so a diverged run never replaces its last good checkpoint;
- when the newest checkpoint does not load (truncated or zero-byte file, unreadable
  ``CKPT.yaml``, non-finite weights), recovery warns with its path and the reason and falls
  back to the next one;
- a save that fails for lack of disk space or permission names the folder (and the space the
  last checkpoint took).

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
>>> with torch.no_grad():
...     layer.weight[0, 0] = float("nan")
>>> checkpointer.save_checkpoint(meta={"step": 2}) is None  # refused: non-finite weights
True
>>> with torch.no_grad():
...     layer.weight[0, 0] = 0.5
>>> ckpt = checkpointer.save_checkpoint(meta={"step": 3})
>>> _ = (ckpt.path / "layer.ckpt").write_bytes(b"")  # the newest is damaged
>>> checkpointer.recover_if_possible().meta["step"]  # falls back to the previous one
1
"""

import errno
import logging
import shutil
from pathlib import Path

import torch
import yaml
from speechbrain.utils.checkpoints import (
    CKPT_PREFIX,
    METAFNAME,
    PARAMFILE_EXT,
    Checkpoint,
    Checkpointer,
)
from speechbrain.utils.distributed import ddp_broadcast, if_main_process

logger = logging.getLogger(__name__)

STAGING = ".incomplete"


def first_nonfinite(obj, *, trainable_only: bool = False) -> str | None:
    """The name of the first non-finite floating tensor of a module or optimiser, or None.

    ``trainable_only`` (modules): check the parameters that require a gradient and the buffers,
    not frozen parameters (a distillation teacher's), which no optimiser step can change.

    Example
    -------
    >>> layer = torch.nn.Linear(2, 2)
    >>> first_nonfinite(layer) is None
    True
    >>> with torch.no_grad():
    ...     layer.bias[1] = float("inf")
    >>> first_nonfinite(layer)
    'bias'
    >>> layer.bias.requires_grad_(False)  # frozen: not checked with trainable_only
    Parameter containing:
    tensor([..., inf])
    >>> first_nonfinite(layer, trainable_only=True) is None
    True
    """
    if isinstance(obj, torch.nn.Module):
        if trainable_only:
            tensors = [(n, p) for n, p in obj.named_parameters() if p.requires_grad]
            tensors += list(obj.named_buffers())
        else:
            tensors = obj.state_dict().items()
    elif isinstance(obj, torch.optim.Optimizer):
        tensors = (
            (f"state[{index}].{key}", value)
            for index, state in enumerate(obj.state.values())
            for key, value in state.items()
        )
    else:
        return None
    floating = [
        (name, tensor)
        for name, tensor in tensors
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point()
    ]
    if not floating:
        return None
    # It runs after every optimiser step, so: one device sync, and one cheap reduction per tensor.
    # A tensor holding a NaN or an infinity always has a non-finite sum; a finite tensor whose
    # sum overflows is ruled out by the exact check of the flagged ones only.
    device = floating[0][1].device
    sums = torch.stack([t.detach().sum(dtype=torch.float32).to(device) for _, t in floating])
    flagged = (~torch.isfinite(sums)).nonzero().flatten().tolist()
    for index in flagged:
        name, tensor = floating[index]
        if not bool(torch.isfinite(tensor).all()):
            return name
    return None


class AtomicCheckpointer(Checkpointer):
    """:class:`speechbrain.utils.checkpoints.Checkpointer` with atomic saves.

    Same arguments as SpeechBrain's ``Checkpointer``. Checkpoints are staged in
    ``<checkpoints_dir>/.incomplete`` (ignored when looking for checkpoints;
    emptied at every save) and moved into ``checkpoints_dir`` when complete.
    """

    def nonfinite_recoverable(self) -> str | None:
        """``"<recoverable>.<tensor>"`` of the first non-finite model/optimiser value, or None."""
        for key, obj in self.recoverables.items():
            name = first_nonfinite(obj)
            if name is not None:
                return f"{key}.{name}"
        return None

    def save_checkpoint(self, meta=None, end_of_epoch=True, name=None, verbosity=logging.INFO):
        """Save a checkpoint; it is visible only once every file is written.

        Returns None, and writes nothing, when a recoverable holds a non-finite value.
        """
        bad = self.nonfinite_recoverable()
        if bad is not None:
            logger.error(
                "not saving a checkpoint: %s is not finite (the training diverged); the last "
                "good checkpoint in %s is kept",
                bad,
                self.checkpoints_dir,
            )
            return None
        try:
            return self._save_atomically(meta, end_of_epoch, name, verbosity)
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS):
                raise
            raise OSError(
                error.errno,
                f"cannot save a checkpoint in {self.checkpoints_dir}: {error.strerror} "
                f"({self._space_hint()})",
            ) from error

    def _space_hint(self) -> str:
        latest = self.find_checkpoint()
        free = shutil.disk_usage(self.checkpoints_dir).free
        if latest is None:
            return f"{free / 1e6:.0f} MB free"
        size = sum(p.stat().st_size for p in latest.path.iterdir() if p.is_file())
        return f"a checkpoint takes {size / 1e6:.0f} MB; {free / 1e6:.0f} MB free"

    def _save_atomically(self, meta, end_of_epoch, name, verbosity):
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

    @staticmethod
    def _construct_checkpoint_objects(checkpoint_dirs):
        """SpeechBrain's, skipping (with a warning) a checkpoint whose CKPT.yaml is unreadable."""
        checkpoints = []
        for ckpt_dir in checkpoint_dirs:
            try:
                with open(ckpt_dir / METAFNAME, encoding="utf-8") as handle:
                    meta = yaml.load(handle, Loader=yaml.SafeLoader)
                if not isinstance(meta, dict):
                    raise ValueError("not a mapping")
            except (OSError, ValueError, yaml.YAMLError) as error:
                logger.warning("ignoring checkpoint %s: unreadable %s (%s)", ckpt_dir, METAFNAME,
                               error)  # fmt: skip
                continue
            paramfiles = {
                path.stem: path for path in ckpt_dir.iterdir() if path.suffix == PARAMFILE_EXT
            }
            checkpoints.append(Checkpoint(ckpt_dir, meta, paramfiles))
        return checkpoints

    def recover_if_possible(
        self, importance_key=None, max_key=None, min_key=None, ckpt_predicate=None
    ):
        """Load the best checkpoint that loads; a damaged or non-finite one is skipped, with a
        warning naming it and why, for the next best.
        """
        candidates = self.find_checkpoints(
            importance_key=importance_key,
            max_key=max_key,
            min_key=min_key,
            ckpt_predicate=ckpt_predicate,
        )
        for checkpoint in candidates:
            try:
                self.load_checkpoint(checkpoint)
            except Exception as error:  # a truncated zip, an empty file, a missing key...
                reason = f"{type(error).__name__}: {error}".strip()
                logger.warning("checkpoint %s does not load (%s); trying an older one",
                               checkpoint.path, reason or type(error).__name__)  # fmt: skip
                continue
            bad = self.nonfinite_recoverable()
            if bad is not None:
                logger.warning("checkpoint %s holds non-finite values (%s); trying an older one",
                               checkpoint.path, bad)  # fmt: skip
                continue
            return checkpoint
        if candidates:
            raise RuntimeError(
                f"no checkpoint in {self.checkpoints_dir} loads ({len(candidates)} tried; see "
                "the warnings above); move that folder away to start afresh"
            )
        logger.info("Would load a checkpoint here, but none found yet.")
        return None
