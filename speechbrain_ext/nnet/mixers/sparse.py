"""Sparse Transformer attention (Child et al. 2019), the mixer of Study A's "Sparseformer".

Non-causal, symmetric versions of the two factorised patterns, with stride ``l``:

- ``"strided"``: query ``i`` sees the band ``|i - j| < l`` and every l-th position
  ``(i - j) mod l = 0``.
- ``"fixed"``: query ``i`` sees its own block (``i // l == j // l``) and the last ``c``
  "summary" positions of every block (``j mod l >= l - c``).

Both heads of the original factorisation are merged into one softmax per query. Nothing of
size (time, time) is built: the sequence is cut into blocks of ``l`` frames.

- strided: a query block scores its three neighbouring key blocks (the band), and the
  sequence viewed as a (time / l, l) grid gives the strided keys as columns (each query scores
  the T / l keys of its own column); scores (T · (3l + T/l) per head) go through one masked
  softmax.
- fixed: every query block shares one key set (its own block plus all summary frames,
  l + c·T/l keys), so each block is one fused ``scaled_dot_product_attention`` call.

Per head the cost is O(T · (l + T/l)), i.e. O(T·√T) for ``l ≈ √T``. The stride is fixed at
construction (not derived from the batch's length, which would break padding invariance):
choose it near √T of typical inputs. :func:`sparse_attention_mask` gives the same pattern as
an explicit (T, T) mask, for tests and plots.

Example
-------
>>> import torch
>>> from speechbrain_ext.nnet.mixers import build_mixer
>>> mixer = build_mixer("sparse", d_model=32, nhead=4, pattern="fixed", stride=4, num_summary=1)
>>> mixer(torch.randn(2, 10, 32)).shape
torch.Size([2, 10, 32])
>>> sparse_attention_mask(6, pattern="strided", stride=2).int()
tensor([[1, 1, 1, 0, 1, 0],
        [1, 1, 1, 1, 0, 1],
        [1, 1, 1, 1, 1, 0],
        [0, 1, 1, 1, 1, 1],
        [1, 0, 1, 1, 1, 1],
        [0, 1, 0, 1, 1, 1]], dtype=torch.int32)
"""

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_ext.nnet.masking import zero_padded
from speechbrain_ext.nnet.mixers import MIXERS
from speechbrain_ext.nnet.mixers._common import empty_output, head_dim, prepare_input

PATTERNS = ("strided", "fixed")


def _check_pattern(pattern: str, stride: int, num_summary: int) -> None:
    """Raise ``ValueError`` on an unknown pattern or an impossible stride / summary count."""
    if pattern not in PATTERNS:
        raise ValueError(f"unknown sparse attention pattern {pattern!r}; valid: {PATTERNS}")
    if stride < 1:
        raise ValueError(f"sparse attention stride must be >= 1, got {stride}")
    if pattern == "fixed" and not 1 <= num_summary <= stride:
        raise ValueError(f"num_summary must be in [1, stride={stride}], got {num_summary}")


