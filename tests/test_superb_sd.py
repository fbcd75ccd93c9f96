"""SUPERB SD through the engine: the ``diarization`` kind on tiny mixtures, and its scoring on
hand-computed examples."""

import importlib
import json
import math

import pytest
import torch
from speechbrain.dataio import audio_io
from test_mp3s import SAMPLE_RATE, _tone, _write_csv

from speechbrain_ext.downstream import KINDS, get_task, load_task_hparams, register_task, run_task
from speechbrain_ext.downstream import task as task_registry
from speechbrain_ext.downstream.diarization import (
    mixture_labels,
    mixture_turns,
    score_diarization,
)
from speechbrain_ext.downstream.task import Task


def _no_preparer(data_folder, save_folder, **options):
    raise NotImplementedError("the stand-in SD task has no real-corpus preparer")


@pytest.fixture
def sd_task(monkeypatch):
    """``superb/SD``: the suite's definition once ``speechbrain_ext/superb/tasks.py`` exists,
    else a stand-in registered for this test only (the registry refuses a second, different
    ``Task`` under a taken name, so the stand-in lives in a copy of the registry).
    """
    try:
        importlib.import_module("speechbrain_ext.superb.tasks")
    except ModuleNotFoundError as error:
        if error.name != "speechbrain_ext.superb.tasks":
            raise
        monkeypatch.setattr(task_registry, "_SUITES", dict(task_registry._SUITES))
        monkeypatch.setattr(
            task_registry, "_ORDER", {k: list(v) for k, v in task_registry._ORDER.items()}
        )
        register_task(
            Task(suite="superb", name="SD", kind="diarization", builtin="sd", label="rttm",
                 metric="DER", higher_is_better=False, probes=("lstm_pit",),
                 prepare=_no_preparer)
        )  # fmt: skip
    task = get_task("superb/SD")
    assert task.kind == "diarization" and "lstm_pit" in task.probes
    return task


def _write_rttm(path, recording, turns):
    lines = [
        f"SPEAKER {recording} 1 {start:.3f} {end - start:.3f} <NA> <NA> {spk} <NA> <NA>"
        for start, end, spk in turns
    ]
    path.write_text("\n".join(lines) + "\n")


def write_tiny_sd(root):
    """``<root>/manifests/sd/{train,dev,test}.csv``: 1 s mixtures of two tones (one per
    speaker) that overlap in the middle, with per-mixture RTTMs."""
    audio = root / "audio"
    audio.mkdir(parents=True)
    for split, n in (("train", 8), ("dev", 2), ("test", 3)):
        rows = []
        for i in range(n):
            uid = f"sd-{split}-{i}"
            first, second = (0.0, 0.5 + 0.05 * i), (0.35 + 0.05 * i, 1.0)
            a, b = _tone(250.0, first[1], i), _tone(900.0, second[1] - second[0], 100 + i)
            mix = torch.zeros(SAMPLE_RATE)
            mix[: a.numel()] += a
            start = int(second[0] * SAMPLE_RATE)
            mix[start : start + b.numel()] += b
            audio_io.save(str(audio / f"{uid}.wav"), mix, SAMPLE_RATE)
            turns = (
                [(*first, "s1"), (*second, "s2")] if i % 2 else [(*second, "s2"), (*first, "s1")]
            )
            _write_rttm(audio / f"{uid}.rttm", uid, turns)
            rows.append({
                "ID": uid, "duration": 1.0, "wav": str(audio / f"{uid}.wav"), "spk_id": "s1_s2",
                "rttm": str(audio / f"{uid}.rttm"), "num_spk": 2,
            })  # fmt: skip
        _write_csv(root / "manifests" / "sd" / f"{split}.csv", rows)
    return root / "manifests"


# ------------------------------------------------------------------------------- scoring

# Two speakers over 1 s at 10 frames/s: a speaks [0, 0.5), b speaks [0.3, 0.8); 1.0 s of
# reference speech (0.5 + 0.5, the 0.2 s overlap counted for both).
TURNS = [(0.0, 0.5, "a"), (0.3, 0.8, "b")]
REFERENCE = {"m": (TURNS, 1.0)}


