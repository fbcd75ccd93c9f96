"""Features and front ends of the BEST-RQ model: fbank, normalisation, ×4 downsampling.

:class:`FilterbankFeatures` turns 16 kHz audio into normalised log-mel
filterbanks (SpeechBrain's ``Fbank`` and ``InputNormalization``; 10 ms hop).
A front end then brings the frames to 40 ms and to the encoder width:

- ``"conv"`` (Study B, SpeechBrain's BEST-RQ recipe): SpeechBrain's
  ``ConvolutionFrontEnd``, two conv blocks of stride 2 (128 then 32 channels,
  80 mels → 20 · 32 = 640 dims), then a linear map to ``d_model``; its convolutions are
  SpeechBrain's ``Conv2d`` computed in the channels-last layout (:class:`ChannelsLastConv2d`);
- ``"stack"``: the ×4 stacked fbank frames (320 dims), the quantizer's own
  input, through a linear map to ``d_model`` (much cheaper on a CPU).

Both take (batch, time, n_mels) with ``time`` a multiple of 4 and return
(batch, time / 4, d_model).

Example
-------
>>> import torch
>>> features = FilterbankFeatures()
>>> feats = features(torch.randn(2, 8000), torch.tensor([1.0, 0.5]))
>>> feats.shape  # (batch, 10 ms frames, n_mels)
torch.Size([2, 51, 80])
>>> front = build_front_end("stack", n_mels=80, d_model=32)
>>> front(feats[:, :48]).shape
torch.Size([2, 12, 32])
"""

import math

import torch
import torch.nn.functional as F
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.convolution import ConvolutionFrontEnd
from speechbrain.nnet.CNN import Conv2d, get_padding_elem
from speechbrain.processing.features import InputNormalization
from torch import nn

from speechbrain_ext.nnet.masking import lengths_to_padding_mask, zero_padded
from speechbrain_ext.registry import Registry
from speechbrain_ext.ssl.bestrq import stack_frames

FRONT_ENDS = Registry("front end")


class FeatureNormalization(InputNormalization):
    """SpeechBrain's ``InputNormalization`` whose running statistics live in ``state_dict``.

    SpeechBrain keeps the global mean and std outside the module's state (they
    are saved by the checkpointer as a separate file); here they travel inside
    the model's ``state_dict`` (``get_extra_state``), so one model file holds
    everything needed to rebuild the features.

    Example
    -------
    >>> norm = FeatureNormalization(norm_type="global")
    >>> _ = norm(torch.randn(2, 5, 3) + 4.0, torch.ones(2))
    >>> other = FeatureNormalization(norm_type="global")
    >>> _ = other.load_state_dict(norm.state_dict())
    >>> bool(torch.allclose(other.glob_mean, norm.glob_mean)), other.count
    (True, 10)
    """

    def get_extra_state(self):
        """The running statistics (count, mean, std)."""
        return self._statistics_dict()

    def set_extra_state(self, state):
        """Restore the running statistics."""
        self._load_statistics_dict(state)


