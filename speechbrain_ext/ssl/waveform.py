"""HuBERT's trainable waveform front end: a 7-layer CNN from 16 kHz audio to 50 Hz frames.

The convolutional feature extractor of wav2vec 2.0 / HuBERT base (fairseq's ``default``
extractor mode, torchaudio's ``group_norm`` mode): seven 1-d convolutions without bias, 512
channels, kernels (10, 3, 3, 3, 3, 2, 2) and strides (5, 2, 2, 2, 2, 2, 2), i.e. a 400-sample
receptive field every 320 samples (20 ms); a group norm with one group per channel after the
first convolution and GELU after each. :class:`WaveformFrontEnd` adds what HuBERT does between
the CNN and the encoder: the gradient into the CNN scaled by ``feature_grad_mult`` (0.1), a
layer norm, the L2 penalty of the features, the projection to ``d_model`` and input dropout.

What changes from torchaudio's ``FeatureExtractor`` (same parameter names, so its weights load
here), and why: its group norm normalises each channel over **all** frames of the padded batch,
so an utterance's features depend on how much padding its batch has. Here the statistics are
taken over each utterance's valid frames only (:class:`MaskedGroupNorm`), and the lengths follow
each convolution, so a padded batch gives every utterance the features it has alone. Without
padding the two are the same, which the example checks.

Example
-------
>>> import torch
>>> from torchaudio.models.wav2vec2.components import _get_feature_extractor
>>> ours = ConvFeatureExtractor()
>>> theirs = _get_feature_extractor("group_norm", list(zip(*HUBERT_CONV_LAYERS)), bias=False)
>>> _ = theirs.load_state_dict(ours.state_dict())  # the same parameter names
>>> wavs = torch.randn(2, 16000)
>>> x, lengths = ours(wavs, torch.tensor([16000, 16000]))
>>> x.shape, lengths.tolist()  # (batch, frames, channels): 49 frames of 20 ms
(torch.Size([2, 49, 512]), [49, 49])
>>> bool(torch.allclose(x, theirs(wavs, None)[0], atol=1e-5))
True
>>> short, _ = ours(wavs[1:, :9000], torch.tensor([9000]))  # alone vs padded in a batch
>>> batch = torch.stack([wavs[0], torch.nn.functional.pad(wavs[1, :9000], (0, 7000))])
>>> padded, lengths = ours(batch, torch.tensor([16000, 9000]))
>>> lengths.tolist(), bool(torch.allclose(padded[1, :27], short[0], atol=1e-5))
([49, 27], True)
"""

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_ext.nnet.masking import lengths_to_padding_mask

HUBERT_CONV_LAYERS = (
    (512,) * 7,  # channels
    (10, 3, 3, 3, 3, 2, 2),  # kernel sizes
    (5, 2, 2, 2, 2, 2, 2),  # strides
)
"""(channels, kernel sizes, strides) of HuBERT base's CNN: 400-sample windows every 320."""


def conv_output_lengths(lengths: torch.Tensor, kernel_sizes, strides) -> torch.Tensor:
    """Valid output frames of a stack of unpadded convolutions for ``lengths`` input samples.

    Example
    -------
    >>> conv_output_lengths(torch.tensor([400, 719, 720, 16000]), *HUBERT_CONV_LAYERS[1:])
    tensor([ 1,  1,  2, 49])
    """
    lengths = lengths.long()
    for kernel, stride in zip(kernel_sizes, strides):
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    return lengths.clamp(min=0)


class MaskedGroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` whose statistics come from each utterance's valid frames only.

    Same parameters as ``nn.GroupNorm`` (``num_groups``, ``num_channels``, ``eps``,
    ``affine``); ``forward(x, key_padding_mask)`` takes ``x`` (batch, channels, time) and a
    bool mask (batch, time), True on padded frames, which come out as zeros.

    Example
    -------
    >>> norm = MaskedGroupNorm(4, 4)
    >>> x = torch.randn(1, 4, 10)
    >>> bool(torch.allclose(norm(x, None), nn.GroupNorm(4, 4)(x), atol=1e-6))
    True
    >>> mask = torch.zeros(1, 13, dtype=torch.bool); mask[:, 10:] = True
    >>> padded = norm(torch.cat([x, torch.full((1, 4, 3), 1e3)], dim=2), mask)
    >>> same = torch.allclose(padded[..., :10], norm(x, None), atol=1e-5)
    >>> bool(same), float(padded[..., 10:].abs().max().detach())
    (True, 0.0)
    """

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None):
        """Normalise ``x`` (batch, channels, time) over each group's valid frames."""
        if key_padding_mask is None:
            return super().forward(x)
        batch, channels, time = x.shape
        valid = (~key_padding_mask).unsqueeze(1).to(x.dtype)  # (batch, 1, time)
        grouped = x.reshape(batch, self.num_groups, -1, time)  # (batch, groups, c/g, time)
        weight = valid.unsqueeze(1)  # (batch, 1, 1, time)
        count = (weight.sum(dim=-1, keepdim=True) * grouped.shape[2]).clamp(min=1.0)
        mean = (grouped * weight).sum(dim=(2, 3), keepdim=True) / count
        var = (((grouped - mean) * weight) ** 2).sum(dim=(2, 3), keepdim=True) / count
        out = ((grouped - mean) * torch.rsqrt(var + self.eps)).reshape(batch, channels, time)
        if self.affine:
            out = out * self.weight.view(1, -1, 1) + self.bias.view(1, -1, 1)
        return out * valid


class _ConvBlock(nn.Module):
    """Convolution (no bias), optional masked group norm, GELU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, norm: bool):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, stride=stride, bias=False)
        self.layer_norm = MaskedGroupNorm(out_channels, out_channels) if norm else None

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        x = self.conv(x)  # (batch, channels, frames)
        lengths = conv_output_lengths(lengths, [self.kernel], [self.stride])
        if self.layer_norm is not None:
            x = self.layer_norm(x, lengths_to_padding_mask(lengths, x.shape[-1]))
        return F.gelu(x), lengths


class ConvFeatureExtractor(nn.Module):
    """HuBERT base's waveform CNN, padding-exact (see the module docstring).

    Arguments
    ---------
    channels, kernel_sizes, strides : sequence of int
        One entry per convolution (default: :data:`HUBERT_CONV_LAYERS`). Narrower channels
        keep the frame rate and make a CPU-sized model.

    ``forward(wavs, lengths)`` takes audio (batch, samples) and valid samples (batch,) and
    returns features (batch, frames, channels) and valid frames (batch,).
    """

    def __init__(
        self,
        *,
        channels=HUBERT_CONV_LAYERS[0],
        kernel_sizes=HUBERT_CONV_LAYERS[1],
        strides=HUBERT_CONV_LAYERS[2],
    ):
        super().__init__()
        if not len(channels) == len(kernel_sizes) == len(strides) > 0:
            raise ValueError("channels, kernel_sizes and strides need one entry per layer")
        blocks, in_channels = [], 1
        for index, (out, kernel, stride) in enumerate(zip(channels, kernel_sizes, strides)):
            blocks.append(_ConvBlock(in_channels, out, kernel, stride, norm=index == 0))
            in_channels = out
        self.conv_layers = nn.ModuleList(blocks)
        self.out_channels = in_channels
        self.kernel_sizes, self.strides = tuple(kernel_sizes), tuple(strides)
        self.stride = int(torch.tensor(self.strides).prod())
        self.receptive_field = conv_output_receptive_field(self.kernel_sizes, self.strides)

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor):
        """Features (batch, frames, channels) and valid frames (batch,) of ``wavs``."""
        if wavs.dim() != 2:
            raise ValueError(f"expected wavs (batch, samples), got shape {tuple(wavs.shape)}")
        x = wavs.unsqueeze(1)  # (batch, 1, samples)
        lengths = lengths.to(wavs.device)
        for block in self.conv_layers:
            x, lengths = block(x, lengths)
        return x.transpose(1, 2), lengths

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid frames for ``lengths`` samples."""
        return conv_output_lengths(lengths, self.kernel_sizes, self.strides)


def conv_output_receptive_field(kernel_sizes, strides) -> int:
    """Input samples seen by one output frame of a convolution stack (400 for HuBERT)."""
    field, jump = 1, 1
    for kernel, stride in zip(kernel_sizes, strides):
        field += (kernel - 1) * jump
        jump *= stride
    return field


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` unchanged forward, its gradient multiplied by ``scale`` backward.

    Example
    -------
    >>> x = torch.ones(3, requires_grad=True)
    >>> scale_gradient(x, 0.1).sum().backward()
    >>> x.grad
    tensor([0.1000, 0.1000, 0.1000])
    """
    if scale == 1.0:
        return x
    return _ScaleGradient.apply(x, scale)


class WaveformFrontEnd(nn.Module):
    """Audio → encoder input, as in HuBERT: CNN, layer norm, L2 penalty, projection, dropout.

    Arguments
    ---------
    d_model : int
        Encoder width.
    channels : int
        Channels of every CNN layer (512 in HuBERT).
    feature_grad_mult : float
        Scale of the gradient flowing into the CNN (0.1 in HuBERT; 0 freezes it).
    dropout : float
        Dropout on the projected features (HuBERT's ``dropout_input``).

    ``forward(wavs, wav_lens)`` returns ``x`` (batch, frames, d_model), ``lengths`` (batch,)
    valid frames, and ``penalty``, the mean squared CNN output over valid frames, before the
    layer norm (HuBERT's ``features_pen``, weighted in the loss).

    Example
    -------
    >>> front = WaveformFrontEnd(d_model=32, channels=16)
    >>> x, lengths, penalty = front(torch.randn(2, 8000), torch.tensor([1.0, 0.5]))
    >>> x.shape, lengths.tolist(), front.downsample_rate, penalty.dim()
    (torch.Size([2, 24, 32]), [24, 12], 320, 0)
    """

    def __init__(
        self,
        *,
        d_model: int,
        channels: int = 512,
        feature_grad_mult: float = 0.1,
        dropout: float = 0.1,
    ):
        super().__init__()
        if feature_grad_mult < 0:
            raise ValueError(f"feature_grad_mult must be >= 0, got {feature_grad_mult}")
        self.extractor = ConvFeatureExtractor(channels=(channels,) * len(HUBERT_CONV_LAYERS[1]))
        self.layer_norm = nn.LayerNorm(channels)
        self.projection = nn.Linear(channels, d_model)
        self.dropout = nn.Dropout(dropout)
        self.feature_grad_mult = feature_grad_mult
        self.downsample_rate = self.extractor.stride

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor):
        """Projected features, valid frames and the feature penalty."""
        samples = torch.round(wav_lens.to(wavs.device) * wavs.shape[1]).long()
        if bool((samples < self.extractor.receptive_field).any()):
            raise ValueError(
                f"an utterance is shorter than the CNN's {self.extractor.receptive_field} "
                f"samples (lengths {samples.tolist()})"
            )
        if self.feature_grad_mult > 0:
            features, lengths = self.extractor(wavs, samples)
            features = scale_gradient(features, self.feature_grad_mult)
        else:
            with torch.no_grad():
                features, lengths = self.extractor(wavs, samples)
        valid = ~lengths_to_padding_mask(lengths, features.shape[1])  # (batch, frames)
        # HuBERT's penalty is on the CNN output, before the layer norm (which would make it ~1).
        penalty = features.float().pow(2).mean(dim=-1)[valid].mean()
        features = self.layer_norm(features.float())  # (batch, frames, channels)
        x = self.dropout(self.projection(features.to(self.projection.weight.dtype)))
        return x * valid.unsqueeze(-1).to(x.dtype), lengths, penalty
