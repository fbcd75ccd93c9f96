"""Squeezeformer encoder (Kim et al. 2022) around any token mixer.

A block is MF (mixer → FFN) then CF (convolution → FFN), each module with a
full residual and a **scaled post-LN**: ``LN(x + f(γ ⊙ x + β))`` with
learnable per-channel scale γ and bias β in place of a pre-LN (as in NeMo's
Squeezeformer). The convolution module uses Swish instead of GLU
(:class:`~speechbrain_ext.nnet.convolution.ConvModule` with ``gate="swish"``).
An input LayerNorm normalises what enters the first (post-LN) block.

Temporal U-Net: before block ``time_reduce_idx`` the frame rate is halved
(depthwise conv k=5 stride 2 + pointwise) and before block
``time_recovery_idx`` it is restored (repeat ×2, crop, linear, add the saved
full-rate input of the reduction). The defaults follow the paper for 16
blocks (reduce before block 7, restore before block 15, 0-indexed) and scale
with depth: ``num_layers // 2 - 1`` and ``num_layers - 1``. Below 4 blocks the
U-Net is off (nothing would run at the low rate for long enough to matter, and
block 0 must stay at the input rate). A frame at the low rate is valid iff its
first source frame is valid; the outputs of low-rate blocks are repeated ×2
and cropped back to the input rate in the returned list.

The Squeezeformer's ×4 depthwise-separable front end from filterbanks is
:class:`~speechbrain_ext.nnet.convolution.DepthwiseSeparableSubsampling`; this
encoder takes (batch, time, d_model) at the encoder frame rate.

Example
-------
>>> import torch
>>> from speechbrain_ext.nnet.encoders import build_encoder
>>> from speechbrain_ext.nnet.mixers import list_mixers
>>> mixer = "mhsa" if "mhsa" in list_mixers() else list_mixers()[0]
>>> enc = build_encoder("squeezeformer", num_layers=4, d_model=32, nhead=4, mixer=mixer,
...                     kernel_size=7)
>>> enc.time_reduce_idx, enc.time_recovery_idx
(1, 3)
>>> [out.shape for out in enc(torch.randn(2, 9, 32))]  # doctest: +NORMALIZE_WHITESPACE
[torch.Size([2, 9, 32]), torch.Size([2, 9, 32]), torch.Size([2, 9, 32]),
 torch.Size([2, 9, 32])]
"""

import torch
from torch import nn

from speechbrain_ext.nnet.convolution import ConvModule, TimeReduction
from speechbrain_ext.nnet.encoders import ENCODERS
from speechbrain_ext.nnet.encoders.transformer import EncoderBase, make_mixer
from speechbrain_ext.nnet.feedforward import FeedForward


