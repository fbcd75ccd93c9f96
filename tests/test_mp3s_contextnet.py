"""MP3S LibriSpeech's ContextNet head: shapes, padding invariance (eval and training, NaN in the
padding), and a tiny run through the engine."""

import math

import pytest
import torch
from test_mp3s import write_tiny_manifests

from speechbrain_ext.downstream import get_task, load_task_hparams, run_task
from speechbrain_ext.downstream.probes import ContextNetBlock, build_probe

SMALL = {"channels": 8, "num_blocks": 2, "num_convs": 2, "kernel_size": 5, "dropout": 0.0}


@pytest.mark.parametrize("options", [SMALL, {**SMALL, "num_blocks": 1, "kernel_size": 3}])
def test_contextnet_shapes(options):
    probe = build_probe("contextnet_ctc", input_size=6, num_outputs=4, **options)
    assert probe.kind == "ctc" and len(probe.blocks) == options["num_blocks"]
    out = probe(torch.randn(3, 17, 6), torch.tensor([1.0, 0.5, 0.2]))
    assert out.shape == (3, 17, 4)  # no striding: the features' frame rate
    assert torch.allclose(out.exp().sum(-1), torch.ones(3, 17), atol=1e-5)
    assert probe(torch.randn(2, 9, 6)).shape == (2, 9, 4)  # no lengths: every frame valid
    with pytest.raises(ValueError, match="odd"):
        ContextNetBlock(input_size=6, channels=8, kernel_size=4)


@pytest.mark.parametrize("training", [False, True])
def test_contextnet_valid_frames_ignore_padding(training):
    probe = build_probe("contextnet_ctc", input_size=6, num_outputs=4, **SMALL)
    probe.train(training)  # LayerNorm, no dropout: training mode is deterministic too
    lengths = [20, 13, 5]
    utterances = [torch.randn(n, 6) for n in lengths]
    batch = torch.full((3, 20, 6), float("nan"))  # whatever the padding holds
    for b, utt in enumerate(utterances):
        batch[b, : len(utt)] = utt
    batch.requires_grad_(True)
    lens = torch.tensor(lengths) / 20
    out = probe(batch, lens)
    for b, utt in enumerate(utterances):
        alone = probe(utt[None], torch.ones(1))[0]
        assert torch.allclose(out[b, : len(utt)], alone, atol=1e-5)
    valid = torch.arange(20)[None] < torch.tensor(lengths)[:, None]
    out[valid].sum().backward()
    assert torch.isfinite(batch.grad).all() and batch.grad[~valid].abs().sum() == 0
    # The check has teeth: zero padding seen as valid frames (no lengths) changes the output
    # of the short utterances (convolutions at the edge, the SE mean).
    zeros = torch.nan_to_num(batch.detach(), nan=0.0)
    unmasked = probe(zeros)
    assert not torch.allclose(unmasked[2, :5], out[2, :5].detach(), atol=1e-4)


def test_librispeech_ships_contextnet_as_its_third_probe():
    task = get_task("mp3s/LibriSpeech")
    assert task.probes[0] == "bilstm_ctc" and task.probes[2] == "contextnet_ctc"
    hparams = load_task_hparams(task, "contextnet_ctc")
    assert hparams["probe"] == "contextnet_ctc"
    assert hparams["probe_options"]["channels"] == hparams["channels"]


def test_contextnet_runs_librispeech_through_the_engine(tmp_path, monkeypatch):
    monkeypatch.delenv("SB_GLOBAL_SEED", raising=False)
    manifests = write_tiny_manifests(tmp_path / "data")
    overrides = {
        "manifest_root": str(manifests), "output_folder": str(tmp_path / "out"),
        "cache_folder": str(tmp_path / "cache"), "number_of_epochs": 2, "channels": 16,
    }  # fmt: skip
    hparams = load_task_hparams("mp3s/LibriSpeech", "contextnet_ctc", overrides)
    results = run_task("mp3s/LibriSpeech", hparams, {"device": "cpu"})
    assert results["probe"] == "contextnet_ctc" and results["metric"] == "WER"
    assert math.isfinite(results["value"]) and results["value"] >= 0.0
    assert math.isfinite(results["test_stats"]["loss"])
    assert results["layer_weights"] == pytest.approx([1.0])
    assert (tmp_path / "out" / "wer.txt").is_file()
