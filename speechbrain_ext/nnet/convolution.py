"""Convolutional building blocks of the encoders, all padding-aware.

Every block takes ``x`` (batch, time, channels) and a ``key_padding_mask``
(batch, time), True on padded frames. Padded frames are zeroed before any
convolution over time, so a valid frame of a padded batch sees exactly what it
would see if its utterance were run alone (zero "same" padding at the end).

- :class:`ChannelsLastConv1d`: ``nn.Conv1d`` run on the CPU as a channels-last 2-D
  convolution (the layout the blocks' transposed (batch, time, channels) inputs already
  have); 24× faster for the Conformer's depthwise kernel 31, same parameters and state dict.
- :class:`MaskedBatchNorm1d`: BatchNorm whose training statistics skip padded frames.
- :class:`ConvModule`: the Conformer convolution module (pointwise + GLU, depthwise,
  norm, Swish, pointwise) and its Squeezeformer variant (Swish instead of GLU).
- :class:`ConvPositionalEmbedding`: HuBERT/wav2vec 2.0 convolutional relative
  positional embedding (grouped, weight-normalised, kernel 128).
- :class:`TimeReduction`: depthwise-separable strided convolution halving the
  frame rate (Squeezeformer's temporal U-Net).
- :class:`DepthwiseSeparableSubsampling`: Squeezeformer's ×4 front end from
  filterbank features.

Example
-------
>>> import torch
>>> from speechbrain_ext.nnet.masking import lengths_to_padding_mask
>>> conv = ConvModule(d_model=16, kernel_size=7)
>>> mask = lengths_to_padding_mask(torch.tensor([10, 6]))
>>> conv(torch.randn(2, 10, 16), key_padding_mask=mask).shape
torch.Size([2, 10, 16])
"""

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_ext.nnet.feedforward import get_activation
from speechbrain_ext.nnet.masking import (
    lengths_to_padding_mask,
    padding_mask_to_lengths,
    zero_padded,
)


def channels_last_conv1d(
    conv: nn.Conv1d, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """``conv``'s convolution of ``x`` (batch, channels, time) with ``weight`` and ``bias``,
    computed on the CPU as a 2-D convolution of height 1 in the channels-last layout.

    The blocks below hold their activations as (batch, time, channels) and hand a
    convolution the transposed view. ``conv1d`` then runs oneDNN's (batch, channels, time)
    kernel on a strided input, which for a depthwise kernel is slow on the CPU: one layer's
    kernel-31 depthwise convolution at 2000 frames, 616 channels, one thread took 44.6 ms
    forward. The same view, seen as (batch, channels, 1, time), is already contiguous in the
    channels-last format, and oneDNN's channels-last kernel took 2.3 ms (forward and backward
    together: 74 → 36 ms). The result equals ``conv1d``'s up to float rounding (summation order).

    Other devices, unbatched inputs, string paddings and non-zero padding modes run
    ``nn.Conv1d``'s own convolution.

    Example
    -------
    >>> conv = nn.Conv1d(6, 6, 5, padding=2, groups=6)
    >>> x = torch.randn(2, 9, 6)  # (batch, time, channels)
    >>> fast = channels_last_conv1d(conv, x.transpose(1, 2), conv.weight, conv.bias)
    >>> torch.allclose(fast, conv(x.transpose(1, 2)), atol=1e-6)
    True
    """
    if (
        x.device.type != "cpu"
        or x.dim() != 3
        or isinstance(conv.padding, str)
        or conv.padding_mode != "zeros"
    ):
        return nn.Conv1d._conv_forward(conv, x, weight, bias)
    return conv1d_as_channels_last_2d(
        x,
        weight,
        bias,
        stride=conv.stride[0],
        padding=conv.padding[0],
        dilation=conv.dilation[0],
        groups=conv.groups,
    )


def conv1d_as_channels_last_2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    groups: int = 1,
) -> torch.Tensor:
    """``F.conv1d`` of ``x`` (batch, channels, time) as a 2-D convolution of height 1 in the
    channels-last format (no copy when ``x`` is the transposed view of a (batch, time,
    channels) tensor); zero padding. See :func:`channels_last_conv1d` for why.

    Example
    -------
    >>> x, w = torch.randn(2, 4, 9), torch.randn(4, 1, 3)
    >>> out = conv1d_as_channels_last_2d(x, w, None, padding=1, groups=4)
    >>> torch.allclose(out, F.conv1d(x, w, padding=1, groups=4), atol=1e-6)
    True
    """
    out = F.conv2d(
        x.unsqueeze(2).contiguous(memory_format=torch.channels_last),
        weight.unsqueeze(2),
        bias,
        stride=(1, stride),
        padding=(0, padding),
        dilation=(1, dilation),
        groups=groups,
    )
    return out.squeeze(2)


