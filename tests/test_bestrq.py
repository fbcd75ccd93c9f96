"""The BEST-RQ objective, front ends, model and export (speechbrain_ext.ssl)."""

import json

import pytest
import torch
from speechbrain.nnet.quantisers import RandomProjectionQuantizer as SBQuantizer
from speechbrain.utils.checkpoints import Checkpointer

from speechbrain_ext.nnet.encoders import preset_config
from speechbrain_ext.ssl.bestrq import (
    BestRQ,
    RandomProjectionQuantizer,
    compute_span_mask,
    stack_frames,
)
from speechbrain_ext.ssl.evaluate import masked_prediction_accuracy, random_init_like
from speechbrain_ext.ssl.export import load_ssl_encoder, resolve_model_files, save_model_config
from speechbrain_ext.ssl.frontend import FilterbankFeatures, build_front_end, list_front_ends
from speechbrain_ext.ssl.model import build_bestrq_model, encoder_config

TINY = dict(num_layers=2, d_model=32, nhead=4, d_ffn=64, kernel_size=7, codebook_size=32)


def tiny_model(**overrides):
    config = {"encoder": "conformer", "mixer": "fastformer", **TINY, **overrides}
    return build_bestrq_model(**config)


# ---------------------------------------------------------------- quantizer
def test_quantizer_matches_speechbrain_and_is_frozen():
    quantizer = RandomProjectionQuantizer(input_dim=320, codebook_dim=16, codebook_size=512)
    x = torch.randn(2, 30, 320)
    assert torch.equal(quantizer(x), SBQuantizer.forward(quantizer, x))
    assert list(quantizer.parameters()) == []  # frozen: buffers only
    assert torch.allclose(quantizer.CB.norm(dim=-1), torch.ones(512))


def test_quantizer_normalises_over_features_not_time():
    # Rescaling each frame by its own positive factor must not change its code
    # (normalisation over the feature dim); normalising over time would.
    quantizer = RandomProjectionQuantizer(input_dim=20, codebook_dim=4, codebook_size=64)
    x = torch.randn(3, 50, 20)
    scale = torch.rand(3, 50, 1) * 10 + 0.1
    assert torch.equal(quantizer(x), quantizer(x * scale))
    # ...and a frame's code does not depend on the other frames.
    assert torch.equal(quantizer(x)[:, :10], quantizer(x[:, :10]))


def test_quantizer_seeded():
    a = RandomProjectionQuantizer(input_dim=8, codebook_dim=4, codebook_size=16, seed=3)
    b = RandomProjectionQuantizer(input_dim=8, codebook_dim=4, codebook_size=16, seed=3)
    c = RandomProjectionQuantizer(input_dim=8, codebook_dim=4, codebook_size=16, seed=4)
    assert torch.equal(a.P, b.P) and torch.equal(a.CB, b.CB)
    assert not torch.equal(a.P, c.P)
    with pytest.raises(ValueError, match="input features"):
        a(torch.randn(1, 2, 9))


def test_stack_frames_order():
    x = torch.arange(2 * 8 * 3.0).view(2, 8, 3)
    stacked = stack_frames(x, 4)
    assert stacked.shape == (2, 2, 12)
    assert torch.equal(stacked[1, 1], x[1, 4:8].reshape(-1))


