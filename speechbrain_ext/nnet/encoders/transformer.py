"""Pre-norm Transformer encoder around any token mixer (HuBERT-style option).

Each layer is ``x + Dropout(Mixer(LN(x)))`` then ``x + FFN(LN(x))``; a final
LayerNorm is applied to the last layer's output. With ``pos_conv=True`` the
input first gets HuBERT's convolutional relative positional embedding
(kernel 128, 16 groups, weight norm).

Example
-------
>>> import torch
>>> from speechbrain_ext.nnet.encoders import build_encoder
>>> from speechbrain_ext.nnet.mixers import list_mixers
>>> mixer = "mhsa" if "mhsa" in list_mixers() else list_mixers()[0]
>>> enc = build_encoder("transformer", num_layers=2, d_model=32, nhead=4, mixer=mixer)
>>> outputs = enc(torch.randn(2, 10, 32))
>>> len(outputs), outputs[-1].shape
(2, torch.Size([2, 10, 32]))
"""

import torch
from torch import nn

from speechbrain_ext.nnet.convolution import ConvPositionalEmbedding
from speechbrain_ext.nnet.encoders import ENCODERS
from speechbrain_ext.nnet.feedforward import FeedForward
from speechbrain_ext.nnet.mixers import build_mixer


def check_encoder_args(*, num_layers: int, d_model: int, nhead: int, dropout: float) -> None:
    """Raise ``ValueError`` naming the first invalid shared encoder argument."""
    for name, value in (("num_layers", num_layers), ("d_model", d_model), ("nhead", nhead)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")


def make_mixer(mixer: str, *, d_model: int, nhead: int, mixer_options: dict | None) -> nn.Module:
    """Build a token mixer by registry name; errors name the option that failed."""
    options = dict(mixer_options or {})
    try:
        return build_mixer(mixer, d_model=d_model, nhead=nhead, **options)
    except TypeError as error:
        raise TypeError(f"mixer {mixer!r} rejected options {sorted(options)}: {error}") from error


class EncoderBase(nn.Module):
    """Shared plumbing of the encoders: validation and device/dtype placement.

    Subclasses build their layers in ``_build(**kwargs)``; the whole module is
    built on ``device`` (e.g. ``"meta"`` to count parameters without memory)
    and cast to ``dtype``.
    """

    def __init__(self, *, num_layers, d_model, nhead, dropout, device=None, dtype=None, **kwargs):
        super().__init__()
        check_encoder_args(num_layers=num_layers, d_model=d_model, nhead=nhead, dropout=dropout)
        self.num_layers = num_layers
        self.d_model = d_model
        self.nhead = nhead
        if device is None:
            self._build(d_model=d_model, nhead=nhead, dropout=dropout, **kwargs)
        else:
            with torch.device(device):
                self._build(d_model=d_model, nhead=nhead, dropout=dropout, **kwargs)
        if dtype is not None:
            self.to(dtype=dtype)

    def _build(self, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def _prepare_input(self, x: torch.Tensor, key_padding_mask) -> torch.Tensor:
        """Checked ``x`` with padded frames zeroed by ``masked_fill`` (NaN * 0 would be NaN).

        Whatever the padded frames hold (NaN and inf included) then never reaches a valid
        output, whatever the layers do (batch norm statistics, convolutions over padding).
        """
        self._check_input(x, self.d_model, key_padding_mask)
        if key_padding_mask is None:
            return x
        return x.masked_fill(key_padding_mask.unsqueeze(-1), 0.0)

    def _empty_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """What every encoder returns for a zero-length ``x`` (batch, 0, d_model): one empty
        (batch, 0, d_model) tensor per layer, still attached to ``x``'s graph.
        """
        return [x.clone() for _ in range(self.num_layers)]

    @staticmethod
    def _check_input(x: torch.Tensor, d_model: int, key_padding_mask) -> None:
        if x.dim() != 3 or x.shape[-1] != d_model:
            raise ValueError(f"expected x of shape (batch, time, {d_model}), got {tuple(x.shape)}")
        if key_padding_mask is not None and key_padding_mask.shape != x.shape[:2]:
            raise ValueError(
                f"key_padding_mask shape {tuple(key_padding_mask.shape)} does not match "
                f"x's (batch, time) {tuple(x.shape[:2])}"
            )
        if key_padding_mask is not None and key_padding_mask.dtype != torch.bool:
            raise ValueError(
                f"key_padding_mask must be bool (True = padded), got {key_padding_mask.dtype}"
            )


class TransformerLayer(nn.Module):
    """One pre-norm layer: ``x + Dropout(Mixer(LN(x)))``, then ``x + FFN(LN(x))``.

    Arguments
    ---------
    d_model, nhead, d_ffn : int
        Width, mixer heads, FFN hidden width.
    mixer : str
        Token mixer name (:func:`speechbrain_ext.nnet.mixers.list_mixers`).
    mixer_options : dict or None
        Keyword options of the mixer.
    dropout : float
        Residual and FFN dropout.
    activation : str
        FFN activation.
    """

    def __init__(self, *, d_model, nhead, d_ffn, mixer, mixer_options, dropout, activation):
        super().__init__()
        self.norm_mixer = nn.LayerNorm(d_model)
        self.mixer = make_mixer(mixer, d_model=d_model, nhead=nhead, mixer_options=mixer_options)
        self.norm_ffn = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model=d_model, d_ffn=d_ffn, activation=activation, dropout=dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_padding_mask=None) -> torch.Tensor:
        """``x`` (batch, time, d_model) → same shape."""
        x = x + self.dropout(self.mixer(self.norm_mixer(x), key_padding_mask=key_padding_mask))
        return x + self.ffn(self.norm_ffn(x))


@ENCODERS.register("transformer")
class TransformerEncoder(EncoderBase):
    """A stack of pre-norm Transformer layers around any token mixer.

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
        Dropout on the positional-embedding output, residual branches and FFN.
    activation : str
        FFN activation (``"gelu"``).
    pos_conv : bool
        Add HuBERT's convolutional positional embedding at the input.
    pos_conv_kernel, pos_conv_groups : int
        Its kernel size (128) and groups (16).
    device, dtype
        Where to build the parameters and their dtype (``device="meta"``
        builds without memory, e.g. to count parameters).

    Example
    -------
    >>> from speechbrain_ext.nnet.mixers import list_mixers
    >>> mixer = list_mixers()[0]
    >>> enc = TransformerEncoder(
    ...     num_layers=2, d_model=32, nhead=4, mixer=mixer, pos_conv=True, pos_conv_kernel=8
    ... )
    >>> mask = torch.tensor([[False] * 7, [False] * 4 + [True] * 3])
    >>> [out.shape for out in enc(torch.randn(2, 7, 32), key_padding_mask=mask)]
    [torch.Size([2, 7, 32]), torch.Size([2, 7, 32])]
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
        activation: str = "gelu",
        pos_conv: bool = False,
        pos_conv_kernel: int = 128,
        pos_conv_groups: int = 16,
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
            pos_conv=pos_conv,
            pos_conv_kernel=pos_conv_kernel,
            pos_conv_groups=pos_conv_groups,
        )

    def _build(
        self,
        *,
        d_model,
        nhead,
        dropout,
        d_ffn,
        mixer,
        mixer_options,
        activation,
        pos_conv,
        pos_conv_kernel,
        pos_conv_groups,
    ):
        self.pos_conv = (
            ConvPositionalEmbedding(
                d_model=d_model, kernel_size=pos_conv_kernel, groups=pos_conv_groups
            )
            if pos_conv
            else None
        )
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            TransformerLayer(
                d_model=d_model,
                nhead=nhead,
                d_ffn=d_ffn,
                mixer=mixer,
                mixer_options=mixer_options,
                dropout=dropout,
                activation=activation,
            )
            for _ in range(self.num_layers)
        )
        self.final_norm = nn.LayerNorm(d_model)

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
            ``num_layers`` tensors (batch, time, d_model); the last is normalised
            by the final LayerNorm.
        """
        x = self._prepare_input(x, key_padding_mask)
        if x.shape[1] == 0:
            return self._empty_outputs(x)
        if self.pos_conv is not None:
            x = self.pos_conv(x, key_padding_mask=key_padding_mask)
        x = self.dropout(x)
        outputs = []
        for layer in self.layers:
            x = layer(x, key_padding_mask=key_padding_mask)
            outputs.append(x)
        outputs[-1] = self.final_norm(x)
        return outputs
