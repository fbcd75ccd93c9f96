"""SpeechBrain's shipped token mixers and Conformer encoder behind our interfaces, as baselines.

The mixers keep SpeechBrain's behaviour as shipped (its ``MultiheadAttention`` asks for the
attention weights, which forces the unfused path; ``RelPosMHAXL`` builds full T×T matrices;
``HyperMixing`` returns a dummy T×T tensor): that is what a SpeechBrain recipe pays.

- :data:`BASELINE_MIXERS`: ``sb_mha`` (``speechbrain.nnet.attention.MultiheadAttention``),
  ``sb_relposxl`` (``RelPosMHAXL`` with its ``RelPosEncXL`` embedding), ``sb_hypermixing``
  (``speechbrain.nnet.hypermixing.HyperMixing``). Each is built with
  ``build_baseline_mixer(name, d_model=, nhead=)`` and called as ``forward(x, key_padding_mask)``.
- :class:`SpeechBrainConformer`: ``speechbrain.lobes.models.transformer.Conformer.ConformerEncoder``
  with ``attention_type`` ``regularMHA``, ``RelPosMHAXL`` or ``hypermixing``, returning the list of
  layer outputs like our encoders.

Example
-------
>>> import torch
>>> mixer = build_baseline_mixer("sb_relposxl", d_model=16, nhead=2)
>>> mixer(torch.randn(2, 5, 16)).shape
torch.Size([2, 5, 16])
>>> encoder = SpeechBrainConformer(attention_type="regularMHA", num_layers=2, d_model=16, nhead=2,
...                                d_ffn=32)
>>> [h.shape for h in encoder(torch.randn(2, 5, 16))]
[torch.Size([2, 5, 16]), torch.Size([2, 5, 16])]
"""

import torch
from speechbrain.lobes.models.transformer.Conformer import ConformerEncoder
from speechbrain.nnet.attention import MultiheadAttention, RelPosEncXL, RelPosMHAXL
from speechbrain.nnet.hypermixing import HyperMixing
from torch import nn

from speechbrain_ext.registry import Registry

BASELINE_MIXERS = Registry("baseline mixer")

#: Baseline mixer name -> SpeechBrain ``ConformerEncoder`` ``attention_type``.
ATTENTION_TYPES = {
    "sb_mha": "regularMHA",
    "sb_relposxl": "RelPosMHAXL",
    "sb_hypermixing": "hypermixing",
}


def list_baseline_mixers() -> list[str]:
    """Names of the SpeechBrain baseline mixers."""
    return BASELINE_MIXERS.names()


def build_baseline_mixer(name: str, *, d_model: int, nhead: int, **options) -> nn.Module:
    """Build the SpeechBrain baseline mixer ``name`` (one of :func:`list_baseline_mixers`)."""
    return BASELINE_MIXERS.build(name, d_model=d_model, nhead=nhead, **options)


@BASELINE_MIXERS.register("sb_mha")
class SpeechBrainMHA(nn.Module):
    """``speechbrain.nnet.attention.MultiheadAttention`` as a self-attention mixer.

    Arguments
    ---------
    d_model, nhead : int
        Width and heads.
    dropout : float
        Attention dropout.
    """

    def __init__(self, *, d_model: int, nhead: int, dropout: float = 0.0):
        super().__init__()
        self.attention = MultiheadAttention(nhead=nhead, d_model=d_model, dropout=dropout)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None):
        """(batch, time, d_model) -> (batch, time, d_model); mask True = padded."""
        out, _ = self.attention(x, x, x, key_padding_mask=key_padding_mask)
        return out


@BASELINE_MIXERS.register("sb_relposxl")
class SpeechBrainRelPosMHAXL(nn.Module):
    """``RelPosMHAXL`` with the ``RelPosEncXL`` embedding built on each call, as in
    SpeechBrain's ``TransformerASR`` encoder.

    Arguments
    ---------
    d_model, nhead : int
        Width and heads.
    dropout : float
        Attention dropout.
    """

    def __init__(self, *, d_model: int, nhead: int, dropout: float = 0.0):
        super().__init__()
        self.positions = RelPosEncXL(d_model)
        self.attention = RelPosMHAXL(embed_dim=d_model, num_heads=nhead, dropout=dropout)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None):
        """(batch, time, d_model) -> (batch, time, d_model); mask True = padded."""
        pos_embs = self.positions(x)
        out, _ = self.attention(x, x, x, pos_embs=pos_embs, key_padding_mask=key_padding_mask)
        return out


@BASELINE_MIXERS.register("sb_hypermixing")
class SpeechBrainHyperMixing(nn.Module):
    """``speechbrain.nnet.hypermixing.HyperMixing`` configured as SpeechBrain's Conformer does
    (``hypernet_size = d_ffn``, untied, ``nhead`` heads).

    Arguments
    ---------
    d_model, nhead : int
        Width and heads.
    d_ffn : int
        Hypernetwork size (SpeechBrain passes the encoder's FFN width).
    max_length : int
        Longest sequence of the positional table SpeechBrain builds.
    """

    def __init__(self, *, d_model: int, nhead: int, d_ffn: int = 2048, max_length: int = 3000):
        super().__init__()
        self.mixing = HyperMixing(
            input_output_dim=d_model,
            hypernet_size=d_ffn,
            tied=False,
            num_heads=nhead,
            fix_tm_hidden_size=False,
            max_length=max_length,
        )

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None):
        """(batch, time, d_model) -> (batch, time, d_model); mask True = padded."""
        out, _ = self.mixing(x, x, x, key_padding_mask=key_padding_mask)
        return out


class SpeechBrainConformer(nn.Module):
    """SpeechBrain's ``ConformerEncoder`` returning every layer's output, like our encoders.

    Arguments
    ---------
    attention_type : str
        ``"regularMHA"``, ``"RelPosMHAXL"`` or ``"hypermixing"``.
    num_layers, d_model, nhead, d_ffn : int
        Encoder shape.
    kernel_size : int
        Depthwise convolution kernel.
    dropout : float
        Dropout.
    max_length : int
        Positional table length for HyperMixing (SpeechBrain's default is 3000 frames; longer
        inputs need more).
    """

    def __init__(
        self,
        *,
        attention_type: str,
        num_layers: int,
        d_model: int,
        nhead: int,
        d_ffn: int = 2048,
        kernel_size: int = 31,
        dropout: float = 0.0,
        max_length: int = 3000,
    ):
        super().__init__()
        valid = tuple(ATTENTION_TYPES.values())
        if attention_type not in valid:
            raise ValueError(f"unknown attention_type {attention_type!r}; valid: {valid}")
        self.attention_type = attention_type
        self.num_layers = num_layers
        self.d_model = d_model
        self.encoder = ConformerEncoder(
            num_layers=num_layers,
            d_model=d_model,
            d_ffn=d_ffn,
            nhead=nhead,
            kernel_size=kernel_size,
            dropout=dropout,
            attention_type=attention_type,
            output_hidden_states=True,
        )
        if attention_type == "hypermixing" and max_length != 3000:
            for layer in self.encoder.layers:
                layer.mha_layer.positional_encoding = type(layer.mha_layer.positional_encoding)(
                    d_model, max_length
                )
        self.positions = RelPosEncXL(d_model) if attention_type == "RelPosMHAXL" else None

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None):
        """``x`` (batch, time, d_model) -> list of ``num_layers`` (batch, time, d_model)."""
        pos_embs = self.positions(x) if self.positions is not None else None
        out, _, hidden = self.encoder(x, src_key_padding_mask=key_padding_mask, pos_embs=pos_embs)
        return hidden[1:-1] + [out]