# ---------------------------------------------------------------- masking
def test_span_mask_statistics_and_alignment():
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([2000, 1000, 37, 3])
    mask = compute_span_mask(lengths, max_len=2000, mask_prob=0.15, mask_length=4, generator=g)
    assert mask.shape == (4, 2000) and mask.dtype == torch.bool
    assert 0.55 < mask[0].float().mean() < 0.65  # ~60 %, as in SpeechBrain
    for b, length in enumerate(lengths.tolist()):
        assert not mask[b, length:].any()  # never on padding
    assert mask[2].any()  # at least one span on a short utterance
    assert not mask[3].any()  # shorter than a span: nothing to mask
    starts = mask[:, 1:] & ~mask[:, :-1]
    assert not starts[:, [i - 1 for i in range(1, 2000) if i % 4]].any()  # 4-aligned spans
    again = compute_span_mask(
        lengths,
        max_len=2000,
        mask_prob=0.15,
        mask_length=4,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(mask, again)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"mask_prob": 1.5}, "mask_prob"), ({"mask_length": 0}, "mask_length")],
)
def test_span_mask_rejects_bad_options(kwargs, message):
    options = {"mask_prob": 0.15, "mask_length": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        compute_span_mask(torch.tensor([10]), max_len=10, **options)


def test_noise_replaces_masked_frames_only():
    objective = BestRQ(input_dim=80, codebook_size=16, noise_std=0.1)
    feats = torch.full((2, 400, 80), 5.0)
    masked, mask = objective.mask(feats, torch.tensor([400, 200]))
    frame_mask = mask.repeat_interleave(4, dim=1)  # mask_length == stack: same spans
    assert torch.equal(masked[~frame_mask], feats[~frame_mask])
    noise = masked[frame_mask]
    assert noise.abs().max() < 1.0 and 0.08 < noise.std() < 0.12
    assert not mask[1, 50:].any()


def test_loss_only_on_masked_frames():
    objective = BestRQ(input_dim=8, codebook_size=16)
    logits = torch.randn(2, 10, 16)
    targets = torch.randint(16, (2, 10))
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[:, :4] = True
    changed = logits.clone()
    changed[:, 4:] = torch.randn(2, 6, 16)
    assert torch.equal(
        objective.loss(logits, targets, mask), objective.loss(changed, targets, mask)
    )
    none = objective.loss(logits.requires_grad_(), targets, torch.zeros_like(mask))
    assert float(none.detach()) == 0.0 and none.requires_grad


# ---------------------------------------------------------------- features, front ends
def test_front_ends_shapes_and_registry():
    assert list_front_ends() == ["conv", "stack"]
    feats = torch.randn(2, 44, 80)
    for name in list_front_ends():
        assert build_front_end(name, n_mels=80, d_model=24)(feats).shape == (2, 11, 24)
    with pytest.raises(KeyError, match="valid names: conv, stack"):
        build_front_end("stacking", n_mels=80, d_model=8)


def test_global_normalisation_statistics_travel_in_state_dict():
    model = tiny_model(norm_type="global")
    model.train()
    model(torch.randn(2, 8000) * 3, torch.ones(2))
    clone = tiny_model(norm_type="global")
    clone.load_state_dict(model.state_dict())
    norm, cloned = model.encoder.features.normalize, clone.encoder.features.normalize
    assert cloned.count == norm.count > 0
    assert torch.equal(cloned.glob_std, norm.glob_std)


def test_features_reject_bad_shape():
    with pytest.raises(ValueError, match="batch, samples"):
        FilterbankFeatures()(torch.randn(2, 1, 800), torch.ones(2))


# ---------------------------------------------------------------- model
def test_forward_outputs_and_targets_from_clean_features():
    model = tiny_model()
    wavs, wav_lens = torch.randn(3, 12000), torch.tensor([1.0, 0.8, 0.3])
    out = model(wavs, wav_lens)
    frames = out["targets"].shape[1]
    assert out["logits"].shape == (3, frames, 32)
    assert out["mask"].shape == (3, frames) and out["mask"].dtype == torch.bool
    feats, _ = model.encoder.extract(wavs, wav_lens)
    assert torch.equal(out["targets"], model.objective.targets(feats))
    assert int(out["num_masked"]) == int(out["mask"].sum()) > 0
    assert not out["mask"][2, frames // 3 + 1 :].any()
    out["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())


def test_encode_lists_front_end_then_every_layer():
    model = tiny_model(num_layers=3)
    hidden = model.encode(torch.randn(2, 16000), torch.ones(2))
    assert len(hidden) == model.encoder.num_layers == 4
    assert all(h.shape == (2, 26, 32) for h in hidden)
    assert model.encoder.downsample_rate == 640 and model.encoder.hidden_size == 32


@pytest.mark.parametrize("front_end", ["conv", "stack"])
def test_encode_of_padded_batch_matches_single_utterance(front_end):
    torch.manual_seed(0)
    model = tiny_model(front_end=front_end).eval()
    long, short = torch.randn(1, 16000), torch.randn(1, 9600)
    batch = torch.cat([long, torch.nn.functional.pad(short, (0, 6400))])
    with torch.no_grad():
        together = model.encode(batch, torch.tensor([1.0, 0.6]))[-1]
        alone = model.encode(short, torch.ones(1))[-1]
    torch.testing.assert_close(together[1, : alone.shape[1]], alone[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("samples", [7990, 8080, 8130, 12345])
def test_features_of_padded_batch_equal_the_utterance_alone(samples):
    """Lengths whose relative length × frames rounds to another frame count than the utterance
    has alone: the sentence normalisation must still take exactly its own frames."""
    torch.manual_seed(0)
    model = tiny_model(front_end="conv").eval()
    wavs = torch.zeros(2, 16000)
    wavs[0], wavs[1, :samples] = torch.randn(16000), torch.randn(samples)
    wav_lens = torch.tensor([1.0, samples / 16000])
    with torch.no_grad():
        feats, lengths = model.encoder.extract(wavs, wav_lens)
        alone, alone_lengths = model.encoder.extract(wavs[1:, :samples], torch.ones(1))
        together = model.encode(wavs, wav_lens)[-1]
        encoded_alone = model.encode(wavs[1:, :samples], torch.ones(1))[-1]
    assert int(lengths[1]) == int(alone_lengths[0]) == samples // 160 + 1
    frames = int(lengths[1])
    torch.testing.assert_close(feats[1, :frames], alone[0, :frames], atol=1e-5, rtol=1e-5)
    assert float(feats[1, frames:].abs().max()) == 0.0
    valid = encoded_alone.shape[1]
    torch.testing.assert_close(together[1, :valid], encoded_alone[0], atol=1e-4, rtol=1e-4)


def test_presets_and_overrides():
    cfg = encoder_config("bestrq_base_fastformer", d_model=144, nhead=None)
    assert (
        cfg["d_model"] == 144 and cfg["nhead"] == preset_config("bestrq_base_fastformer")["nhead"]
    )
    swapped = encoder_config("bestrq_base_mhsa", encoder_kind="transformer", num_layers=2)
    assert swapped["kind"] == "transformer" and "kernel_size" not in swapped
    assert swapped["mixer"] == "mhsa" and swapped["num_layers"] == 2
    model = build_bestrq_model(
        "bestrq_base_fastformer",
        encoder_kind="transformer",
        num_layers=1,
        d_model=16,
        nhead=2,
        d_ffn=32,
        codebook_size=8,
        front_end="stack",
    )
    assert type(model.encoder.encoder).__name__ == "TransformerEncoder"
    with pytest.raises(KeyError, match="valid names"):
        build_bestrq_model("bestrq_base_fastformr")


def test_config_is_json_and_rebuilds():
    model = tiny_model()
    config = json.loads(json.dumps(model.config))
    rebuilt = build_bestrq_model(**config)
    assert rebuilt.load_state_dict(model.state_dict()).missing_keys == []


# ---------------------------------------------------------------- evaluation, export
def test_random_init_has_same_targets_other_weights():
    model = tiny_model()
    random = random_init_like(model, seed=1)
    assert torch.equal(random.objective.quantizer.CB, model.objective.quantizer.CB)
    assert not torch.equal(random.head.weight, model.head.weight)
    batches = [(torch.randn(2, 8000), torch.tensor([1.0, 0.5]))]
    a = masked_prediction_accuracy(model, batches, seed=0, constant_codes={"zero": 0})
    b = masked_prediction_accuracy(random, batches, seed=0)
    assert a["num_masked"] == b["num_masked"] > 0
    assert 0.0 <= a["constant_accuracy"]["zero"] <= 1.0


def test_load_ssl_encoder_from_every_kind_of_path(tmp_path):
    model = tiny_model()
    save_model_config(model, tmp_path)
    Checkpointer(tmp_path / "save", {"model": model}).save_checkpoint()
    ckpt_dir = next((tmp_path / "save").glob("CKPT+*"))
    wavs = torch.randn(1, 8000)
    model.eval()
    with torch.no_grad():
        expected = model.encode(wavs, torch.ones(1))[-1]
    for path in (tmp_path, ckpt_dir, ckpt_dir / "model.ckpt", tmp_path / "bestrq_model.json"):
        encoder = load_ssl_encoder(str(path))
        assert not encoder.training
        with torch.no_grad():
            torch.testing.assert_close(encoder(wavs, torch.ones(1))[-1], expected)
    assert resolve_model_files(tmp_path)[1] == ckpt_dir / "model.ckpt"
    random = load_ssl_encoder(tmp_path, pretrained=False)
    assert random.num_layers == 3
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_ssl_encoder(tmp_path / "missing")
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="bestrq_model.json"):
        load_ssl_encoder(tmp_path / "a" / "b" / "c")


def test_atomic_checkpointer_never_exposes_a_half_written_checkpoint(tmp_path):
    from speechbrain_ext.ssl.checkpoints import AtomicCheckpointer

    layer = torch.nn.Linear(2, 2)
    checkpointer = AtomicCheckpointer(tmp_path, recoverables={"layer": layer})
    checkpointer.save_checkpoint(meta={"step": 1})

    def killed(obj, path):
        raise KeyboardInterrupt("killed while saving")

    checkpointer.add_recoverable("other", torch.nn.Linear(1, 1), custom_save_hook=killed)
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save_checkpoint(meta={"step": 2})
    assert [c.meta["step"] for c in checkpointer.list_checkpoints()] == [1]
    assert Checkpointer(tmp_path).find_checkpoint().meta["step"] == 1


# ---------------------------------------------------------------- throughput benchmark
def test_throughput_benchmark_quick(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/bestrq_throughput.py",
            "--quick",
            "--out",
            str(tmp_path),
            "--variants",
            "eager",
            "fused",
            "--rounds",
            "2",
        ],  # fmt: skip
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = (tmp_path / "bestrq_throughput_quick.csv").read_text().splitlines()
    assert rows[0].startswith("model,compiled,warmup_s,params_m,step_s,audio_s_per_s,peak_mb")
    assert [row.split(",")[0] for row in rows[1:]] == [
        "speechbrain_mhsa",  # always as its recipe runs it
        "ours_mhsa",
        "ours_mhsa+fused",
        "ours_fastformer",
        "ours_fastformer+fused",
    ]
    assert all(float(row.split(",")[5]) > 0 for row in rows[1:])
    import csv

    with open(tmp_path / "bestrq_throughput_quick.csv") as f:
        table = {row["model"]: row for row in csv.DictReader(f)}
    # every step's FLOP is counted, and the same model counts the same FLOP with either optimiser
    assert all(int(row["flop"]) > 0 and float(row["pct_of_peak"]) > 0 for row in table.values())
    assert table["ours_mhsa"]["flop"] == table["ours_mhsa+fused"]["flop"]
    assert float(table["ours_mhsa"]["peak_gflops"]) > 0
    md = (tmp_path / "bestrq_throughput_quick.md").read_text()
    assert "fastest of 2 rounds" in md and "round 2/2, ours_fastformer+fused" in proc.stdout
    assert "speed vs SpeechBrain" in md and "% of peak" in md and "Measured peak:" in md


def test_channels_last_front_end_equals_speechbrains_conv2d_outputs_and_gradients():
    """The conv front end's ChannelsLastConv2d against SpeechBrain's own Conv2d forward, same
    weights: outputs and every gradient, on a batch with an odd frequency count."""
    from speechbrain.nnet.CNN import Conv2d

    from speechbrain_ext.ssl.frontend import ChannelsLastConv2d, ConvFrontEnd

    torch.manual_seed(0)
    fast = ConvFrontEnd(n_mels=30, d_model=16, dropout=0.0)
    convs = [m for m in fast.modules() if isinstance(m, ChannelsLastConv2d)]
    assert len(convs) == 2
    reference = ConvFrontEnd(n_mels=30, d_model=16, dropout=0.0)
    reference.load_state_dict(fast.state_dict())
    for module in reference.modules():
        if isinstance(module, ChannelsLastConv2d):
            module.forward = Conv2d.forward.__get__(module)  # SpeechBrain's own path
    x = torch.randn(3, 44, 30, requires_grad=True)  # (batch, time, n_mels)
    out, ref = fast(x), reference(x)
    assert out.shape == (3, 11, 16)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    grads = torch.autograd.grad(out.square().sum(), [x, *fast.parameters()])
    ref_grads = torch.autograd.grad(ref.square().sum(), [x, *reference.parameters()])
    for grad, ref_grad in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(grad, ref_grad, atol=1e-4, rtol=1e-4)
