"""Quantized attention products (BiT): binarized Q, K, V and attention probabilities.

Fused ``scaled_dot_product_attention`` never exposes the probabilities, so a quantized MHSA
(and the sparse attention's fixed pattern) computes attention explicitly through
:class:`QuantizedAttention`: ``softmax(Q_b K_bᵀ / √d + bias) `` binarized to {0, α_p} and
multiplied by ``V_b``. Q, K, V use the signed set ({−α, α} at 1 bit), the probabilities the
unsigned one; masked keys are set to zero probability *after* quantization, so padding never
leaks (β could otherwise move a zero probability to α). The mixers call it only when
``quantize_model`` attached one (their ``attention_quantizer`` attribute); their default fused
path is untouched.

Example
-------
>>> import torch
>>> attention = QuantizedAttention(bits=1)
>>> q, k, v = torch.randn(3, 2, 4, 5, 8).unbind(0)  # (batch, head, time, head_dim)
>>> mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])[:, None, None, :]
>>> out = attention(q, k, v, attn_mask=mask)
>>> out.shape
torch.Size([2, 4, 5, 8])
>>> fresh = QuantizedAttention(bits=1)  # alpha of the probabilities: 4 * mean = 1
>>> allowed = torch.tensor([[True, True, True, False]])
>>> probs = torch.tensor([[0.75, 0.0, 0.0, 0.25]])
>>> fresh.probabilities(probs, allowed=allowed).tolist()
[[1.0, 0.0, 0.0, 0.0]]
"""

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_ext.quant.layers import build_act_quantizer


class QuantizedAttention(nn.Module):
    """Quantizers of the attention products and the explicit attention that uses them.

    Arguments
    ---------
    bits : int
        Bits of Q, K, V and the probabilities (1, 2, 4, 8).
    act_quantizer : str, optional
        Registry name of the activation quantizer (default by bit width).
    """

    def __init__(self, *, bits: int, act_quantizer: str | None = None):
        super().__init__()
        self.bits = bits
        self.query = build_act_quantizer(bits, act_quantizer, value_set="signed")
        self.key = build_act_quantizer(bits, act_quantizer, value_set="signed")
        self.value = build_act_quantizer(bits, act_quantizer, value_set="signed")
        self.probs = build_act_quantizer(bits, act_quantizer, value_set="unsigned")

    def quantize_qkv(self, q, k, v):
        """Quantized queries, keys and values (any shape)."""
        return self.query(q), self.key(k), self.value(v)

    def probabilities(self, weights: torch.Tensor, *, allowed: torch.Tensor) -> torch.Tensor:
        """Quantized softmax ``weights``; keys not ``allowed`` (broadcastable bool) get 0."""
        quantized = self.probs(weights)
        return quantized.masked_fill(~allowed, 0.0)

    def forward(self, q, k, v, *, attn_mask=None, dropout_p: float = 0.0, training=False):
        """Explicit attention on quantized operands; same arguments as SDPA.

        ``q``, ``k``, ``v`` (batch, head, time, head_dim); ``attn_mask`` None, bool (True =
        attend) or an additive float bias (``-inf`` = masked), broadcastable to
        (batch, head, time, time). Returns (batch, head, time, head_dim).
        """
        q, k, v = self.quantize_qkv(q, k, v)
        scores = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5
        if attn_mask is None:
            allowed = torch.ones((), dtype=torch.bool, device=q.device)
        elif attn_mask.dtype == torch.bool:
            allowed = attn_mask
            scores = scores.masked_fill(~allowed, float("-inf"))
        else:
            allowed = attn_mask > float("-inf")
            scores = scores + attn_mask
        weights = scores.float().softmax(dim=-1).to(q.dtype)
        weights = self.probabilities(weights, allowed=allowed)
        weights = F.dropout(weights, dropout_p, training)
        return torch.matmul(weights, v)