class ChannelsLastConv1d(nn.Conv1d):
    """``nn.Conv1d`` whose convolution runs as :func:`channels_last_conv1d` (same arguments,
    parameters and state dict; hooks, weight normalisation and quantization see an
    ``nn.Conv1d``).

    Example
    -------
    >>> conv = ChannelsLastConv1d(4, 4, 3, padding=1, groups=4)
    >>> conv(torch.randn(1, 7, 4).transpose(1, 2)).shape
    torch.Size([1, 4, 7])
    """

    def _conv_forward(self, x, weight, bias):
        return channels_last_conv1d(self, x, weight, bias)


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm over channels of (batch, time, channels) that ignores padded frames.

    In training mode the mean and variance are taken over the valid frames of
    the batch only, and the running statistics are updated from them; in eval
    mode the running statistics are used, so every frame is normalised on its
    own. (A batch statistic depends on the other utterances of the batch by
    design: in training mode an utterance's output is invariant to what the
    padded frames hold and to how much padding there is, not to its batch mates.)

    Arguments are those of :class:`torch.nn.BatchNorm1d`
    (``num_features, eps, momentum, affine, track_running_stats, device, dtype``).

    Example
    -------
    >>> bn = MaskedBatchNorm1d(4)
    >>> x = torch.randn(2, 6, 4)
    >>> mask = torch.tensor([[False] * 6, [False] * 3 + [True] * 3])
    >>> y = bn(x, key_padding_mask=mask)
    >>> valid = y[~mask]  # (9, 4): zero mean, unit variance over valid frames only
    >>> bool(valid.mean(0).abs().max() < 1e-5)
    True
    """

    def forward(
        self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Normalise ``x`` (batch, time, channels); returns the same shape."""
        if x.dim() != 3:
            raise ValueError(f"expected (batch, time, channels), got shape {tuple(x.shape)}")
        use_batch_stats = self.training or not self.track_running_stats
        if use_batch_stats:
            xf = x.float()
            if key_padding_mask is None:
                count = torch.tensor(xf.shape[0] * xf.shape[1], device=x.device, dtype=xf.dtype)
                mean = xf.mean(dim=(0, 1))
                var = (xf - mean).square().mean(dim=(0, 1))
            else:
                valid = (~key_padding_mask).unsqueeze(-1)  # (batch, time, 1)
                count = valid.sum().to(xf.dtype).clamp(min=1.0)
                xf = xf.masked_fill(~valid, 0.0)
                mean = xf.sum(dim=(0, 1)) / count
                var = ((xf - mean).masked_fill(~valid, 0.0).square()).sum(dim=(0, 1)) / count
            if self.training and self.track_running_stats:
                self._update_running_stats(mean, var, count)
        else:
            mean, var = self.running_mean.float(), self.running_var.float()
        y = (x.float() - mean) * torch.rsqrt(var + self.eps)
        if self.affine:
            y = y * self.weight.float() + self.bias.float()
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean, var, count):
        self.num_batches_tracked.add_(1)
        if self.momentum is None:  # cumulative moving average
            momentum = 1.0 / float(self.num_batches_tracked)
        else:
            momentum = self.momentum
        unbiased = var * count / (count - 1).clamp(min=1.0)
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)


