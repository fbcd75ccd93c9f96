"""Fastformer additive attention (Wu et al. 2021), linear in time.

Per head h, with q, k (and v) from linear maps of x:

- α = softmax over time of ``w_α,hᵀ q_t / √d_head``; global query ``q̄ = Σ_t α_t q_t``
- ``p_t = q̄ ⊙ k_t``; β = softmax over time of ``w_β,hᵀ p_t / √d_head``; ``k̄ = Σ_t β_t p_t``
- ``u_t = k̄ ⊙ v_t``; output ``W_o u_t + q_t``

As in the authors' code and Study B, the values are the queries (``share_qv=True``); set it to
False for a separate value projection. Padded frames are left out of both softmaxes.

Example
-------
>>> import torch
>>> from speechbrain_ext.nnet.mixers import build_mixer
>>> mixer = build_mixer("fastformer", d_model=32, nhead=4)
>>> mixer(torch.randn(2, 10, 32)).shape
torch.Size([2, 10, 32])
"""

import torch
from torch import nn

from speechbrain_ext.nnet.masking import zero_padded
from speechbrain_ext.nnet.mixers import MIXERS
from speechbrain_ext.nnet.mixers._common import empty_output, head_dim, prepare_input


def masked_softmax_over_time(
    logits: torch.Tensor, key_padding_mask: torch.Tensor | None
) -> torch.Tensor:
    """Softmax over dim 1 of ``logits`` (batch, time, ...), padded frames getting zero weight.

    Padded logits are set to the dtype's lowest finite value, so they get exactly zero weight
    whenever a row has a valid frame, and an all-padded row gives finite uniform weights.
    """
    if key_padding_mask is not None:
        shape = key_padding_mask.shape + (1,) * (logits.dim() - 2)
        fill = torch.finfo(logits.dtype).min
        logits = logits.masked_fill(key_padding_mask.view(shape), fill)
    return logits.softmax(dim=1)


@MIXERS.register("fastformer")
class Fastformer(nn.Module):
    """Fastformer token mixer.

    Arguments
    ---------
    d_model : int
        Model width.
    nhead : int
        Number of heads; must divide ``d_model``.
    dropout : float
        Dropout on the output projection's input (training only).
    share_qv : bool
        Use the queries as values (authors' code, Study B); otherwise project values.
    bias : bool
        Whether the linear maps have biases.
    device, dtype
        Placement of the parameters.

    Example
    -------
    >>> import torch
    >>> mixer = Fastformer(d_model=16, nhead=2, share_qv=False)
    >>> mask = torch.tensor([[False, False, True]])
    >>> mixer(torch.randn(1, 3, 16), key_padding_mask=mask)[0, 2].abs().sum().item()
    0.0
    """

    def __init__(
        self,
        *,
        d_model: int,
        nhead: int,
        dropout: float = 0.0,
        share_qv: bool = True,
        bias: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.d_model = d_model
        self.nhead = nhead
        self.head_dim = head_dim(d_model, nhead)
        self.share_qv = share_qv
        self.in_proj = nn.Linear(d_model, (2 if share_qv else 3) * d_model, bias=bias, **factory)
        self.w_alpha = nn.Parameter(torch.empty(nhead, self.head_dim, **factory))
        self.w_beta = nn.Parameter(torch.empty(nhead, self.head_dim, **factory))
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform projections and pooling vectors, zero biases."""
        nn.init.xavier_uniform_(self.in_proj.weight)
        for param in (self.w_alpha, self.w_beta):
            nn.init.xavier_uniform_(param)
        for linear in (self.in_proj, self.out_proj):
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None):
        """Mix ``x`` (batch, time, d_model); ``key_padding_mask`` (batch, time), True = padded.

        Returns (batch, time, d_model), zero on padded frames.
        """
        x = prepare_input(x, key_padding_mask, self.d_model, "fastformer")
        if x.shape[1] == 0:
            return empty_output(x)
        batch, time, _ = x.shape
        proj = self.in_proj(x).view(batch, time, -1, self.nhead, self.head_dim)
        q, k = proj[:, :, 0], proj[:, :, 1]  # (batch, time, head, head_dim)
        v = q if self.share_qv else proj[:, :, 2]
        scale = self.head_dim**-0.5

        alpha = masked_softmax_over_time((q * self.w_alpha).sum(-1) * scale, key_padding_mask)
        global_q = torch.einsum("bth,bthd->bhd", alpha, q)  # (batch, head, head_dim)
        p = global_q.unsqueeze(1) * k  # (batch, time, head, head_dim)
        beta = masked_softmax_over_time((p * self.w_beta).sum(-1) * scale, key_padding_mask)
        global_k = torch.einsum("bth,bthd->bhd", beta, p)  # (batch, head, head_dim)
        u = (global_k.unsqueeze(1) * v).reshape(batch, time, self.d_model)
        out = self.out_proj(self.dropout(u)) + q.reshape(batch, time, self.d_model)
        return zero_padded(out, key_padding_mask)