def test_perfect_prediction_scores_zero():
    labels = mixture_labels(TURNS, num_frames=10, frame_rate=10.0, num_speakers=2)
    assert labels.T.tolist() == [[1] * 5 + [0] * 5, [0] * 3 + [1] * 5 + [0] * 2]
    for order in ([0, 1], [1, 0]):  # speaker order does not matter
        stats = score_diarization(
            {"m": 20.0 * labels[:, order] - 10.0}, REFERENCE, frame_rate=10.0, median=3
        )
        assert stats["DER"] == pytest.approx(0.0, abs=1e-9)


def test_all_silence_misses_all_the_speech():
    stats = score_diarization({"m": torch.full((10, 2), -5.0)}, REFERENCE, frame_rate=10.0)
    assert stats["speech_seconds"] == pytest.approx(1.0)  # 0.5 s + 0.5 s
    assert stats["missed"] == pytest.approx(100.0) and stats["DER"] == pytest.approx(100.0)
    assert stats["false_alarm"] == stats["confusion"] == 0.0


def test_hand_computed_false_alarm_and_confusion():
    # Speaker 0 all along, speaker 1 never: a is right on [0, 0.5); b's [0.5, 0.8) is
    # confused with 0 (0.3 s); b's overlap [0.3, 0.5) is missed (0.2 s); [0.8, 1.0) is a false
    # alarm (0.2 s). DER = 0.7 s / 1.0 s.
    logits = torch.tensor([[5.0, -5.0]] * 10)
    stats = score_diarization({"m": logits}, REFERENCE, frame_rate=10.0)
    assert stats["missed"] == pytest.approx(20.0)
    assert stats["confusion"] == pytest.approx(30.0)
    assert stats["false_alarm"] == pytest.approx(20.0)
    assert stats["DER"] == pytest.approx(70.0)


def test_the_median_filter_removes_short_blips():
    logits = torch.full((10, 2), -5.0)
    logits[:5, 0] = logits[3:8, 1] = 5.0
    logits[8, 0] = 5.0  # a one-frame false alarm
    assert score_diarization({"m": logits}, REFERENCE, frame_rate=10.0)["false_alarm"] == (
        pytest.approx(10.0)
    )
    filtered = score_diarization({"m": logits}, REFERENCE, frame_rate=10.0, median=3)
    assert filtered["DER"] == pytest.approx(0.0, abs=1e-9)


def test_labels_refuse_more_speakers_than_the_probe_has(tmp_path):
    with pytest.raises(ValueError, match="3 speakers"):
        mixture_labels([*TURNS, (0.9, 1.0, "c")], num_frames=10, frame_rate=10.0, num_speakers=2)
    rttm = tmp_path / "m.rttm"
    _write_rttm(rttm, "other-name", TURNS)  # a per-mixture file names one recording
    assert mixture_turns(rttm, "m") == TURNS
    rttm.write_text("")
    assert mixture_turns(rttm, "m") == []


# ---------------------------------------------------------------------------- the engine


def test_sd_runs_through_the_engine(sd_task, tmp_path, monkeypatch):
    monkeypatch.delenv("SB_GLOBAL_SEED", raising=False)
    assert "diarization" in KINDS
    manifests = write_tiny_sd(tmp_path / "data")
    overrides = {
        "manifest_root": str(manifests), "output_folder": str(tmp_path / "out"),
        "cache_folder": str(tmp_path / "cache"), "number_of_epochs": 3, "hidden_size": 16,
    }  # fmt: skip
    hparams = load_task_hparams(sd_task, "lstm_pit", overrides)
    results = run_task(sd_task, hparams, {"device": "cpu"})
    assert results["metric"] == "DER" and results["higher_is_better"] is False
    assert math.isfinite(results["value"]) and 0.0 <= results["value"] <= 200.0
    stats = results["test_stats"]
    parts = stats["missed"] + stats["false_alarm"] + stats["confusion"]
    assert parts == pytest.approx(results["value"])
    assert stats["speech_seconds"] > 0 and results["frame_rate"] == 100.0  # fbank: 10 ms
    weights = results["layer_weights"]
    assert len(weights) == 1 and sum(weights) == pytest.approx(1.0)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["value"] == results["value"] and saved["task"] == "SD"
    assert (tmp_path / "out" / "train_log.txt").read_text().count("DER") >= 3