class ScaleBias(nn.Module):
    """Learnable per-channel affine map ``γ ⊙ x + β`` (γ = 1, β = 0 at init).

    Arguments
    ---------
    d_model : int
        Number of channels.

    Example
    -------
    >>> ScaleBias(3)(torch.ones(1, 2, 3))
    tensor([[[1., 1., 1.],
             [1., 1., 1.]]], grad_fn=<AddBackward0>)
    """

    def __init__(self, d_model: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (..., d_model) scaled and shifted per channel."""
        return x * self.scale + self.bias


class SqueezeformerBlock(nn.Module):
    """MF + CF: ``LN(x + f(γx + β))`` for f = mixer, FFN, conv module, FFN.

    Arguments
    ---------
    d_model, nhead, d_ffn : int
        Width, mixer heads, FFN hidden width.
    mixer : str
        Token mixer name.
    mixer_options : dict or None
        Keyword options of the mixer.
    dropout : float
        Residual, FFN and convolution dropout.
    activation : str
        FFN activation (Swish).
    kernel_size : int
        Depthwise kernel of the convolution module.
    conv_norm : str
        ``"batchnorm"`` (masked) or ``"layernorm"``.
    """

    def __init__(
        self,
        *,
        d_model,
        nhead,
        d_ffn,
        mixer,
        mixer_options,
        dropout,
        activation,
        kernel_size,
        conv_norm,
    ):
        super().__init__()
        self.scale_mixer = ScaleBias(d_model)
        self.mixer = make_mixer(mixer, d_model=d_model, nhead=nhead, mixer_options=mixer_options)
        self.norm_mixer = nn.LayerNorm(d_model)
        self.scale_ffn1 = ScaleBias(d_model)
        self.ffn1 = FeedForward(
            d_model=d_model, d_ffn=d_ffn, activation=activation, dropout=dropout
        )
        self.norm_ffn1 = nn.LayerNorm(d_model)
        self.scale_conv = ScaleBias(d_model)
        self.conv = ConvModule(
            d_model=d_model,
            kernel_size=kernel_size,
            gate="swish",
            norm=conv_norm,
            activation="swish",
            dropout=dropout,
        )
        self.norm_conv = nn.LayerNorm(d_model)
        self.scale_ffn2 = ScaleBias(d_model)
        self.ffn2 = FeedForward(
            d_model=d_model, d_ffn=d_ffn, activation=activation, dropout=dropout
        )
        self.norm_ffn2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_padding_mask=None) -> torch.Tensor:
        """``x`` (batch, time, d_model) → same shape."""
        mixed = self.mixer(self.scale_mixer(x), key_padding_mask=key_padding_mask)
        x = self.norm_mixer(x + self.dropout(mixed))
        x = self.norm_ffn1(x + self.ffn1(self.scale_ffn1(x)))
        x = self.norm_conv(x + self.conv(self.scale_conv(x), key_padding_mask=key_padding_mask))
        return self.norm_ffn2(x + self.ffn2(self.scale_ffn2(x)))


def _upsample(x: torch.Tensor, time: int) -> torch.Tensor:
    """(batch, low_time, d) repeated ×2 along time and cropped to (batch, time, d)."""
    return x.repeat_interleave(2, dim=1)[:, :time]


@ENCODERS.register("squeezeformer")
class SqueezeformerEncoder(EncoderBase):
    """A stack of Squeezeformer blocks with a temporal U-Net, around any token mixer.

    Arguments
    ---------
    num_layers : int
        Number of blocks (each MF + CF).
    d_model : int
        Model width.
    nhead : int
        Heads of the token mixer.
    d_ffn : int or None
        FFN hidden width (``4 * d_model`` when None).
    mixer : str
        Token mixer name.
    mixer_options : dict or None
        Keyword options of the mixer.
    dropout : float
        Dropout on residual branches, FFNs and convolution modules.
    activation : str
        FFN activation (Swish).
    kernel_size : int
        Depthwise convolution kernel (31).
    conv_norm : str
        ``"batchnorm"`` (masked statistics) or ``"layernorm"``.
    unet : bool
        Use the temporal U-Net (ignored, i.e. off, below 4 blocks unless the
        indices are given).
    time_reduce_idx, time_recovery_idx : int or None
        0-based blocks before which the rate is halved / restored; None picks
        ``num_layers // 2 - 1`` and ``num_layers - 1`` (7 and 15 for 16 blocks).
        ``time_recovery_idx == num_layers`` restores the rate after the last block.
    device, dtype
        Where to build the parameters and their dtype.

    Example
    -------
    >>> from speechbrain_ext.nnet.mixers import list_mixers
    >>> enc = SqueezeformerEncoder(num_layers=2, d_model=16, nhead=2, mixer=list_mixers()[0],
    ...                            kernel_size=3)
    >>> enc.time_reduce_idx is None, len(enc(torch.randn(1, 5, 16)))
    (True, 2)
    """

    def __init__(
        self,
        *,
        num_layers: int,
        d_model: int,
        nhead: int,
        d_ffn: int | None = None,
        mixer: str = "mhsa",
        mixer_options: dict | None = None,
        dropout: float = 0.0,
        activation: str = "swish",
        kernel_size: int = 31,
        conv_norm: str = "batchnorm",
        unet: bool = True,
        time_reduce_idx: int | None = None,
        time_recovery_idx: int | None = None,
        device=None,
        dtype=None,
    ):
        reduce_idx, recovery_idx = self._unet_indices(
            num_layers, unet, time_reduce_idx, time_recovery_idx
        )
        super().__init__(
            num_layers=num_layers,
            d_model=d_model,
            nhead=nhead,
            dropout=dropout,
            device=device,
            dtype=dtype,
            d_ffn=d_ffn or 4 * d_model,
            mixer=mixer,
            mixer_options=mixer_options,
            activation=activation,
            kernel_size=kernel_size,
            conv_norm=conv_norm,
            time_reduce_idx=reduce_idx,
            time_recovery_idx=recovery_idx,
        )

    @staticmethod
    def _unet_indices(num_layers, unet, reduce_idx, recovery_idx):
        if not unet:
            return None, None
        if reduce_idx is None and recovery_idx is None:
            if not isinstance(num_layers, int) or num_layers < 4:
                return None, None
            return num_layers // 2 - 1, num_layers - 1
        if reduce_idx is None or recovery_idx is None:
            raise ValueError("give both time_reduce_idx and time_recovery_idx, or neither")
        if not 1 <= reduce_idx < recovery_idx <= num_layers:
            raise ValueError(
                "need 1 <= time_reduce_idx < time_recovery_idx <= num_layers, got "
                f"{reduce_idx}, {recovery_idx} for {num_layers} layers"
            )
        return reduce_idx, recovery_idx

    def _build(self, *, time_reduce_idx, time_recovery_idx, **block_kwargs):
        d_model = block_kwargs["d_model"]
        self.time_reduce_idx = time_reduce_idx
        self.time_recovery_idx = time_recovery_idx
        self.input_norm = nn.LayerNorm(d_model)
        self.layers = nn.ModuleList(
            SqueezeformerBlock(**block_kwargs) for _ in range(self.num_layers)
        )
        if time_reduce_idx is None:
            self.time_reduction = self.time_recovery = None
        else:
            self.time_reduction = TimeReduction(d_model=d_model, kernel_size=5, stride=2)
            self.time_recovery = nn.Linear(d_model, d_model)

    def forward(
        self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Every block's output for ``x`` (batch, time, d_model), at the input rate.

        Arguments
        ---------
        x : torch.Tensor
            (batch, time, d_model) input.
        key_padding_mask : torch.Tensor or None
            (batch, time) bool, True on padded frames.

        Returns
        -------
        list of torch.Tensor
            ``num_layers`` tensors (batch, time, d_model); outputs of low-rate
            blocks are repeated ×2 and cropped to ``time``.
        """
        x = self._prepare_input(x, key_padding_mask)
        if x.shape[1] == 0:
            return self._empty_outputs(x)
        time = x.shape[1]
        x = self.input_norm(x)
        mask = key_padding_mask
        skip = None
        outputs = []
        for index, block in enumerate(self.layers):
            if index == self.time_reduce_idx:
                skip = x  # (batch, time, d_model)
                x, mask = self.time_reduction(x, key_padding_mask=key_padding_mask)
            if index == self.time_recovery_idx:
                x = skip + self.time_recovery(_upsample(x, time))
                mask, skip = key_padding_mask, None
            x = block(x, key_padding_mask=mask)
            outputs.append(_upsample(x, time) if skip is not None else x)
        if skip is not None:  # recovery after the last block: bring the output back
            outputs[-1] = skip + self.time_recovery(outputs[-1])
        return outputs
