"""Conformer encoder (Gulati et al. 2020) around any token mixer.

Each layer is the Macaron sandwich, every module pre-normed:
``x + ½FFN(LN(x))`` → ``x + Dropout(Mixer(LN(x)))`` → ``x + Conv(LN(x))``
→ ``x + ½FFN(LN(x))`` → ``LN``. The convolution module is pointwise + GLU,
depthwise (kernel 31), BatchNorm (masked, so padding never enters the
statistics; ``conv_norm="layernorm"`` as in SpeechBrain's Conformer), Swish,
pointwise.

Example
-------
>>> import torch
>>> from speechbrain_ext.nnet.encoders import build_encoder
>>> from speechbrain_ext.nnet.mixers import list_mixers
>>> mixer = "mhsa" if "mhsa" in list_mixers() else list_mixers()[0]
>>> enc = build_encoder("conformer", num_layers=2, d_model=32, nhead=4, mixer=mixer,
...                     kernel_size=7)
>>> [out.shape for out in enc(torch.randn(2, 9, 32))]
[torch.Size([2, 9, 32]), torch.Size([2, 9, 32])]
"""

import torch
from torch import nn

from speechbrain_ext.nnet.convolution import ConvModule
from speechbrain_ext.nnet.encoders import ENCODERS
from speechbrain_ext.nnet.encoders.transformer import EncoderBase, make_mixer
from speechbrain_ext.nnet.feedforward import FeedForward


class ConformerLayer(nn.Module):
    """One Conformer layer: ½FFN → mixer → conv module → ½FFN → LayerNorm.

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
        FFN activation.
    kernel_size : int
        Depthwise kernel of the convolution module.
    conv_norm : str
        ``"batchnorm"`` (masked) or ``"layernorm"``.
    conv_activation : str
        Activation after the convolution module's norm.
    ffn_scale : float
        Residual weight of each FFN (½ in the Macaron design).
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
        conv_activation,
        ffn_scale,
    ):
        super().__init__()
        self.ffn_scale = ffn_scale

        def ffn():
            return FeedForward(d_model=d_model, d_ffn=d_ffn, activation=activation, dropout=dropout)

        self.norm_ffn1 = nn.LayerNorm(d_model)
        self.ffn1 = ffn()
        self.norm_mixer = nn.LayerNorm(d_model)
        self.mixer = make_mixer(mixer, d_model=d_model, nhead=nhead, mixer_options=mixer_options)
        self.norm_conv = nn.LayerNorm(d_model)
        self.conv = ConvModule(
            d_model=d_model,
            kernel_size=kernel_size,
            gate="glu",
            norm=conv_norm,
            activation=conv_activation,
            dropout=dropout,
        )
        self.norm_ffn2 = nn.LayerNorm(d_model)
        self.ffn2 = ffn()
        self.norm_out = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_padding_mask=None) -> torch.Tensor:
        """``x`` (batch, time, d_model) → same shape."""
        x = x + self.ffn_scale * self.ffn1(self.norm_ffn1(x))
        x = x + self.dropout(self.mixer(self.norm_mixer(x), key_padding_mask=key_padding_mask))
        x = x + self.conv(self.norm_conv(x), key_padding_mask=key_padding_mask)
        x = x + self.ffn_scale * self.ffn2(self.norm_ffn2(x))
        return self.norm_out(x)


@ENCODERS.register("conformer")
class ConformerEncoder(EncoderBase):
    """A stack of Conformer layers around any token mixer.

    Arguments
    ---------
    num_layers : int
        Number of layers.
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
        Dropout on residual branches, FFNs and the convolution module.
    activation : str
        FFN activation (Swish in Gulati et al.; GELU in Study B).
    kernel_size : int
        Depthwise convolution kernel (31).
    conv_norm : str
        Norm after the depthwise convolution: ``"batchnorm"`` (Gulati; masked
        statistics) or ``"layernorm"`` (SpeechBrain's Conformer).
    conv_activation : str
        Activation after that norm (Swish).
    ffn_scale : float
        Residual weight of each FFN (½).
    device, dtype
        Where to build the parameters and their dtype.

    Example
    -------
    >>> from speechbrain_ext.nnet.mixers import list_mixers
    >>> enc = ConformerEncoder(num_layers=1, d_model=16, nhead=2, mixer=list_mixers()[0],
    ...                        kernel_size=3, conv_norm="layernorm")
    >>> enc(torch.randn(1, 4, 16))[0].shape
    torch.Size([1, 4, 16])
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
        conv_activation: str = "swish",
        ffn_scale: float = 0.5,
        device=None,
        dtype=None,
    ):
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
            conv_activation=conv_activation,
            ffn_scale=ffn_scale,
        )

    def _build(self, **layer_kwargs):
        self.layers = nn.ModuleList(ConformerLayer(**layer_kwargs) for _ in range(self.num_layers))

    def forward(
        self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """Every layer's output for ``x`` (batch, time, d_model).

        Arguments
        ---------
        x : torch.Tensor
            (batch, time, d_model) input.
        key_padding_mask : torch.Tensor or None
            (batch, time) bool, True on padded frames.

        Returns
        -------
        list of torch.Tensor
            ``num_layers`` tensors (batch, time, d_model), each layer-normed.
        """
        x = self._prepare_input(x, key_padding_mask)
        if x.shape[1] == 0:
            return self._empty_outputs(x)
        outputs = []
        for layer in self.layers:
            x = layer(x, key_padding_mask=key_padding_mask)
            outputs.append(x)
        return outputs
