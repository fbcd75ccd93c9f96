"""MP3S: featurizer, cache, probes, every task recipe on tiny data, and the runner."""

import csv
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from processes import kill_when
from speechbrain.dataio import audio_io
from speechbrain.dataio.dataio import read_audio
from torch import nn

from speechbrain_ext.data.manifest import read_manifest
from speechbrain_ext.downstream.baselines import FbankEncoder, load_mp3s_encoder
from speechbrain_ext.downstream.cache import CacheStats, LayerFeatureCache, encoder_checksum
from speechbrain_ext.downstream.featurizer import SSLFeaturizer, WeightedLayerSum
from speechbrain_ext.downstream.folds import resolve_folds, write_fold_manifests
from speechbrain_ext.downstream.probes import build_probe, list_probes
from speechbrain_ext.mp3s.tasks import get_task, list_tasks

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_RATE = 16000


# ---------------------------------------------------------------------------- tiny data


def _tone(freq: float, seconds: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return 0.3 * torch.sin(2 * math.pi * freq * t) + 0.02 * torch.randn(t.shape, generator=gen)


def _write_csv(path: Path, rows: list[dict]):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_tiny_manifests(root: Path) -> Path:
    """Manifests of every MP3S task in the built-in layout, over a few short tones."""
    wav_dir = root / "wav"
    wav_dir.mkdir(parents=True, exist_ok=True)
    counter = iter(range(10_000))

    def utt(spk: int, label: int, prefix: str) -> dict:
        index = next(counter)
        seconds = 0.3 + 0.05 * (index % 4)
        path = wav_dir / f"{prefix}{index}.wav"
        audio_io.save(str(path), _tone(200 + 60 * spk + 150 * label, seconds, index), SAMPLE_RATE)
        return {
            "ID": f"{prefix}{index}",
            "duration": seconds,
            "wav": str(path),
            "spk_id": f"s{spk}",
        }

    words = ["HI", "YO", "HI YO", "OH HI"]
    manifests = root / "manifests"
    for task in ("librispeech", "cv_cy", "cv_eu"):
        for split, n in (("train", 8), ("dev", 4), ("test", 4)):
            rows = [utt(i % 3, i % 4, f"{task}_") | {"wrd": words[i % 4]} for i in range(n)]
            _write_csv(manifests / task / f"{split}.csv", rows)
    scenarios = ["alarm", "music", "news"]
    for split, n in (("train", 9), ("dev", 6), ("test", 6)):
        rows = [
            utt(i % 2, i % 3, "slurp_")
            | {"scenario": scenarios[i % 3], "action": "set", "intent": f"{scenarios[i % 3]}_set",
               "wrd": "SET IT", "slots": ""}
            for i in range(n)
        ]  # fmt: skip
        _write_csv(manifests / "slurp" / f"{split}.csv", rows)
    emotions = ["neu", "hap", "sad", "ang"]
    for split, sessions in (("train", (1, 2, 3)), ("dev", (4,)), ("test", (5,))):
        rows = [
            utt(s, k, "er_") | {"emo": emotions[k], "session": s, "spk_id": f"Ses0{s}F"}
            for s in sessions
            for k in (0, 1, 2, 3, 0, 1)
        ]
        _write_csv(manifests / "er" / f"{split}.csv", rows)
    train = [utt(s, 0, "asv_") for s in range(4) for _ in range(3)]
    _write_csv(manifests / "asv" / "train.csv", train)
    dev = [utt(s, 0, "asv_") for s in (8, 9) for _ in range(2)]  # new speakers, as built in
    _write_csv(manifests / "asv" / "dev.csv", dev)
    test = [utt(s, 0, "asv_") for s in (5, 6, 7) for _ in range(2)]
    _write_csv(manifests / "asv" / "test.csv", test)
    trials = [
        {"label": int(a["spk_id"] == b["spk_id"]), "enrol_id": a["ID"], "test_id": b["ID"]}
        for i, a in enumerate(test)
        for b in test[i + 1 :]
    ]
    _write_csv(manifests / "asv" / "trials.csv", trials)
    return manifests


@pytest.fixture(scope="module")
def tiny_manifests(tmp_path_factory) -> Path:
    return write_tiny_manifests(tmp_path_factory.mktemp("mp3s_data"))


class TinyEncoder(nn.Module):
    """A 3-layer stand-in for load_ssl_encoder's module (frames of 160 samples)."""

    def __init__(self):
        super().__init__()
        self.num_layers, self.hidden_size, self.downsample_rate = 3, 6, 160
        self.frontend = nn.Linear(160, 6)
        self.layers = nn.ModuleList(nn.Linear(6, 6) for _ in range(2))

    def forward(self, wavs, wav_lens):
        frames = wavs[:, : wavs.shape[1] // 160 * 160].reshape(wavs.shape[0], -1, 160)
        outputs = [self.frontend(frames)]
        for layer in self.layers:
            outputs.append(torch.tanh(layer(outputs[-1])))
        return outputs


def make_tiny_bestrq(folder: Path) -> Path:
    """A 2-layer BEST-RQ output folder that load_ssl_encoder reads (random weights)."""
    from speechbrain.utils.checkpoints import Checkpointer

    from speechbrain_ext.ssl.export import save_model_config
    from speechbrain_ext.ssl.model import build_bestrq_model

    model = build_bestrq_model(
        "conformer", num_layers=2, d_model=32, nhead=4, mixer="fastformer", kernel_size=7,
        codebook_size=16,
    )  # fmt: skip
    save_model_config(model, folder)
    Checkpointer(folder / "save", {"model": model}).save_checkpoint()
    return folder


# ---------------------------------------------------------------------------- featurizer


def test_layer_weights_are_softmax_normalised():
    wsum = WeightedLayerSum(num_layers=4)
    with torch.no_grad():
        wsum.weights.copy_(torch.tensor([2.0, -1.0, 0.5, 3.0]))
    weights = torch.tensor(wsum.layer_weights())
    assert torch.all(weights > 0)
    assert weights.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(weights, torch.softmax(torch.tensor([2.0, -1.0, 0.5, 3.0]), 0))
    layers = [torch.full((1, 2, 3), float(i)) for i in range(4)]
    mixed = wsum(layers, normalize=False)
    assert torch.allclose(mixed, torch.full((1, 2, 3), float((weights * torch.arange(4.0)).sum())))


@pytest.mark.parametrize("freeze", [True, False])
def test_gradients_reach_the_encoder_only_when_fine_tuning(freeze):
    featurizer = SSLFeaturizer(encoder=TinyEncoder(), freeze=freeze)
    featurizer.train()
    feats = featurizer(torch.randn(2, 1600), torch.tensor([1.0, 0.7]))
    assert feats.shape == (2, 10, 6)
    feats.pow(2).mean().backward()
    encoder_grads = [p.grad for p in featurizer.encoder.parameters()]
    assert featurizer.weighted_sum.weights.grad is not None
    assert featurizer.weighted_sum.weights.grad.abs().sum() > 0
    if freeze:
        assert all(g is None for g in encoder_grads)
        assert not featurizer.encoder.training
    else:
        assert all(g is not None and g.abs().sum() > 0 for g in encoder_grads)


def test_featurizer_rejects_an_encoder_without_the_interface():
    with pytest.raises(TypeError, match="num_layers"):
        SSLFeaturizer(encoder=nn.Linear(2, 2))


def test_fbank_encoder_normalises_valid_frames_only():
    encoder = FbankEncoder()
    wavs = torch.randn(2, 8000)
    wavs[1, 4000:] = 0.0
    (feats,) = encoder(wavs, torch.tensor([1.0, 0.5]))
    assert feats.shape == (2, 51, 80)
    valid = feats[1, :26]  # round(0.5 * 51) valid frames
    assert valid.mean().abs() < 1e-4
    assert (valid.std(dim=0) - 1).abs().max() < 0.05
    assert torch.all(feats[1, 26:] == 0)


def test_fbank_encoder_stacks_frames_and_the_mp3s_baseline_runs_at_40_ms():
    wavs = torch.randn(2, 8000)
    wavs[1, 4000:] = 0.0
    lens = torch.tensor([1.0, 0.5])
    (plain,) = FbankEncoder()(wavs, lens)  # (2, 51, 80)
    (stacked,) = FbankEncoder(stack=4)(wavs, lens)
    assert stacked.shape == (2, 13, 320)  # ceil(51 / 4) frames of 4 · 80
    padded = torch.cat([plain, plain.new_zeros(2, 1, 80)], dim=1)  # 52 frames
    assert torch.equal(stacked, padded.reshape(2, 13, 320))
    assert torch.all(stacked[1, 7:] == 0)  # frames 28.. of the half-length row are padding
    baseline = load_mp3s_encoder("fbank", fbank_stack=4)
    assert (baseline.stack, baseline.hidden_size, baseline.downsample_rate) == (4, 320, 640)
    assert load_mp3s_encoder("fbank").stack == 1  # SUPERB's FBANK: 10 ms
    with pytest.raises(ValueError, match="stack must be a positive int"):
        FbankEncoder(stack=0)


# -------------------------------------------------------------------------------- cache


def test_cache_hits_misses_and_encoder_identity(tiny_manifests, tmp_path):
    rows = read_manifest(tiny_manifests / "slurp" / "dev.csv")
    featurizer = SSLFeaturizer(encoder=TinyEncoder())
    cache = LayerFeatureCache(tmp_path, key=encoder_checksum(featurizer.encoder))
    assert cache.fill(featurizer, rows[:2], batch_size=2) == CacheStats(hits=0, misses=2)
    stats = cache.fill(featurizer, rows, batch_size=4)
    assert (stats.hits, stats.misses) == (2, len(rows) - 2)
    stats = cache.fill(featurizer, rows, batch_size=4)
    assert (stats.hits, stats.misses) == (len(rows), 0)

    # The cached features of an utterance are those of the encoder run on it alone.
    wav = read_audio(rows[-1]["wav"]).unsqueeze(0)
    alone = featurizer.encode_layers(wav, torch.ones(1))[0]  # (frames, layers, dim)
    cached = cache.load(rows[-1]["ID"], rows[-1]["wav"])
    assert cached.shape == alone.shape
    assert torch.allclose(cached, alone, atol=2e-2)

    other = TinyEncoder()  # other weights, other cache
    assert encoder_checksum(other) != cache.key
    other_cache = LayerFeatureCache(tmp_path, key=encoder_checksum(other))
    assert not other_cache.has(rows[0]["ID"], rows[0]["wav"])
    with pytest.raises(KeyError, match="not in the feature cache"):
        other_cache.load(rows[0]["ID"], rows[0]["wav"])


def test_cache_keeps_what_it_read_in_memory_within_its_budget(tmp_path):
    cache = LayerFeatureCache(tmp_path, key="k", memory_mb=64 / 2**20)  # 64 bytes
    cache.save("a", "a.wav", torch.ones(4, 2, 4))  # 32 float16 values: 64 bytes
    cache.save("b", "b.wav", torch.ones(1, 1, 1))
    first = cache.load("a", "a.wav")
    first.zero_()  # the caller's tensor is its own
    cache.load("b", "b.wav")  # over the budget: not kept
    assert cache.memory_used_bytes == 64
    cache.path("a", "a.wav").unlink()
    cache.path("b", "b.wav").unlink()
    assert cache.load("a", "a.wav").sum() == 32  # from memory
    with pytest.raises(KeyError, match="not in the feature cache"):
        cache.load("b", "b.wav")
    cache.save("a", "a.wav", torch.full((1, 1, 1), 3.0))  # rewritten: read again
    assert cache.load("a", "a.wav").tolist() == [[[3.0]]] and cache.memory_used_bytes == 2
    with pytest.raises(ValueError, match="memory_mb"):
        LayerFeatureCache(tmp_path, key="k", memory_mb=-1)


# ------------------------------------------------------------------------------- probes


@pytest.mark.parametrize("name", list_probes())
def test_probe_shapes_and_gradients(name):
    small = {
        "bilstm_ctc": {"hidden_size": 4},
        "bilstm_pool": {"hidden_size": 4},
        "contextnet_ctc": {"channels": 8, "num_blocks": 2},
        "lstm_pit": {"hidden_size": 4},
        "xvector": {"channels": [8, 8, 8, 8, 16], "embedding_size": 6, "classifier": "cosine"},
        "ecapa": {"channels": [8, 8, 8, 8, 16], "embedding_size": 6, "attention_channels": 4,
                  "se_channels": 4},
    }.get(name, {})  # fmt: skip
    probe = build_probe(name, input_size=5, num_outputs=3, **small)
    feats, lens = torch.randn(3, 12, 5, requires_grad=True), torch.tensor([1.0, 0.5, 0.75])
    out = probe(feats, lens)
    if probe.kind == "ctc":
        assert out.shape == (3, 12, 3)
        assert torch.allclose(out.exp().sum(-1), torch.ones(3, 12), atol=1e-5)
        out.sum().backward()
    elif probe.kind == "diarization":  # activity logits per speaker and frame, 0 when padded
        assert out.shape == (3, 12, 3) and out[1, 6:].abs().sum() == 0
        out.sum().backward()
    else:
        assert out.shape == (3, 3)
        assert probe.embed(feats, lens).shape == (3, probe.embedding_size)
        probe.loss(out, torch.tensor([0, 1, 2])).backward()
    assert feats.grad is not None and feats.grad.abs().sum() > 0
    assert all(p.grad is not None for p in probe.parameters() if p.requires_grad)


PADDING_PROBES = {
    "linear_ctc": {}, "bilstm_ctc": {"hidden_size": 4}, "meanpool_linear": {},
    "bilstm_pool": {"hidden_size": 4}, "contextnet_ctc": {"channels": 8, "num_blocks": 2},
    "lstm_pit": {"hidden_size": 4},
}  # fmt: skip


@pytest.mark.parametrize("name", PADDING_PROBES)
def test_probe_ignores_padding(name):
    probe = build_probe(name, input_size=5, num_outputs=3, **PADDING_PROBES[name])
    probe.eval()
    feats = torch.randn(2, 10, 5)
    lens = torch.tensor([1.0, 0.6])
    batched = probe(feats, lens)[1]
    alone = probe(feats[1:, :6], torch.ones(1))[0]
    if probe.kind in ("ctc", "diarization"):
        batched = batched[:6]
    assert torch.allclose(batched, alone, atol=1e-5)


def test_unknown_probe_lists_valid_names():
    with pytest.raises(KeyError, match="valid names: bilstm_ctc"):
        build_probe("transformer", input_size=4, num_outputs=2)


# -------------------------------------------------------------------------------- tasks


def test_every_task_has_a_recipe_folder_for_each_probe():
    for name in list_tasks():
        task = get_task(name)
        assert (ROOT / "MP3S" / name / "train.py").is_file()
        for probe in task.probes:
            assert probe in list_probes()
            assert (ROOT / "MP3S" / name / "hparams" / f"{probe}.yaml").is_file()


@pytest.mark.parametrize("fold_by,n_folds", [("session", 5), ("speaker", 5)])
def test_fold_manifests_leave_one_group_out(tiny_manifests, tmp_path, fold_by, n_folds):
    manifests = {s: tiny_manifests / "er" / f"{s}.csv" for s in ("train", "dev", "test")}
    assert resolve_folds("all", manifests, fold_by=fold_by) == list(range(1, n_folds + 1))
    paths = write_fold_manifests(manifests, tmp_path, fold_by=fold_by, fold=2, dev_percent=30)
    splits = {name: read_manifest(path) for name, path in paths.items()}
    column = "session" if fold_by == "session" else "spk_id"
    test_groups = {str(r[column]) for r in splits["test"]}
    assert len(test_groups) == 1
    assert not test_groups & {str(r[column]) for r in splits["train"] + splits["dev"]}
    assert sum(len(rows) for rows in splits.values()) == 30
    with pytest.raises(ValueError, match="fold 6 does not exist"):
        write_fold_manifests(manifests, tmp_path, fold_by=fold_by, fold=6)


# ------------------------------------------------------------------- recipes and runner

# The runner test covers every task's default probe in this process; these subprocess runs of
# the real train.py cover every task's other probe.
SMOKE = [
    ("LibriSpeech", "linear_ctc", "WER"),
    ("CommonVoice", "linear_ctc", "WER"),
    ("VoxCeleb1", "ecapa", "EER"),
    ("SLURP", "bilstm_pool", "accuracy"),
    ("IEMOCAP", "ecapa", "accuracy"),
]


@pytest.mark.parametrize("task,probe,metric", SMOKE)
def test_recipe_smoke(tiny_manifests, tmp_path, task, probe, metric):
    out = tmp_path / "out"
    cmd = [
        sys.executable, str(ROOT / "MP3S" / task / "train.py"),
        str(ROOT / "MP3S" / task / "hparams" / f"{probe}.yaml"),
        f"--manifest_root={tiny_manifests}", f"--output_folder={out}",
        f"--cache_folder={tmp_path / 'cache'}", "--number_of_epochs=2", "--noprogressbar",
    ]  # fmt: skip
    if task == "IEMOCAP":
        cmd += ["--dev_percent=30", "--folds=[3]"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == task and results["probe"] == probe and results["metric"] == metric
    value = results["value"]  # a WER exceeds 100 % when an untrained probe inserts words
    assert math.isfinite(value) and value >= 0.0 and (metric == "WER" or value <= 100.0)
    assert results["layer_weights"] == [1.0]  # fbank: one layer
    log = out / ("fold_3/log.txt" if task == "IEMOCAP" else "train_log.txt")
    losses = [
        float(line.split("train loss: ")[1].split(" ")[0])
        for line in log.open()
        if "train loss" in line
    ]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    lines = log.read_text().splitlines()
    yaml_lines = (out / "hyperparams.yaml").read_text().splitlines()
    if any(line.startswith("checkpoint_selection: last") for line in yaml_lines):
        assert "Epoch loaded: 2" in lines[-1]  # the final epoch is tested, not the best dev one
    if any(line.startswith("lr_schedule: linear") for line in yaml_lines):
        lr = float(next(line for line in yaml_lines if line.startswith("lr: ")).split()[1])
        logged = [float(line.split("lr: ")[1].split(" ")[0]) for line in lines if "lr: " in line]
        assert logged == pytest.approx([lr / 2, lr / 2], rel=1e-2)  # epoch 2 of 2 runs at lr / 2
    if metric == "WER":
        assert losses[1] < losses[0]
        assert (out / "wer.txt").is_file()


def logged_epochs(train_log: Path) -> list[int]:
    """Epochs of the per-epoch lines of an MP3S ``train_log.txt``."""
    if not train_log.is_file():
        return []
    return [
        int(line.split("epoch: ")[1].split(",")[0])
        for line in train_log.open()
        if "epoch: " in line
    ]


def test_killed_probe_training_resumes_from_its_last_checkpoint(tiny_manifests, tmp_path):
    out = tmp_path / "out"
    cmd = [
        sys.executable, str(ROOT / "MP3S" / "SLURP" / "train.py"),
        str(ROOT / "MP3S" / "SLURP" / "hparams" / "meanpool_linear.yaml"),
        f"--manifest_root={tiny_manifests}", f"--output_folder={out}",
        f"--cache_folder={tmp_path / 'cache'}", "--number_of_epochs=60",
        "--checkpoint_selection=dev", "--noprogressbar",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    console = tmp_path / "killed_run.txt"

    def three_epochs_logged() -> bool:
        return len(logged_epochs(out / "train_log.txt")) >= 3

    kill_when(cmd, three_epochs_logged, cwd=tmp_path, env=env, console=console)
    before = logged_epochs(out / "train_log.txt")
    assert before, console.read_text()[-3000:]
    assert before[-1] < 60, "the run ended before it was killed"
    rerun = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = logged_epochs(out / "train_log.txt")[len(before) :]
    assert after[-1] == 60
    assert 1 < after[0] <= before[-1] + 1  # resumed from a checkpoint, not restarted
    assert after == list(range(after[0], 61))
    assert "Loading a checkpoint" in (out / "log.txt").read_text()
    assert json.loads((out / "results.json").read_text())["task"] == "SLURP"


@pytest.mark.parametrize("key", ["lr_schedule", "checkpoint_selection"])
def test_brain_rejects_an_unknown_schedule_or_selection(tmp_path, key):
    from speechbrain_ext.downstream.brains import ClassificationBrain

    hparams = {
        "number_of_epochs": 1, "lr": 0.1, "annealing_factor": 0.5, "lr_schedule": "linear",
        "checkpoint_selection": "last", "train_log": str(tmp_path / "log.txt"),
        "save_folder": str(tmp_path / "save"), "freeze_encoder": True, "cache_features": True,
    }  # fmt: skip
    hparams[key] = "sometimes"
    featurizer = SSLFeaturizer(encoder=FbankEncoder())
    probe = build_probe("meanpool_linear", input_size=80, num_outputs=2)
    with pytest.raises(ValueError, match=f"unknown {key} 'sometimes'"):
        ClassificationBrain(featurizer=featurizer, probe=probe, hparams=hparams, run_opts={})


def test_runner_writes_the_table(tiny_manifests, tmp_path):
    from speechbrain_ext.mp3s.runner import main

    encoder = make_tiny_bestrq(tmp_path / "tiny_bestrq")
    results = tmp_path / "results"
    argv = [
        "--encoder", str(encoder), "--manifest_root", str(tiny_manifests),
        "--work_folder", str(tmp_path / "work"), "--results_folder", str(results),
        "--override", "number_of_epochs=1", "--override", "IEMOCAP:dev_percent=30",
        "--name", "tiny",
    ]  # fmt: skip
    assert main(argv) == 0
    table = (results / "tiny.md").read_text()
    assert "python -m speechbrain_ext.mp3s --encoder " + str(encoder) in table
    assert "| task | probe | metric | encoder | fbank | random |" in table
    for name in list_tasks():
        rows = [f"{name} ({lang})" for lang in get_task(name).languages] or [name]
        for row in rows:
            assert f"| {row} | {get_task(name).probes[0]} |" in table
    assert "| encoder | CommonVoice (eu) | bilstm_ctc | " in table  # layer weights per language
    assert "| encoder | SLURP | meanpool_linear | " in table  # layer weights of the encoder
    assert "| LibriSpeech | bilstm_ctc | WER ↓ (CER) | " in table
    with open(results / "tiny.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 18 and all(row["error"] == "" and row["value"] for row in rows)
    assert sorted(row["language"] for row in rows if row["task"] == "CommonVoice") == [
        "cy", "cy", "cy", "eu", "eu", "eu"
    ]  # fmt: skip
    assert (tmp_path / "work" / "encoder" / "CommonVoice" / "eu" / "bilstm_ctc").is_dir()
    encoder_rows = [row for row in rows if row["encoder"] == "encoder"]
    assert all(len(row["layer_weights"].split()) == 3 for row in encoder_rows)  # front end + 2


def test_fine_tuning_updates_the_encoder(tiny_manifests, tmp_path):
    from speechbrain_ext import load_ssl_encoder

    encoder_folder = make_tiny_bestrq(tmp_path / "tiny_bestrq")
    spec = importlib.util.spec_from_file_location("mp3s_slurp_train", ROOT / "MP3S/SLURP/train.py")
    slurp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(slurp)
    out = tmp_path / "ft"
    results = slurp.main([
        str(ROOT / "MP3S" / "SLURP" / "hparams" / "meanpool_linear.yaml"),
        f"--encoder={encoder_folder}", "--freeze_encoder=False", "--number_of_epochs=1",
        f"--manifest_root={tiny_manifests}", f"--output_folder={out}", "--noprogressbar",
        "--encoder_lr=0.01", f"--cache_folder={tmp_path / 'cache'}",
    ])  # fmt: skip
    assert results["freeze_encoder"] is False
    assert not (tmp_path / "cache").exists()  # fine-tuning never caches features
    (ckpt,) = (out / "save").glob("CKPT+*")
    tuned = torch.load(ckpt / "encoder.ckpt", map_location="cpu")
    original = load_ssl_encoder(encoder_folder).state_dict()
    changed = [k for k, v in tuned.items() if torch.is_tensor(v) and v.is_floating_point()
               and not torch.equal(v, original[k])]  # fmt: skip
    assert changed


# ---------------------------------------------------------------------------- reliability
def poison_checkpoint(folder: Path) -> Path:
    """Put a NaN into the weights of the (only) checkpoint of ``folder``; its model.ckpt."""
    (weights,) = (folder / "save").glob("CKPT+*/model.ckpt")
    state = torch.load(weights, map_location="cpu")
    name = next(k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point())
    state[name] = torch.full_like(state[name], float("nan"))
    torch.save(state, weights)
    return weights


def make_tiny_hubert_run(folder: Path, iterations=(1, 2), trained=(1, 2)) -> Path:
    """A HuBERT run folder: ``iter<N>/hubert_model.json`` and, when trained, ``save/``."""
    from speechbrain.utils.checkpoints import Checkpointer

    from speechbrain_ext.ssl.export import save_model_config
    from speechbrain_ext.ssl.hubert_model import build_hubert_model

    for iteration in iterations:
        model = build_hubert_model(
            "conformer", num_layers=iteration + 1, d_model=32, nhead=4, kernel_size=7,
            num_classes=8, final_dim=16, extractor_channels=32,
        )  # fmt: skip
        save_model_config(model, folder / f"iter{iteration}")
        if iteration in trained:
            Checkpointer(folder / f"iter{iteration}" / "save", {"model": model}).save_checkpoint()
    return folder


def test_nan_weights_are_refused_at_load(tmp_path):
    from speechbrain_ext import load_ssl_encoder
    from speechbrain_ext.downstream.baselines import load_mp3s_encoder
    from speechbrain_ext.ssl.export import load_ssl_model

    folder = make_tiny_bestrq(tmp_path / "diverged")
    weights = poison_checkpoint(folder)
    for load in (load_ssl_encoder, load_ssl_model, load_mp3s_encoder):
        with pytest.raises(ValueError, match="non-finite") as error:
            load(folder)
        assert str(weights) in str(error.value)
    # The random baseline never reads the weights: its configuration still builds.
    assert load_ssl_encoder(folder, pretrained=False).num_layers == 3


def test_non_finite_features_are_refused(tmp_path):
    from speechbrain_ext.downstream.featurizer import NonFiniteFeaturesError

    encoder = TinyEncoder()
    with torch.no_grad():
        encoder.layers[1].bias[0] = float("nan")
    featurizer = SSLFeaturizer(encoder=encoder)
    with pytest.raises(NonFiniteFeaturesError, match=r"layer\(s\) \[2\]"):
        featurizer.encode_layers(torch.randn(2, 1600), torch.ones(2))
    with pytest.raises(NonFiniteFeaturesError):
        featurizer(torch.randn(2, 1600), torch.ones(2))
    cache = LayerFeatureCache(tmp_path, key="tiny")
    with pytest.raises(NonFiniteFeaturesError, match="float16"):  # finite, but overflows fp16
        cache.save("utt1", "a.wav", torch.full((3, 1, 4), 1e6))
    with pytest.raises(NonFiniteFeaturesError):
        cache.save("utt1", "a.wav", torch.full((3, 1, 4), float("nan")))
    assert not cache.has("utt1", "a.wav")
    with pytest.raises(NonFiniteFeaturesError):
        cache.fill(featurizer, [{"ID": "u", "wav": str(write_wav(tmp_path / "u.wav"))}])
    assert not cache.has("u", str(tmp_path / "u.wav"))
    cache.path("old", "b.wav").parent.mkdir(parents=True, exist_ok=True)
    torch.save(torch.full((3, 1, 4), float("nan")).half(), cache.path("old", "b.wav"))
    with pytest.raises(NonFiniteFeaturesError, match="delete"):  # a bad cache is never reused
        cache.load("old", "b.wav")


def write_wav(path: Path, seconds: float = 0.2) -> Path:
    audio_io.save(str(path), 0.1 * torch.randn(1, int(16000 * seconds)), 16000)
    return path


def test_misspelt_or_unrelated_paths_never_load_a_parent_folders_model(tmp_path):
    from speechbrain_ext import load_ssl_encoder
    from speechbrain_ext.downstream.baselines import load_mp3s_encoder

    folder = make_tiny_bestrq(tmp_path / "bestrq")
    (folder / "logs").mkdir()
    (ckpt,) = (folder / "save").glob("CKPT+*")
    for path in (folder / "sav", folder / "save" / "CKPT+typo", folder / "logs"):
        for pretrained in (True, False):
            with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
                load_mp3s_encoder(path, pretrained=pretrained)
    # The documented cases still work.
    for path in (folder, ckpt, ckpt / "model.ckpt", folder / "bestrq_model.json"):
        assert load_ssl_encoder(path).num_layers == 3


def test_hubert_run_folders_load_their_latest_trained_iteration(tmp_path):
    from speechbrain_ext import load_ssl_encoder
    from speechbrain_ext.ssl.export import latest_iteration

    run = make_tiny_hubert_run(tmp_path / "hubert", iterations=(1, 2, 3), trained=(1, 2))
    assert latest_iteration(run) == run / "iter2"  # iter3 has no checkpoint yet
    assert load_ssl_encoder(run).num_layers == 4  # iter2: front end + 3 layers
    (ckpt,) = (run / "iter1" / "save").glob("CKPT+*")
    assert load_ssl_encoder(ckpt).num_layers == 3
    assert load_ssl_encoder(run / "iter1").num_layers == 3
    with pytest.raises(FileNotFoundError, match=re.escape(str(run / "iter4"))):
        load_ssl_encoder(run / "iter4")


def test_runner_checks_the_encoder_before_any_baseline(tiny_manifests, tmp_path, capsys):
    from speechbrain_ext.mp3s.runner import main

    diverged = make_tiny_bestrq(tmp_path / "diverged")
    poison_checkpoint(diverged)
    for encoder, message in [(tmp_path / "no_such_model", "no such"), (diverged, "non-finite")]:
        work, results = tmp_path / f"work_{encoder.name}", tmp_path / f"res_{encoder.name}"
        argv = [
            "--encoder", str(encoder), "--tasks", "SLURP", "--manifest_root", str(tiny_manifests),
            "--work_folder", str(work), "--results_folder", str(results), "--jobs", "1",
        ]  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert f"--encoder {encoder}" in err and message in err
        assert not work.exists() and not results.exists()  # no baseline ran, no table written


def test_a_run_folder_left_by_other_encoder_weights_is_refused(tiny_manifests, tmp_path):
    from speechbrain_ext.mp3s.runner import Variant, run_one

    model = make_tiny_bestrq(tmp_path / "model")
    options = dict(
        work_folder=tmp_path / "work", data_folders={}, manifest_root=tiny_manifests,
        overrides=["number_of_epochs=1"],
    )  # fmt: skip
    variant = Variant("encoder", str(model))
    first = run_one("mp3s/SLURP", "meanpool_linear", variant, **options)
    assert not first.failed, first.error
    folder = tmp_path / "work" / "encoder" / "SLURP" / "meanpool_linear"
    record = json.loads((folder / "run.json").read_text())
    assert set(record["encoder"]["sha256"]) == {"config", "weights"} and "manifests" in record
    again = run_one("mp3s/SLURP", "meanpool_linear", variant, **options)  # same: resumes
    assert not again.failed and again.value == first.value
    # The model is retrained under the same path: its probe folder must not be reused.
    (weights,) = (model / "save").glob("CKPT+*/model.ckpt")
    state = torch.load(weights, map_location="cpu")
    name = next(k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point())
    state[name] = state[name] + 1.0
    torch.save(state, weights)
    before = sorted(p.name for p in folder.rglob("*"))
    stale = run_one("mp3s/SLURP", "meanpool_linear", variant, **options)
    assert stale.failed and stale.value is None
    assert "RunFolderMismatchError" in stale.error and "encoder.sha256.weights" in stale.error
    assert f"delete {folder}" in stale.error
    assert sorted(p.name for p in folder.rglob("*")) == before  # nothing touched
    # Other settings in the same folder are refused too (a resumed probe would mix them).
    options["overrides"] = ["number_of_epochs=2"]
    state[name] = state[name] - 1.0
    torch.save(state, weights)
    other = run_one("mp3s/SLURP", "meanpool_linear", variant, **options)
    assert other.failed and "hparams.number_of_epochs: 1 there, 2 now" in other.error
    # A folder holding a run but no record (an earlier version's) cannot be checked.
    (folder / "run.json").unlink()
    options["overrides"] = ["number_of_epochs=1"]
    legacy = run_one("mp3s/SLURP", "meanpool_linear", variant, **options)
    assert legacy.failed and "no run.json record" in legacy.error


def test_a_failed_run_is_reported_as_failed_never_as_a_score(tiny_manifests, tmp_path, monkeypatch):
    from speechbrain_ext.downstream import grid
    from speechbrain_ext.mp3s.runner import RunResult, Variant, run_one, write_tables

    diverged = make_tiny_bestrq(tmp_path / "diverged")
    poison_checkpoint(diverged)
    options = dict(
        work_folder=tmp_path / "work", data_folders={}, manifest_root=tiny_manifests,
        overrides=["number_of_epochs=1"],
    )  # fmt: skip
    failed = run_one("mp3s/SLURP", "meanpool_linear", Variant("encoder", str(diverged)), **options)
    assert failed.failed and "non-finite" in failed.error and failed.value is None
    # A task that "succeeds" with a NaN metric or NaN layer weights is a failure too.
    monkeypatch.setattr(
        grid, "run_task", lambda *a: {"value": float("nan"), "layer_weights": [float("nan")] * 3}
    )
    nan_score = run_one("mp3s/SLURP", "meanpool_linear", Variant("random", "x", False), **options)
    assert nan_score.failed and "not a finite number" in nan_score.error
    good = RunResult(
        variant=Variant("fbank", "fbank"), task="SLURP", probe="meanpool_linear",
        metric="accuracy", value=42.0, layer_weights=[1.0],
    )  # fmt: skip
    md, csv_path = write_tables([failed, good, nan_score], tmp_path / "res", name="t", command="c")
    table = md.read_text()
    assert "| SLURP | meanpool_linear | accuracy ↑ | failed | **42.00** | failed |" in table
    assert "nan" not in table.split("## Runs")[0].lower()
    assert "| encoder | SLURP | meanpool_linear | 0 | failed: ValueError: " in table
    with open(csv_path) as handle:
        rows = {row["encoder"]: row for row in csv.DictReader(handle)}
    for label in ("encoder", "random"):
        assert rows[label]["value"] == "" and rows[label]["layer_weights"] == ""
        assert rows[label]["status"].startswith("failed: ") and rows[label]["error"]
    assert rows["fbank"]["status"] == "ok" and rows["fbank"]["value"] == "42.0000"


def make_tiny_hubert(folder: Path) -> Path:
    """A HuBERT run folder (one trained iteration) that load_ssl_encoder reads (random weights)."""
    from speechbrain.utils.checkpoints import Checkpointer

    from speechbrain_ext.ssl.export import save_model_config
    from speechbrain_ext.ssl.hubert_model import build_hubert_model

    model = build_hubert_model(
        "conformer", num_classes=8, num_layers=2, d_model=32, nhead=4, kernel_size=7,
        extractor_channels=16, final_dim=8,
    )  # fmt: skip
    save_model_config(model, folder / "iter1")
    Checkpointer(folder / "iter1" / "save", {"model": model}).save_checkpoint()
    return folder


def test_a_hubert_run_folder_is_an_mp3s_encoder(tiny_manifests, tmp_path):
    encoder_folder = make_tiny_hubert(tmp_path / "tiny_hubert")
    spec = importlib.util.spec_from_file_location("mp3s_slurp_h", ROOT / "MP3S/SLURP/train.py")
    slurp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(slurp)
    results = slurp.main([
        str(ROOT / "MP3S" / "SLURP" / "hparams" / "meanpool_linear.yaml"),
        f"--encoder={encoder_folder}", "--number_of_epochs=1", f"--manifest_root={tiny_manifests}",
        f"--output_folder={tmp_path / 'out'}", "--noprogressbar",
        f"--cache_folder={tmp_path / 'cache'}",
    ])  # fmt: skip
    assert math.isfinite(results["value"]) and 0.0 <= results["value"] <= 100.0
    assert len(results["layer_weights"]) == 3  # the CNN's projection + 2 encoder layers