def sparse_attention_mask(
    length: int, *, pattern: str, stride: int, num_summary: int = 1, device=None
) -> torch.Tensor:
    """The pattern as a dense bool (length, length) mask, True where query i may see key j.

    Arguments
    ---------
    length : int
        Sequence length.
    pattern : str
        ``"strided"`` or ``"fixed"``.
    stride : int
        Stride / block size ``l``.
    num_summary : int
        Summary positions per block ``c`` (``"fixed"`` only).
    device
        Placement of the result.

    Returns
    -------
    torch.Tensor
        (length, length) bool.
    """
    _check_pattern(pattern, stride, num_summary)
    i = torch.arange(length, device=device).unsqueeze(1)
    j = torch.arange(length, device=device).unsqueeze(0)
    if pattern == "strided":
        return ((i - j).abs() < stride) | ((i - j) % stride == 0)
    return (i // stride == j // stride) | (j % stride >= stride - num_summary)


@MIXERS.register("sparse")
class SparseAttention(nn.Module):
    """Multi-head attention restricted to a Sparse Transformer pattern, computed block-wise.

    Arguments
    ---------
    d_model : int
        Model width.
    nhead : int
        Number of heads; must divide ``d_model``.
    dropout : float
        Dropout on the attention weights (training only).
    pattern : str
        ``"strided"`` or ``"fixed"``.
    stride : int
        Stride / block size ``l``; about √T of typical inputs.
    num_summary : int
        Summary positions per block ``c`` for the ``"fixed"`` pattern, in [1, stride].
    bias : bool
        Whether the projections have biases.
    device, dtype
        Placement of the parameters.

    Example
    -------
    >>> import torch
    >>> mixer = SparseAttention(d_model=16, nhead=2, pattern="strided", stride=3)
    >>> mask = torch.tensor([[False] * 7, [False] * 4 + [True] * 3])
    >>> mixer(torch.randn(2, 7, 16), key_padding_mask=mask).shape
    torch.Size([2, 7, 16])
    """

    def __init__(
        self,
        *,
        d_model: int,
        nhead: int,
        dropout: float = 0.0,
        pattern: str = "strided",
        stride: int = 32,
        num_summary: int = 4,
        bias: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        _check_pattern(pattern, stride, num_summary)
        factory = {"device": device, "dtype": dtype}
        self.d_model = d_model
        self.nhead = nhead
        self.head_dim = head_dim(d_model, nhead)
        self.dropout = dropout
        self.pattern = pattern
        self.stride = stride
        self.num_summary = num_summary
        # Set by speechbrain_ext.quant.quantize_model (quantized Q, K, V and probabilities).
        self.attention_quantizer = None
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=bias, **factory)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias, **factory)
        nn.init.xavier_uniform_(self.in_proj.weight)
        for linear in (self.in_proj, self.out_proj):
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None):
        """Mix ``x`` (batch, time, d_model); ``key_padding_mask`` (batch, time), True = padded.

        Returns (batch, time, d_model), zero on padded frames.
        """
        x = prepare_input(x, key_padding_mask, self.d_model, "sparse")
        if x.shape[1] == 0:
            return empty_output(x)
        batch, time, _ = x.shape
        blocks = math.ceil(time / self.stride)
        padded_time = blocks * self.stride
        qkv = self.in_proj(x).view(batch, time, 3, self.nhead, self.head_dim)
        qkv = F.pad(qkv.permute(2, 0, 3, 1, 4), (0, 0, 0, padded_time - time))
        q, k, v = qkv.unbind(0)  # each (batch, head, padded_time, head_dim)
        key_valid = torch.zeros(batch, padded_time, dtype=torch.bool, device=x.device)
        key_valid[:, :time] = True if key_padding_mask is None else ~key_padding_mask
        if self.pattern == "strided":
            out = self._strided(q, k, v, key_valid)
        else:
            out = self._fixed(q, k, v, key_valid)
        out = out[:, :, :time].transpose(1, 2).reshape(batch, time, self.d_model)
        return zero_padded(self.out_proj(out), key_padding_mask)

    def _strided(self, q, k, v, key_valid):
        """Band + column attention; q, k, v (batch, head, T', head_dim), T' = blocks · l."""
        batch, nhead, padded_time, dim = q.shape
        step, blocks = self.stride, padded_time // self.stride
        if self.attention_quantizer is not None:
            q, k, v = self.attention_quantizer.quantize_qkv(q, k, v)
        kb, vb = k.view(batch, nhead, blocks, step, dim), v.view(batch, nhead, blocks, step, dim)
        qb = q.view_as(kb) * dim**-0.5  # block n, offset r: position n·l + r
        # Band: query block n against key blocks n-1, n, n+1 (window of 3l keys).
        k_win = F.pad(k, (0, 0, step, step)).unfold(2, 3 * step, step)  # (b, h, n, d, 3l)
        v_win = F.pad(v, (0, 0, step, step)).unfold(2, 3 * step, step).transpose(-1, -2)
        band = torch.matmul(qb, k_win)  # (b, h, n, l, 3l)
        offset = torch.arange(step, device=q.device)
        window = torch.arange(3 * step, device=q.device)
        in_band = (offset[:, None] + step - window[None, :]).abs() < step  # (l, 3l)
        win_valid = F.pad(key_valid, (step, step)).unfold(1, 3 * step, step)  # (b, n, 3l)
        band_ok = in_band & win_valid[:, :, None, :]  # (b, n, l, 3l)
        # Columns: query (n, r) against keys (m, r), m != n (j = i is already in the band).
        column = torch.einsum("bhnrd,bhmrd->bhnrm", qb, kb)  # (b, h, n, l, blocks)
        col_valid = key_valid.view(batch, blocks, step).transpose(1, 2)  # (b, r, m)
        not_self = ~torch.eye(blocks, dtype=torch.bool, device=q.device)  # (n, m)
        col_ok = col_valid[:, None, :, :] & not_self[None, :, None, :]  # (b, n, l, blocks)

        scores = torch.cat([band, column], dim=-1).float()
        allowed = torch.cat([band_ok, col_ok], dim=-1).unsqueeze(1)  # (b, 1, n, l, 3l + blocks)
        # The lowest finite value gives exactly zero weight next to any allowed key and keeps
        # rows without one (padded queries only) finite.
        scores = scores.masked_fill(~allowed, torch.finfo(torch.float32).min)
        weights = scores.softmax(dim=-1)
        if self.attention_quantizer is not None:
            weights = self.attention_quantizer.probabilities(weights, allowed=allowed)
        weights = F.dropout(weights, self.dropout, self.training).to(q.dtype)
        w_band, w_col = weights.split([3 * step, blocks], dim=-1)
        out = torch.matmul(w_band, v_win) + torch.einsum("bhnrm,bhmrd->bhnrd", w_col, vb)
        return out.reshape(batch, nhead, padded_time, dim)

    def _fixed(self, q, k, v, key_valid):
        """Own block + shared summary keys; q, k, v (batch, head, T', head_dim)."""
        batch, nhead, padded_time, dim = q.shape
        step, blocks, summary = self.stride, padded_time // self.stride, self.num_summary
        qb = q.reshape(batch * nhead, blocks, step, dim)

        def block_keys(t: torch.Tensor) -> torch.Tensor:  # -> (b·h, n, l + n·c, d)
            tb = t.reshape(batch * nhead, blocks, step, dim)
            shared = tb[:, :, step - summary :].reshape(batch * nhead, 1, blocks * summary, dim)
            return torch.cat([tb, shared.expand(-1, blocks, -1, -1)], dim=2)

        valid = key_valid.view(batch, blocks, step)
        shared_valid = valid[:, :, step - summary :].reshape(batch, 1, blocks * summary)
        owner = torch.arange(blocks, device=q.device).repeat_interleave(summary)
        # Own block's summary frames are already among its keys: leave the copies out.
        not_own = owner[None, :] != torch.arange(blocks, device=q.device)[:, None]  # (n, n·c)
        allowed = torch.cat([valid, shared_valid & not_own], dim=-1)  # (b, n, l + n·c)
        allowed = allowed | ~allowed.any(dim=-1, keepdim=True)  # rows with no key: padded only
        allowed = allowed[:, None, :, None, :].expand(-1, nhead, -1, -1, -1)
        attend = F.scaled_dot_product_attention
        if self.attention_quantizer is not None:  # explicit, quantized probabilities
            attend = functools.partial(self.attention_quantizer, training=self.training)
        out = attend(
            qb,
            block_keys(k),
            block_keys(v),
            attn_mask=allowed.reshape(batch * nhead, blocks, 1, -1),
            dropout_p=self.dropout if self.training else 0.0,
        )  # (b·h, n, l, d)
        return out.reshape(batch, nhead, padded_time, dim)
