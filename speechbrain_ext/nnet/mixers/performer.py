"""Performer attention with FAVOR+ positive random features (Choromanski et al. 2021).

Study A leaves open whether a linear attention (Linformer, Performer) could replace its sparse
one. Performer is chosen here because it is exactly padding invariant: Linformer projects the
time axis with a fixed (k, T) matrix, so what a valid frame receives depends on the padded
length. FAVOR+ estimates the softmax kernel ``exp(qᵀk / √d)`` by ``φ(q)ᵀφ(k)`` with

    φ(x) = exp(ωᵀx' − |x'|²/2) / √m,   x' = x / d^¼,   ω: m orthogonal Gaussian features,

so that, per head, ``out_i = φ(q_i)ᵀ (Σ_j φ(k_j) v_jᵀ) / φ(q_i)ᵀ Σ_j φ(k_j)``, linear in time.
Padded keys get φ = 0, so they drop out of both sums. For stability the exponent is shifted
by a per-query maximum and by one maximum over the valid keys of each utterance (both cancel
in the ratio). The features are computed in float32 whatever the input dtype.

The random features are a buffer drawn at construction (deterministic under a seed, saved in
checkpoints); :meth:`PerformerAttention.redraw_features` draws new ones.

Example
-------
>>> import torch
>>> from speechbrain_ext.nnet.mixers import build_mixer
>>> mixer = build_mixer("performer", d_model=32, nhead=4, num_features=16)
>>> mixer(torch.randn(2, 10, 32)).shape
torch.Size([2, 10, 32])
"""

import math

import torch
from torch import nn

from speechbrain_ext.nnet.masking import zero_padded
from speechbrain_ext.nnet.mixers import MIXERS
from speechbrain_ext.nnet.mixers._common import empty_output, head_dim, prepare_input


def orthogonal_gaussian_features(
    num_features: int, dim: int, *, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """``num_features`` random features (num_features, dim), orthogonal within blocks of ``dim``.

    Rows have the norms of Gaussian vectors (chi-distributed), so each row is marginally
    N(0, I) while rows of a block are exactly orthogonal (lower estimator variance).
    """
    blocks = []
    for start in range(0, num_features, dim):
        gaussian = torch.randn(dim, dim, generator=generator, device=device)
        q, r = torch.linalg.qr(gaussian)
        q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # Haar-distributed columns
        blocks.append(q.T[: min(dim, num_features - start)])
    norms = torch.randn(num_features, dim, generator=generator, device=device).norm(dim=1)
    return torch.cat(blocks) * norms.unsqueeze(1)


def favor_features(
    x: torch.Tensor,
    projection: torch.Tensor,
    *,
    is_query: bool,
    key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Positive random features φ(x) of queries or keys, in float32.

    Arguments
    ---------
    x : torch.Tensor
        (batch, head, time, head_dim) queries or keys.
    projection : torch.Tensor
        (num_features, head_dim) random features ω.
    is_query : bool
        Queries are stabilised per frame; keys by one maximum over the valid frames of each
        utterance and head (so the scale is the same whatever the padding).
    key_padding_mask : torch.Tensor, optional
        (batch, time), True = padded; padded keys get all-zero features.

    Returns
    -------
    torch.Tensor
        (batch, head, time, num_features).
    """
    x = x.float() * x.shape[-1] ** -0.25
    logits = torch.matmul(x, projection.float().T) - 0.5 * x.pow(2).sum(-1, keepdim=True)
    if is_query:
        shift = logits.amax(dim=-1, keepdim=True)
    else:
        valid = logits
        if key_padding_mask is not None:
            valid = logits.masked_fill(key_padding_mask[:, None, :, None], -math.inf)
        shift = valid.amax(dim=(-2, -1), keepdim=True)
        shift = shift.masked_fill(torch.isinf(shift), 0.0)  # utterance with no valid frame
    features = torch.exp(logits - shift.detach()) / math.sqrt(projection.shape[0])
    if key_padding_mask is not None and not is_query:
        features = features.masked_fill(key_padding_mask[:, None, :, None], 0.0)
    return features


@MIXERS.register("performer")
class PerformerAttention(nn.Module):
    """Multi-head non-causal Performer (FAVOR+) attention.

    Arguments
    ---------
    d_model : int
        Model width.
    nhead : int
        Number of heads; must divide ``d_model``.
    dropout : float
        Dropout on the attention output before the output projection (training only; FAVOR+
        never forms attention weights to drop).
    num_features : int, optional
        Random features m per head; default ``round(d_head · ln d_head)``, at least ``d_head``.
    bias : bool
        Whether the projections have biases.
    eps : float
        Added to the normaliser ``φ(q)ᵀ Σ φ(k)``.
    device, dtype
        Placement of the parameters.

    Example
    -------
    >>> import torch
    >>> mixer = PerformerAttention(d_model=16, nhead=2)
    >>> mixer.projection.shape  # 8 · ln 8 ≈ 17 features of size 8
    torch.Size([17, 8])
    >>> mask = torch.tensor([[False, False, True]])
    >>> mixer(torch.randn(1, 3, 16), key_padding_mask=mask).shape
    torch.Size([1, 3, 16])
    """

    def __init__(
        self,
        *,
        d_model: int,
        nhead: int,
        dropout: float = 0.0,
        num_features: int | None = None,
        bias: bool = True,
        eps: float = 1e-6,
        device=None,
        dtype=None,
    ):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.d_model = d_model
        self.nhead = nhead
        self.head_dim = head_dim(d_model, nhead)
        if num_features is None:
            num_features = max(self.head_dim, round(self.head_dim * math.log(self.head_dim)))
        if num_features < 1:
            raise ValueError(f"num_features must be positive, got {num_features}")
        self.num_features = num_features
        self.eps = eps
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=bias, **factory)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias, **factory)
        self.register_buffer(
            "projection", torch.empty(num_features, self.head_dim, device=device, dtype=dtype)
        )
        nn.init.xavier_uniform_(self.in_proj.weight)
        for linear in (self.in_proj, self.out_proj):
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)
        self.redraw_features()

    @torch.no_grad()
    def redraw_features(self, generator: torch.Generator | None = None) -> None:
        """Draw new orthogonal random features (in place)."""
        features = orthogonal_gaussian_features(
            self.num_features, self.head_dim, generator=generator, device=self.projection.device
        )
        self.projection.copy_(features)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None):
        """Mix ``x`` (batch, time, d_model); ``key_padding_mask`` (batch, time), True = padded.

        Returns (batch, time, d_model), zero on padded frames.
        """
        x = prepare_input(x, key_padding_mask, self.d_model, "performer")
        if x.shape[1] == 0:
            return empty_output(x)
        batch, time, _ = x.shape
        qkv = self.in_proj(x).view(batch, time, 3, self.nhead, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, head, time, head_dim)
        with torch.autocast(device_type=x.device.type, enabled=False):  # float32 features
            phi_q = favor_features(q, self.projection, is_query=True)  # (b, h, t, m)
            phi_k = favor_features(
                k, self.projection, is_query=False, key_padding_mask=key_padding_mask
            )
            context = torch.matmul(phi_k.transpose(-1, -2), v.float())  # (b, h, m, head_dim)
            normaliser = torch.matmul(phi_q, phi_k.sum(dim=-2, keepdim=True).transpose(-1, -2))
            out = torch.matmul(phi_q, context) / (normaliser + self.eps)  # (b, h, t, head_dim)
        out = out.to(x.dtype).transpose(1, 2).reshape(batch, time, self.d_model)
        return zero_padded(self.out_proj(self.dropout(out)), key_padding_mask)
