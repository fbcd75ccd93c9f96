"""HuBERT's convolutional waveform front end, for costing Study A's whole models.

Study A profiles each encoder inside HuBERT, whose front end turns 16 kHz audio into 50 Hz
frames with 7 convolutions of 512 channels (kernels 10, 3, 3, 3, 3, 2, 2; strides 5, 2, 2, 2, 2,
2, 2: ×320), then projects them to the encoder width (LayerNorm + Linear, as fairseq's
``post_extract_proj``). The convolutions are SpeechBrain's ``W2VLatentExtractor`` (no conv bias,
GELU; it normalises every layer with LayerNorm where HuBERT base has one GroupNorm, a difference
of a few thousand parameters and no multiply-accumulates).

Example
-------
>>> import torch
>>> front = HubertWaveformFrontEnd(d_model=32)
>>> front(torch.randn(2, 4000)).shape
torch.Size([2, 12, 32])
>>> front.num_frames(16000)
49
"""

import torch
from speechbrain.lobes.models.wav2vec import W2VLatentExtractor
from torch import nn

#: HuBERT/wav2vec 2.0 base front end: (kernel, stride) of each of the 7 convolutions.
HUBERT_CONV_LAYERS = ((10, 5), (3, 2), (3, 2), (3, 2), (3, 2), (2, 2), (2, 2))


class HubertWaveformFrontEnd(nn.Module):
    """16 kHz audio (batch, samples) → frames (batch, samples // 320 - 1, d_model).

    Arguments
    ---------
    d_model : int
        Width of the encoder fed by the front end.
    channels : int
        Channels of every convolution (512 in HuBERT).
    """

    def __init__(self, *, d_model: int, channels: int = 512):
        super().__init__()
        kernels, strides = zip(*HUBERT_CONV_LAYERS)
        self.convs = W2VLatentExtractor(
            out_channels=[channels] * len(kernels),
            kernel_sizes=list(kernels),
            strides=list(strides),
        )
        self.norm = nn.LayerNorm(channels)
        self.proj = nn.Linear(channels, d_model)
        self.d_model = d_model

    def num_frames(self, num_samples: int) -> int:
        """Frames produced from ``num_samples`` samples."""
        length = num_samples
        for kernel, stride in HUBERT_CONV_LAYERS:
            length = (length - kernel) // stride + 1
        return length

    def forward(self, wavs: torch.Tensor) -> torch.Tensor:
        """(batch, samples) → (batch, frames, d_model)."""
        if wavs.dim() != 2:
            raise ValueError(f"expected wavs (batch, samples), got {tuple(wavs.shape)}")
        return self.proj(self.norm(self.convs(wavs)))


class WaveformModel(nn.Module):
    """A waveform front end followed by an encoder: audio → every encoder layer's output.

    Arguments
    ---------
    frontend : nn.Module
        (batch, samples) → (batch, frames, d_model).
    encoder : nn.Module
        ``forward(x, key_padding_mask=None) -> list[Tensor]``.
    """

    def __init__(self, *, frontend: nn.Module, encoder: nn.Module):
        super().__init__()
        self.frontend = frontend
        self.encoder = encoder

    def forward(self, wavs: torch.Tensor) -> list[torch.Tensor]:
        """(batch, samples) → list of (batch, frames, d_model)."""
        return self.encoder(self.frontend(wavs))