class FilterbankFeatures(nn.Module):
    """Normalised log-mel filterbanks of 16 kHz audio, computed in fp32.

    Arguments
    ---------
    sample_rate : int
        Audio sample rate.
    n_fft : int
        FFT size (400: 25 ms windows).
    n_mels : int
        Mel channels.
    hop_length : float
        Hop in milliseconds.
    norm_type : str
        ``"sentence"`` (per utterance, as SpeechBrain's BEST-RQ recipe; no
        statistics to store) or ``"global"`` (running statistics, stored in the
        ``state_dict``).

    Example
    -------
    >>> features = FilterbankFeatures(n_mels=40)
    >>> wavs = torch.randn(2, 3200)
    >>> feats = features(wavs, torch.tensor([1.0, 0.5]))
    >>> feats.shape, features.num_frames(3200), features.hop_samples
    (torch.Size([2, 21, 40]), 21, 160)
    >>> float(feats[1, 11:].abs().max())  # padded frames are zero
    0.0
    """

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        n_fft: int = 400,
        n_mels: int = 80,
        hop_length: float = 10,
        norm_type: str = "sentence",
    ):
        super().__init__()
        self.n_mels = n_mels
        self.sample_rate = sample_rate
        self.hop_samples = int(round(sample_rate * hop_length / 1000))
        self.fbank = Fbank(
            sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels, hop_length=hop_length
        )
        self.normalize = FeatureNormalization(norm_type=norm_type, update_until_epoch=None)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for ``num_samples`` samples (centred STFT)."""
        return num_samples // self.hop_samples + 1

    def frame_lengths(self, wav_lens: torch.Tensor, num_samples: int) -> torch.Tensor:
        """Valid frames of each utterance of a batch padded to ``num_samples`` samples: the
        frames the utterance gives alone (:meth:`num_frames` of its own sample count).

        Scaling the relative length by the frame count instead (SpeechBrain's convention)
        can count one frame more or less than the utterance has alone, and SpeechBrain's
        sentence normalisation rounds up: the statistics would then take in a padded frame.

        Example
        -------
        >>> features = FilterbankFeatures(n_mels=40)
        >>> features.frame_lengths(torch.tensor([1.0, 8080 / 16000]), 16000).tolist()
        [101, 51]
        >>> round(8080 / 16000 * 101 + 0.5)  # what a relative length over 101 frames rounds up to
        52
        """
        samples = torch.round(wav_lens.double() * num_samples).long()
        return samples // self.hop_samples + 1

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> torch.Tensor:
        """``wavs`` (batch, samples), relative ``wav_lens`` → (batch, frames, n_mels).

        The valid frames of an utterance equal those it gives alone (fp32, within 1e-5),
        whatever the batch (:meth:`frame_lengths`); the padded frames are zero.
        """
        if wavs.dim() != 2:
            raise ValueError(f"expected wavs of shape (batch, samples), got {tuple(wavs.shape)}")
        with torch.autocast(wavs.device.type, enabled=False):
            feats = self.fbank(wavs.float())  # (batch, frames, n_mels)
            frames = feats.shape[1]
            lengths = self.frame_lengths(wav_lens.to(feats.device), wavs.shape[1]).clamp(1, frames)
            # float64: lengths × frames - eps must stay below the next frame for long inputs
            feats = self.normalize(feats, lengths.double() / frames)
        return zero_padded(feats, lengths_to_padding_mask(lengths, frames))


class ChannelsLastConv2d(Conv2d):
    """SpeechBrain's ``Conv2d`` (the conv front end's layer), computed in the channels-last
    layout that its (batch, time, freq, channels) input already has.

    SpeechBrain's forward transposes the input to (batch, channels, freq, time), pads and
    convolves it, and transposes the output back, so the block's LayerNorm copies the strided
    output, and the next block's padding copies its strided input. Those copies of the largest
    activation, and oneDNN's convolution on them, took most of the front end's time. Here the
    input is seen as (batch, channels, time, freq), a channels-last view with no copy. It is
    padded the same way (SpeechBrain's own ``get_padding_elem``, the same ``padding_mode``)
    and convolved with the kernel's two axes swapped, so the output is already a contiguous
    (batch, time, freq, channels) tensor. Measured for the BEST-RQ front end at 80 s on one
    thread: the first block took 52 ms instead of 91, the second 81 instead of 472, and
    LayerNorm's copy (138 ms) is gone. Same parameters and state dict. Only ``padding="same"``
    on a plain ``nn.Conv2d`` with neither ``swap``, ``skip_transpose`` nor ``max_norm`` runs
    this way. Any other configuration, a quantized convolution included, runs SpeechBrain's
    forward.

    Example
    -------
    >>> shape = (2, 9, 6)  # (batch, time, freq)
    >>> sb = Conv2d(out_channels=4, kernel_size=(3, 3), input_shape=shape, stride=(2, 2))
    >>> fast = ChannelsLastConv2d(out_channels=4, kernel_size=(3, 3), input_shape=shape,
    ...                           stride=(2, 2))
    >>> fast.load_state_dict(sb.state_dict())
    <All keys matched successfully>
    >>> x = torch.randn(shape)
    >>> fast(x).shape, torch.allclose(fast(x), sb(x), atol=1e-6)
    (torch.Size([2, 5, 3, 4]), True)
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, time, freq[, channels]) → (batch, time', freq', out_channels)."""
        plain = (
            self.padding == "same"
            and not (self.swap or self.skip_transpose or self.max_norm is not None)
            and type(self.conv) is nn.Conv2d
            and x.dim() == (3 if self.unsqueeze else 4)
        )
        if not plain:
            return super().forward(x)
        if self.unsqueeze:
            x = x.unsqueeze(-1)  # (batch, time, freq, 1)
        view = x.permute(0, 3, 1, 2)  # (batch, channels, time, freq): channels-last
        size = self.in_channels  # what SpeechBrain's padding reads as the input length
        pad_time = get_padding_elem(size, self.stride[-1], self.kernel_size[-1], self.dilation[-1])
        pad_freq = get_padding_elem(size, self.stride[-2], self.kernel_size[-2], self.dilation[-2])
        view = F.pad(view, pad_freq + pad_time, mode=self.padding_mode)  # last axis first
        out = F.conv2d(
            view,
            self.conv.weight.transpose(2, 3),  # (out, in, k_time, k_freq)
            self.conv.bias,
            stride=self.stride[::-1],
            dilation=self.dilation[::-1],
            groups=self.conv.groups,
        )
        out = out.permute(0, 2, 3, 1)  # (batch, time', freq', out_channels)
        return out.squeeze(-1) if self.unsqueeze else out


@FRONT_ENDS.register("conv")
class ConvFrontEnd(nn.Module):
    """SpeechBrain's 2-block convolutional front end (×4 in time) and a linear map.

    Arguments
    ---------
    n_mels : int
        Input channels per frame.
    d_model : int
        Output width.
    channels : tuple of int
        Output channels of the two conv blocks (SpeechBrain BEST-RQ: 128, 32).
    dropout : float
        Dropout inside the conv blocks and after the linear map.

    Example
    -------
    >>> front = ConvFrontEnd(n_mels=80, d_model=16)
    >>> front(torch.randn(2, 40, 80)).shape
    torch.Size([2, 10, 16])
    """

    stride = 4

    def __init__(
        self, *, n_mels: int, d_model: int, channels: tuple = (128, 32), dropout: float = 0.1
    ):
        super().__init__()
        self.conv = ConvolutionFrontEnd(
            input_shape=(8, 16, n_mels),
            num_blocks=2,
            num_layers_per_block=1,
            out_channels=tuple(channels),
            kernel_sizes=(3, 3),
            strides=(2, 2),
            residuals=(False, False),
            conv_module=ChannelsLastConv2d,
            dropout=dropout,
        )
        out_dim = math.ceil(math.ceil(n_mels / 2) / 2) * channels[-1]  # 80 mels → 20 · 32 = 640
        self.proj = nn.Linear(out_dim, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """(batch, time, n_mels), ``time`` a multiple of 4 → (batch, time / 4, d_model)."""
        x = self.conv(feats)  # (batch, time / 4, n_mels / 4, channels)
        return self.dropout(self.proj(x.flatten(start_dim=2)))


@FRONT_ENDS.register("stack")
class StackingFrontEnd(nn.Module):
    """×4 frame stacking and a linear map.

    Arguments
    ---------
    n_mels : int
        Input channels per frame.
    d_model : int
        Output width.
    dropout : float
        Dropout after the linear map.

    Example
    -------
    >>> front = StackingFrontEnd(n_mels=80, d_model=16)
    >>> front(torch.randn(2, 40, 80)).shape
    torch.Size([2, 10, 16])
    """

    stride = 4

    def __init__(self, *, n_mels: int, d_model: int, dropout: float = 0.1):
        super().__init__()
        self.proj = nn.Linear(n_mels * self.stride, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """(batch, time, n_mels) → (batch, ceil(time / 4), d_model)."""
        return self.dropout(self.proj(stack_frames(feats, self.stride)))


def list_front_ends() -> list[str]:
    """Names of the registered front ends."""
    return FRONT_ENDS.names()


def build_front_end(name: str, *, n_mels: int, d_model: int, **options) -> nn.Module:
    """Build the front end registered as ``name`` (``"conv"`` or ``"stack"``)."""
    return FRONT_ENDS.build(name, n_mels=n_mels, d_model=d_model, **options)
