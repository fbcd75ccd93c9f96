"""HuBERT: masking, the waveform front end, the model, k-means targets, cluster quality, export."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from speechbrain.utils.checkpoints import Checkpointer

from speechbrain_ext.ssl.cluster_quality import cluster_quality, frame_phones
from speechbrain_ext.ssl.export import load_ssl_encoder, load_ssl_model, save_model_config
from speechbrain_ext.ssl.hubert import CosineClassifier, compute_hubert_mask
from speechbrain_ext.ssl.hubert_model import build_hubert_model
from speechbrain_ext.ssl.targets import (
    LayerFeatures,
    MfccFeatures,
    frames_of,
    make_targets,
    read_labels,
)
from speechbrain_ext.ssl.waveform import WaveformFrontEnd

TINY = dict(num_layers=2, d_model=32, nhead=4, d_ffn=64, extractor_channels=16, final_dim=8)
STUDY_A = ["hubert_base_transformer", "conformer_s", "squeezeformer_xs", "sparseformer_dn_s",
           "sparseformer_sw_s"]  # fmt: skip


def tiny_model(encoder="transformer", num_classes=10, **overrides):
    return build_hubert_model(encoder, num_classes=num_classes, **{**TINY, **overrides})


# ---------------------------------------------------------------------------- masking


def test_mask_covers_about_half_as_hubert_defines_p():
    g = torch.Generator().manual_seed(0)
    lengths = torch.full((200,), 500)
    mask = compute_hubert_mask(lengths, max_len=500, mask_prob=0.8, mask_length=10, generator=g)
    # 0.08 spans per frame, overlapping: 1 - exp(-0.8) = 0.55 of the frames
    assert 0.5 < float(mask.float().mean()) < 0.6


def test_mask_respects_lengths_min_masks_and_seeds():
    lengths = torch.tensor([300, 40, 12, 5])
    masks = [
        compute_hubert_mask(lengths, max_len=300, mask_prob=0.8, mask_length=10, min_masks=2,
                            generator=torch.Generator().manual_seed(3))
        for _ in range(2)
    ]  # fmt: skip
    assert torch.equal(masks[0], masks[1])
    for row, length in zip(masks[0], lengths):
        assert not bool(row[length:].any())
    assert int(masks[0][2].sum()) >= 10  # 12 frames: still at least one whole span
    assert not bool(masks[0][3].any())  # shorter than a span: nothing masked
    with pytest.raises(ValueError, match="mask_prob"):
        compute_hubert_mask(lengths, max_len=300, mask_prob=1.5, mask_length=10)


def test_cosine_head_is_cosine_similarity_over_temperature():
    head = CosineClassifier(d_model=6, num_classes=4, final_dim=5, temperature=0.1)
    x = torch.randn(2, 3, 6)
    projected = head.projection(x)
    expected = (
        torch.nn.functional.cosine_similarity(
            projected.unsqueeze(-2), head.label_embeddings, dim=-1
        )
        / 0.1
    )
    assert torch.allclose(head(x), expected, atol=1e-5)


# ---------------------------------------------------------------------------- model


@pytest.mark.parametrize("encoder", ["transformer", "conformer", "squeezeformer", "sparse"])
def test_encoder_is_padding_invariant(encoder):
    kind, extra = ("transformer", {"mixer": "sparse"}) if encoder == "sparse" else (encoder, {})
    model = tiny_model(kind, dropout=0.0, input_dropout=0.0, **extra).eval()
    long, short = torch.randn(16000), torch.randn(9000)
    batch = torch.stack([long, torch.nn.functional.pad(short, (0, 7000))])
    batch[1, 9000:] = 1e3  # whatever the padding holds
    with torch.no_grad():
        padded = model.encode(batch, torch.tensor([1.0, 9000 / 16000]))
        alone = model.encode(short.unsqueeze(0), torch.ones(1))
    frames = alone[-1].shape[1]
    assert frames == frames_of(9000)
    for layer_padded, layer_alone in zip(padded, alone):
        assert torch.allclose(layer_padded[1, :frames], layer_alone[0], atol=1e-4)


def test_forward_loss_gradients_and_feature_grad_mult():
    grads = {}
    for mult in (1.0, 0.1):
        torch.manual_seed(0)
        model = tiny_model(feature_grad_mult=mult, dropout=0.0, input_dropout=0.0)
        out = model(torch.randn(2, 8000), torch.ones(2), targets=torch.randint(10, (2, 24)),
                    generator=torch.Generator().manual_seed(0))  # fmt: skip
        out["loss"].backward()
        assert all(p.grad is not None for p in model.parameters())
        conv = model.encoder.front_end.extractor.conv_layers[0].conv.weight
        grads[mult] = conv.grad.clone()
        assert int(out["num_masked"]) == int(out["mask"].sum()) > 0
        assert float(out["feature_penalty"]) > 0
    assert torch.allclose(grads[0.1], 0.1 * grads[1.0], rtol=1e-4, atol=1e-8)


def test_targets_that_do_not_fit_the_audio_are_an_error():
    model = tiny_model()
    with pytest.raises(ValueError, match="targets must be"):
        model(torch.randn(1, 8000), torch.ones(1), targets=torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="shorter than the CNN"):
        WaveformFrontEnd(d_model=8, channels=4)(torch.randn(1, 300), torch.ones(1))


@pytest.mark.parametrize("preset", STUDY_A)
def test_study_a_presets_build_as_hubert_models(preset):
    model = build_hubert_model(preset, num_classes=100, device="meta")
    assert model.encoder.downsample_rate == 320
    assert model.config["encoder"] == preset
    assert model.num_classes == 100


# ---------------------------------------------------------------------------- targets


def _tiny_manifests(root, *, alignments=True):
    rng = np.random.default_rng(0)
    manifests, align = {}, {}
    for split, count in (("train", 6), ("valid", 2)):
        lines = ["ID,duration,wav,spk_id"]
        for index in range(count):
            samples = 8000 + 800 * index
            t = np.arange(samples) / 16000
            wav = 0.1 * np.sin(2 * np.pi * (150 + 50 * index) * t) + 0.01 * rng.normal(size=samples)
            path = root / f"{split}{index}.wav"
            sf.write(path, wav.astype("float32"), 16000)
            lines.append(f"{split}{index},{samples / 16000},{path},s{index}")
            align[f"{split}{index}"] = [[0.1, 0.3, "a"], [0.3, 0.45, "b"]]
        manifests[split] = root / f"{split}.csv"
        manifests[split].write_text("\n".join(lines) + "\n")
    if alignments:
        (root / "alignments.json").write_text(json.dumps(align))
    return manifests


def test_make_targets_labels_every_split_once_and_scores_them(tmp_path):
    manifests = _tiny_manifests(tmp_path)
    folder = tmp_path / "targets"
    info = make_targets(folder, manifests, features=MfccFeatures(), source="mfcc",
                        num_clusters=4, kmeans_fraction=0.5)  # fmt: skip
    assert info["fit_frames"] == sum(frames_of(8000 + 800 * i) for i in (2, 5)) or (
        info["fit_frames"] > 0
    )
    labels = read_labels(folder / "valid.npz")
    assert sorted(labels) == ["valid0", "valid1"]
    assert [len(v) for v in labels.values()] == [frames_of(8000), frames_of(8800)]
    assert all(int(v.max()) < 4 for v in labels.values())
    for split in ("train", "valid"):
        quality = info["cluster_quality"][split]
        assert 0.0 <= quality["pnmi"] <= 1.0 and quality["frames"] > 0
    assert (folder / "cluster_quality.md").read_text().count("|") > 10
    # reused as they are; other settings are an error, not a silent reuse
    mtime = (folder / "valid.npz").stat().st_mtime_ns
    assert make_targets(folder, manifests, features=MfccFeatures(), source="mfcc",
                        num_clusters=4, kmeans_fraction=0.5) == info  # fmt: skip
    assert (folder / "valid.npz").stat().st_mtime_ns == mtime
    with pytest.raises(RuntimeError, match="num_clusters"):
        make_targets(folder, manifests, features=MfccFeatures(), source="mfcc", num_clusters=5,
                     kmeans_fraction=0.5)  # fmt: skip


def test_cluster_quality_is_skipped_without_alignments_and_layer_features(tmp_path):
    manifests = _tiny_manifests(tmp_path, alignments=False)
    model = tiny_model()
    features = LayerFeatures(model, layer=1)
    assert features(torch.randn(8000)).shape == (frames_of(8000), 32)
    with pytest.raises(ValueError, match="layer must be in"):
        LayerFeatures(model, layer=3)
    info = make_targets(tmp_path / "t", manifests, features=features, source="layer 1",
                        num_clusters=3, kmeans_fraction=1.0)  # fmt: skip
    assert "skipped" in info["cluster_quality"]["valid"]


def test_cluster_quality_perfect_and_independent_labels():
    phones = [["a"] * 5 + ["b"] * 5]
    perfect = cluster_quality(phones, [[0] * 5 + [1] * 5])
    assert perfect["pnmi"] == pytest.approx(1.0) and perfect["phone_purity"] == 1.0
    independent = cluster_quality([["a", "a", "b", "b"]], [[0, 1, 0, 1]])
    assert independent["pnmi"] == pytest.approx(0.0, abs=1e-3)
    assert frame_phones([(0.0, 1.0, "x")], num_frames=3) == ["x", "x", "x"]


# ---------------------------------------------------------------------------- export


def test_load_ssl_encoder_takes_a_hubert_run_and_its_latest_iteration(tmp_path):
    models = {}
    for iteration, classes in ((1, 10), (2, 12)):
        folder = tmp_path / f"iter{iteration}"
        models[iteration] = tiny_model(num_classes=classes)
        save_model_config(models[iteration], folder)
        Checkpointer(folder / "save", {"model": models[iteration]}).save_checkpoint()
    assert (tmp_path / "iter1" / "hubert_model.json").is_file()
    assert load_ssl_model(tmp_path).num_classes == 12  # the run folder: the latest iteration
    assert load_ssl_model(tmp_path / "iter1").num_classes == 10
    encoder = load_ssl_encoder(tmp_path)
    assert (encoder.num_layers, encoder.hidden_size, encoder.downsample_rate) == (3, 32, 320)
    wavs = torch.randn(1, 8000)
    expected = models[2].eval().encode(wavs, torch.ones(1))[-1]
    assert torch.allclose(encoder(wavs, torch.ones(1))[-1], expected, atol=1e-5)
    random = load_ssl_encoder(tmp_path, pretrained=False)
    assert not torch.allclose(random(wavs, torch.ones(1))[-1], expected)