class _ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm accepting (and ignoring) a padding mask, to share the norm interface."""

    def forward(self, x, key_padding_mask=None):  # noqa: D102
        return super().forward(x)


def _make_norm(norm: str, channels: int) -> nn.Module:
    if norm == "batchnorm":
        return MaskedBatchNorm1d(channels)
    if norm == "layernorm":
        return _ChannelLayerNorm(channels)
    raise ValueError(f"unknown conv norm {norm!r}; valid names: batchnorm, layernorm")


class ConvModule(nn.Module):
    """The Conformer convolution module, or its Squeezeformer variant.

    ``gate="glu"`` (Gulati et al.): pointwise d → 2d, GLU, depthwise conv (d
    channels), norm, activation, pointwise d → d, dropout.
    ``gate="swish"`` (Squeezeformer, as in NeMo): pointwise d → 2d, Swish,
    depthwise conv (2d channels), norm, activation, pointwise 2d → d, dropout.
    The depthwise convolution is non-causal with zero "same" padding; padded
    frames are zeroed before it. Any pre-norm is the caller's.

    Arguments
    ---------
    d_model : int
        Input and output width.
    kernel_size : int
        Depthwise kernel size (odd).
    gate : str
        ``"glu"`` or ``"swish"`` after the first pointwise projection.
    norm : str
        ``"batchnorm"`` (masked, :class:`MaskedBatchNorm1d`) or ``"layernorm"``
        (as in SpeechBrain's Conformer) after the depthwise convolution.
    activation : str
        Activation after the norm (Swish in both papers).
    dropout : float
        Dropout on the output.
    bias : bool
        Whether the convolutions have biases.

    Example
    -------
    >>> conv = ConvModule(d_model=8, kernel_size=3, gate="swish", norm="layernorm")
    >>> conv(torch.randn(1, 5, 8)).shape
    torch.Size([1, 5, 8])
    """

    def __init__(
        self,
        *,
        d_model: int,
        kernel_size: int = 31,
        gate: str = "glu",
        norm: str = "batchnorm",
        activation: str = "swish",
        dropout: float = 0.0,
        bias: bool = True,
    ):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        if gate not in ("glu", "swish"):
            raise ValueError(f"unknown conv gate {gate!r}; valid names: glu, swish")
        self.gate = gate
        inner = d_model if gate == "glu" else 2 * d_model
        self.pointwise1 = nn.Linear(d_model, 2 * d_model, bias=bias)
        self.depthwise = ChannelsLastConv1d(
            inner, inner, kernel_size, padding=kernel_size // 2, groups=inner, bias=bias
        )
        self.norm = _make_norm(norm, inner)
        self.activation = get_activation(activation)
        self.pointwise2 = nn.Linear(inner, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Map ``x`` (batch, time, d_model) to the same shape."""
        x = self.pointwise1(x)  # (batch, time, 2 * d_model)
        x = F.glu(x, dim=-1) if self.gate == "glu" else F.silu(x)  # (batch, time, inner)
        x = zero_padded(x, key_padding_mask)
        x = self.depthwise(x.transpose(1, 2)).transpose(1, 2)  # (batch, time, inner)
        x = self.activation(self.norm(x, key_padding_mask=key_padding_mask))
        return self.dropout(self.pointwise2(x))  # (batch, time, d_model)


class ConvPositionalEmbedding(nn.Module):
    """HuBERT / wav2vec 2.0 convolutional relative positional embedding.

    ``x + GELU(WeightNorm(GroupedConv1d(x)))`` with a "same"-aligned kernel (for
    an even kernel the extra last output frame is dropped, as in fairseq).
    Padded frames are zeroed before the convolution, so valid frames near the
    end see zeros there, exactly as when their utterance runs alone.

    Arguments
    ---------
    d_model : int
        Width (channels in and out).
    kernel_size : int
        Convolution kernel (128 in HuBERT).
    groups : int
        Convolution groups (16 in HuBERT); must divide ``d_model``.

    Example
    -------
    >>> pos = ConvPositionalEmbedding(d_model=32, kernel_size=8, groups=4)
    >>> pos(torch.randn(2, 5, 32)).shape
    torch.Size([2, 5, 32])
    """

    def __init__(self, *, d_model: int, kernel_size: int = 128, groups: int = 16):
        super().__init__()
        if d_model % groups:
            raise ValueError(f"pos_conv groups ({groups}) must divide d_model ({d_model})")
        conv = ChannelsLastConv1d(
            d_model, d_model, kernel_size, padding=kernel_size // 2, groups=groups
        )
        # fairseq's initialisation, then weight normalisation over the kernel axis.
        nn.init.normal_(conv.weight, mean=0.0, std=(4.0 / (kernel_size * d_model)) ** 0.5)
        nn.init.zeros_(conv.bias)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.trim = 1 if kernel_size % 2 == 0 else 0

    def forward(
        self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x`` (batch, time, d_model) plus its positional embedding, same shape."""
        x = zero_padded(x, key_padding_mask)
        pos = self.conv(x.transpose(1, 2))  # (batch, d_model, time + trim)
        if self.trim:
            pos = pos[..., : -self.trim]
        return x + F.gelu(pos.transpose(1, 2))


class TimeReduction(nn.Module):
    """Depthwise-separable strided convolution that divides the frame rate by ``stride``.

    Output frame ``j`` is centred on input frame ``stride * j`` and is valid iff
    that frame is valid, so the output has ``ceil(time / stride)`` frames and an
    utterance gets the same valid frames alone or in a padded batch.

    Arguments
    ---------
    d_model : int
        Width (channels in and out).
    kernel_size : int
        Depthwise kernel size (odd; 5 in Squeezeformer).
    stride : int
        Reduction factor (2 in Squeezeformer).

    Example
    -------
    >>> reduce = TimeReduction(d_model=8)
    >>> mask = torch.tensor([[False] * 5, [False] * 2 + [True] * 3])
    >>> y, low_mask = reduce(torch.randn(2, 5, 8), key_padding_mask=mask)
    >>> y.shape, low_mask.tolist()
    (torch.Size([2, 3, 8]), [[False, False, False], [False, True, True]])
    """

    def __init__(self, *, d_model: int, kernel_size: int = 5, stride: int = 2):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
        self.stride = stride
        self.depthwise = ChannelsLastConv1d(
            d_model,
            d_model,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=d_model,
        )
        self.pointwise = nn.Linear(d_model, d_model)

    def forward(
        self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x`` (batch, time, d) → ((batch, ceil(time / stride), d), reduced mask or None)."""
        x = zero_padded(x, key_padding_mask)
        x = self.depthwise(x.transpose(1, 2)).transpose(1, 2)  # (batch, low_time, d_model)
        low_mask = None if key_padding_mask is None else key_padding_mask[:, :: self.stride]
        return self.pointwise(x), low_mask


class DepthwiseSeparableSubsampling(nn.Module):
    """Squeezeformer's ×4 front end: Conv2d (stride 2) then depthwise-separable Conv2d.

    ``feats`` (batch, time, n_input) → ReLU(Conv2d 3×3 stride 2) → ReLU(pointwise
    ∘ depthwise Conv2d 3×3 stride 2) → linear to ``d_model``. The convolutions
    are unpadded, so an utterance of ``L`` frames gives ``((L - 1) // 2 - 1) // 2``
    frames that depend on its valid input frames only.

    Arguments
    ---------
    n_input : int
        Feature dimension (e.g. 80 filterbanks).
    d_model : int
        Output width.
    channels : int or None
        Convolution channels (``d_model`` when None).

    Example
    -------
    >>> sub = DepthwiseSeparableSubsampling(n_input=20, d_model=16, channels=4)
    >>> mask = torch.tensor([[False] * 40, [False] * 21 + [True] * 19])
    >>> y, out_mask = sub(torch.randn(2, 40, 20), key_padding_mask=mask)
    >>> y.shape, (~out_mask).sum(1).tolist()
    (torch.Size([2, 9, 16]), [9, 4])
    """

    def __init__(self, *, n_input: int, d_model: int, channels: int | None = None):
        super().__init__()
        channels = channels or d_model
        self.conv = nn.Conv2d(1, channels, 3, stride=2)
        self.depthwise = nn.Conv2d(channels, channels, 3, stride=2, groups=channels)
        self.pointwise = nn.Conv2d(channels, channels, 1)
        freq = ((n_input - 1) // 2 - 1) // 2
        if freq < 1:
            raise ValueError(f"n_input={n_input} is too small for ×4 subsampling (needs >= 7)")
        self.proj = nn.Linear(channels * freq, d_model)

    @staticmethod
    def output_lengths(lengths: torch.Tensor) -> torch.Tensor:
        """Frames out for ``lengths`` frames in."""
        return ((lengths - 1) // 2 - 1) // 2

    def forward(
        self, feats: torch.Tensor, key_padding_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``feats`` (batch, time, n_input) → ((batch, time', d_model), mask or None)."""
        time = feats.shape[1]
        if self.output_lengths(torch.tensor(time)) < 1:
            raise ValueError(f"{time} input frames are too few for ×4 subsampling (needs >= 7)")
        x = zero_padded(feats, key_padding_mask).unsqueeze(1)  # (batch, 1, time, n_input)
        x = F.relu(self.conv(x))
        x = F.relu(self.pointwise(self.depthwise(x)))  # (batch, channels, time', freq')
        x = self.proj(x.transpose(1, 2).flatten(2))  # (batch, time', d_model)
        if key_padding_mask is None:
            return x, None
        lengths = self.output_lengths(padding_mask_to_lengths(key_padding_mask))
        return x, lengths_to_padding_mask(lengths, max_len=x.shape[1])
