"""The checkpointer never keeps or resumes a bad state, and says why a save failed."""

import errno

import pytest
import torch

from speechbrain_ext.ssl import checkpoints
from speechbrain_ext.ssl.checkpoints import AtomicCheckpointer


def test_a_full_disk_names_the_folder_and_the_space(tmp_path, monkeypatch):
    layer = torch.nn.Linear(4, 4)
    checkpointer = AtomicCheckpointer(tmp_path / "save", recoverables={"layer": layer})
    checkpointer.save_checkpoint(meta={"step": 1})

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints.torch, "save", full)
    with pytest.raises(OSError, match=r"cannot save a checkpoint in .*save: No space left") as err:
        checkpointer.save_checkpoint(meta={"step": 2})
    assert "a checkpoint takes" in str(err.value) and "MB free" in str(err.value)
    monkeypatch.undo()
    assert checkpointer.recover_if_possible().meta["step"] == 1  # the good one is still there


def test_an_unreadable_ckpt_yaml_is_skipped_and_none_loading_is_an_error(tmp_path):
    layer = torch.nn.Linear(2, 2)
    checkpointer = AtomicCheckpointer(tmp_path / "save", recoverables={"layer": layer})
    first = checkpointer.save_checkpoint(meta={"step": 1})
    second = checkpointer.save_checkpoint(meta={"step": 2})
    (second.path / "CKPT.yaml").write_text(": : not yaml [")
    assert checkpointer.recover_if_possible().meta["step"] == 1
    (first.path / "layer.ckpt").write_bytes(b"")
    with pytest.raises(RuntimeError, match="no checkpoint in .* loads"):
        checkpointer.recover_if_possible()


def test_non_finite_checkpoints_are_skipped_at_recovery(tmp_path):
    layer = torch.nn.Linear(2, 2)
    checkpointer = AtomicCheckpointer(tmp_path / "save", recoverables={"layer": layer})
    checkpointer.save_checkpoint(meta={"step": 1})
    newest = checkpointer.save_checkpoint(meta={"step": 2})
    state = torch.load(newest.path / "layer.ckpt")
    state["weight"][0, 0] = float("nan")
    torch.save(state, newest.path / "layer.ckpt")  # written behind the checkpointer's back
    assert checkpointer.recover_if_possible().meta["step"] == 1
    assert bool(torch.isfinite(layer.weight).all())
