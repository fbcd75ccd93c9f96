"""s3prl upstream contract of our SSL encoders, on tiny random BEST-RQ and HuBERT run folders."""

from pathlib import Path

import pytest
import torch

from speechbrain_ext.superb.s3prl_upstream import SSLUpstreamExpert, speechbrain_ext_ssl


def make_bestrq_folder(folder: Path) -> Path:
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


def make_hubert_folder(folder: Path) -> Path:
    from speechbrain.utils.checkpoints import Checkpointer

    from speechbrain_ext.ssl.export import save_model_config
    from speechbrain_ext.ssl.hubert_model import build_hubert_model

    model = build_hubert_model(
        "conformer", num_layers=2, d_model=32, nhead=4, kernel_size=7, num_classes=8,
        final_dim=16, extractor_channels=32,
    )  # fmt: skip
    save_model_config(model, folder / "iter1")
    Checkpointer(folder / "iter1" / "save", {"model": model}).save_checkpoint()
    return folder


@pytest.fixture(scope="module", params=["bestrq", "hubert"])
def upstream(request, tmp_path_factory):
    torch.manual_seed(0)
    make = make_bestrq_folder if request.param == "bestrq" else make_hubert_folder
    folder = make(tmp_path_factory.mktemp(request.param))
    return request.param, folder, speechbrain_ext_ssl(str(folder))


EXPECTED_RATE = {"bestrq": 640, "hubert": 320}  # 10 ms hop x 4; HuBERT's CNN x 320


def test_contract_shapes_and_rates(upstream):
    kind, _, model = upstream
    assert isinstance(model, SSLUpstreamExpert)
    rate = model.get_downsample_rates("hidden_states")
    assert rate == EXPECTED_RATE[kind] == model.encoder.downsample_rate
    wavs = [torch.randn(16000), torch.randn(11000), torch.randn(4000)]
    with torch.no_grad():
        out = model(wavs)
    hidden = out["hidden_states"]
    assert len(hidden) == model.num_layers == 3  # front end + 2 layers
    assert all(h.shape == hidden[0].shape for h in hidden)
    assert hidden[0].shape[0] == 3 and hidden[0].shape[2] == 32
    assert out["last_hidden_state"] is hidden[-1]
    # Frames of the longest waveform: len / rate, within one frame (edge handling).
    assert abs(hidden[0].shape[1] - 16000 / rate) <= 1
    # Padding frames of shorter utterances are zeros.
    assert hidden[-1][2, round(4000 / rate) + 1 :].abs().max() == 0.0


def test_padded_batch_equals_each_utterance_alone(upstream):
    _, _, model = upstream
    generator = torch.Generator().manual_seed(1)
    wavs = [torch.randn(n, generator=generator) for n in (16000, 9600, 5120)]
    with torch.no_grad():
        batch = model(wavs)["hidden_states"]
        for b, wav in enumerate(wavs):
            alone = model([wav])["hidden_states"]
            frames = alone[0].shape[1]
            assert abs(frames - wav.shape[0] / model.get_downsample_rates("x")) <= 1
            for layer, (h_batch, h_alone) in enumerate(zip(batch, alone)):
                torch.testing.assert_close(
                    h_batch[b, :frames], h_alone[0], atol=1e-5, rtol=1e-5,
                    msg=lambda m, layer=layer: f"layer {layer}: {m}",
                )  # fmt: skip


def test_one_padded_batch_is_exact_too(upstream):
    kind, folder, _ = upstream
    fast = SSLUpstreamExpert(str(folder), exact_padding=False)
    wavs = [torch.randn(16000), torch.randn(5120)]
    with torch.no_grad():
        batch = fast(wavs)["hidden_states"][0]
        alone = fast(wavs[1:])["hidden_states"][0]
    # Both frameworks, BEST-RQ's sentence-normalised filterbanks included, take exactly the
    # utterance's own frames in a batch.
    torch.testing.assert_close(batch[1, : alone.shape[1]], alone[0], atol=1e-5, rtol=1e-5)


def test_torch_hub_entry_and_errors(upstream):
    _, folder, model = upstream
    import speechbrain_ext.superb as superb

    hub_dir = str(Path(superb.__file__).parent)
    loaded = torch.hub.load(hub_dir, "speechbrain_ext_ssl", str(folder), source="local")
    wav = [torch.randn(8000)]
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(wav)["last_hidden_state"], model(wav)["last_hidden_state"]
        )
    with pytest.raises(ValueError, match="give ckpt"):
        SSLUpstreamExpert()
    with pytest.raises(ValueError, match="1-D"):
        model([torch.randn(1, 800)])
