"""Multi-head self-attention on the fused ``scaled_dot_product_attention`` kernel.

softmax(Q Kᵀ / √d_head + bias) V per head. The T×T weights are never materialised by
``forward``; :meth:`MultiHeadSelfAttention.attention_weights` returns them when asked. A model
quantized by :func:`speechbrain_ext.quant.quantize_model` sets ``attention_quantizer`` and then
attends explicitly with binarized Q, K, V and probabilities (BiT); the default stays fused.

Positions (``position``):

- ``None``: none (the encoder adds its own, e.g. a convolutional position embedding).
- ``"rotary"``: RoPE on queries and keys; stays on the fused path.
- ``"relative"``: Transformer-XL relative attention as in SpeechBrain's ``RelPosMHAXL`` (the
  MHSA of Study B): learned biases ``u``, ``v`` and a projection of sinusoidal relative
  embeddings, ``score_ij = (q_i + u)·k_j + (q_i + v)·W_pos r_(i-j)``. The position term is
  one (T, 2T-1) product per head, relative-shifted by a strided view (no copy) and passed to the
  fused kernel as its additive ``attn_mask``; no (T, T, d) tensor is built. Differences from
  SpeechBrain: scores are scaled by 1/√d_head (SpeechBrain: 1/√d_model), and the relative
  sinusoids keep the sign of ``i - j`` (SpeechBrain's table is symmetric in it).

Example
-------
>>> import torch
>>> from speechbrain_ext.nnet.mixers import build_mixer
>>> mixer = build_mixer("mhsa", d_model=32, nhead=4, position="relative")
>>> x = torch.randn(2, 10, 32)
>>> mask = torch.tensor([[False] * 10, [False] * 6 + [True] * 4])
>>> mixer(x, key_padding_mask=mask).shape
torch.Size([2, 10, 32])
>>> mixer.attention_weights(x, key_padding_mask=mask)[1, :, :6, 6:].abs().max().item()
0.0
"""

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_ext.nnet.masking import zero_padded
from speechbrain_ext.nnet.mixers import MIXERS
from speechbrain_ext.nnet.mixers._common import empty_output, head_dim, ignored_keys, prepare_input
from speechbrain_ext.nnet.positional import apply_rotary, relative_sinusoidal_embedding

POSITIONS = (None, "rotary", "relative")


@MIXERS.register("mhsa")
class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention with optional rotary or relative positions.

    Arguments
    ---------
    d_model : int
        Model width.
    nhead : int
        Number of heads; must divide ``d_model``.
    dropout : float
        Dropout on the attention weights (training only).
    position : str or None
        ``None``, ``"rotary"`` or ``"relative"`` (see the module docstring).
    bias : bool
        Whether the input and output projections have biases.
    rotary_base : float
        Wavelength base of RoPE.
    device, dtype
        Placement of the parameters.

    Example
    -------
    >>> import torch
    >>> mixer = MultiHeadSelfAttention(d_model=16, nhead=2, position="rotary")
    >>> mixer(torch.randn(3, 7, 16)).shape
    torch.Size([3, 7, 16])
    """

    def __init__(
        self,
        *,
        d_model: int,
        nhead: int,
        dropout: float = 0.0,
        position: str | None = None,
        bias: bool = True,
        rotary_base: float = 10000.0,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if position not in POSITIONS:
            raise ValueError(f"unknown mhsa position {position!r}; valid: {POSITIONS}")
        factory = {"device": device, "dtype": dtype}
        self.d_model = d_model
        self.nhead = nhead
        self.head_dim = head_dim(d_model, nhead)
        if position == "rotary" and self.head_dim % 2:
            raise ValueError(f"rotary positions need an even head size, got {self.head_dim}")
        self.dropout = dropout
        self.position = position
        self.rotary_base = rotary_base
        # Set by speechbrain_ext.quant.quantize_model: quantized Q, K, V and probabilities on an
        # explicit (non-fused) path. None keeps the fused kernel.
        self.attention_quantizer = None
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=bias, **factory)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias, **factory)
        if position == "relative":
            self.linear_pos = nn.Linear(d_model, d_model, bias=False, **factory)
            self.pos_bias_u = nn.Parameter(torch.empty(nhead, self.head_dim, **factory))
            self.pos_bias_v = nn.Parameter(torch.empty(nhead, self.head_dim, **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform projections and zero biases, as ``torch.nn.MultiheadAttention``."""
        nn.init.xavier_uniform_(self.in_proj.weight)
        for linear in (self.in_proj, self.out_proj):
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)
        if self.position == "relative":
            nn.init.xavier_uniform_(self.pos_bias_u)
            nn.init.xavier_uniform_(self.pos_bias_v)

    def _prepare(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None):
        """Queries, keys, values (batch, head, time, head_dim) and the mask for SDPA.

        The mask is None, a bool (batch, 1, 1, time) tensor (True = attend), or with
        relative positions a float (batch, head, time, time) additive bias.
        """
        batch, time, _ = x.shape
        qkv = self.in_proj(x).view(batch, time, 3, self.nhead, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, head, time, head_dim)
        ignored = None if key_padding_mask is None else ignored_keys(key_padding_mask)
        if self.position == "rotary":
            q = apply_rotary(q, base=self.rotary_base)
            k = apply_rotary(k, base=self.rotary_base)
        if self.position != "relative":
            mask = None if ignored is None else ~ignored[:, None, None, :]
            return q, k, v, mask
        bias = self._relative_bias(q)  # (batch, head, time, time)
        if ignored is not None:
            bias = bias.masked_fill(ignored[:, None, None, :], float("-inf"))
        q = q + self.pos_bias_u.unsqueeze(1).to(q.dtype)
        return q, k, v, bias

    def _relative_bias(self, q: torch.Tensor) -> torch.Tensor:
        """Scaled position scores ``(q_i + v)·W_pos r_(i-j) / √d_head``, (batch, head, T, T)."""
        batch, _, time, _ = q.shape
        table = relative_sinusoidal_embedding(time, self.d_model, device=q.device, dtype=q.dtype)
        pos = self.linear_pos(table).view(2 * time - 1, self.nhead, self.head_dim)
        pos = pos.permute(1, 2, 0)  # (head, head_dim, 2T-1)
        q_v = (q + self.pos_bias_v.unsqueeze(1).to(q.dtype)) * self.head_dim**-0.5
        raw = torch.matmul(q_v, pos).contiguous()  # (batch, head, T, 2T-1), row m: r = T-1-m
        # Relative shift: bias[i, j] = raw[i, T-1-i+j], a strided view of raw.
        return raw.as_strided(
            (batch, self.nhead, time, time),
            (raw.stride(0), raw.stride(1), 2 * time - 2, 1),
            raw.storage_offset() + time - 1,
        )

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None):
        """Mix ``x`` (batch, time, d_model); ``key_padding_mask`` (batch, time), True = padded.

        Returns (batch, time, d_model), zero on padded frames.
        """
        x = prepare_input(x, key_padding_mask, self.d_model, "mhsa")
        if x.shape[1] == 0:
            return empty_output(x)
        batch, time, _ = x.shape
        q, k, v, mask = self._prepare(x, key_padding_mask)
        dropout = self.dropout if self.training else 0.0
        if self.attention_quantizer is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        else:  # quantized: explicit probabilities
            out = self.attention_quantizer(
                q, k, v, attn_mask=mask, dropout_p=dropout, training=self.training
            )  # (batch, head, time, head_dim)
        out = self.out_proj(out.transpose(1, 2).reshape(batch, time, self.d_model))
        return zero_padded(out, key_padding_mask)

    def attention_weights(
        self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The attention weights (batch, head, time, time), built explicitly (no dropout)."""
        x = prepare_input(x, key_padding_mask, self.d_model, "mhsa")
        q, k, _, mask = self._prepare(x, key_padding_mask)
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.head_dim**-0.5
        if mask is not None:
            scores = (
                scores + mask
                if mask.is_floating_point()
                else scores.masked_fill(~mask, float("-inf"))
            )
        return scores.float().softmax(dim=-1).to(x.dtype)
