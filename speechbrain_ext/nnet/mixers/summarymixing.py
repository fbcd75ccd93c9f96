"""SummaryMixing (Parcollet et al.), linear in time.

A local branch ``f`` (GELU MLP, then LayerNorm) sees each frame alone; a summary branch ``s``
(GELU MLP) is averaged over the valid frames and layer-normalised into one vector ``s̄`` per
utterance; a one-layer GELU MLP ``c`` combines them: ``y_t = c([f(x_t); s̄])``, with dropout on
``c``'s input. ``summarymixing_lite`` drops ``f``: ``y_t = c(s̄)``, the same for every frame
(the Conformer's convolution module supplies the local context).

Unlike the public SummaryMixing code, the mask follows the project convention
(``key_padding_mask`` True = padded) and ``forward`` returns a plain tensor.

Example
-------
>>> import torch
>>> from speechbrain_ext.nnet.mixers import build_mixer
>>> x = torch.randn(2, 10, 32)
>>> build_mixer("summarymixing", d_model=32, nhead=4)(x).shape
torch.Size([2, 10, 32])
>>> lite = build_mixer("summarymixing_lite", d_model=32, nhead=4)
>>> y = lite(x)
>>> torch.allclose(y[:, 0], y[:, 9])
True
"""

from collections.abc import Sequence

import torch
from torch import nn

from speechbrain_ext.nnet.masking import zero_padded
from speechbrain_ext.nnet.mixers import MIXERS
from speechbrain_ext.nnet.mixers._common import empty_output, prepare_input


class GroupedLinear(nn.Module):
    """Block-diagonal linear map: the features are split into ``groups`` chunks, each
    projected by its own weight (the public SummaryMixing code's ``n_split``).

    Arguments
    ---------
    in_dim, out_dim : int
        Feature sizes; both must be divisible by ``groups``.
    groups : int
        Number of independent blocks; 1 is a plain ``nn.Linear``.
    device, dtype
        Placement of the parameters.

    Example
    -------
    >>> import torch
    >>> layer = GroupedLinear(8, 4, groups=2)
    >>> layer(torch.randn(3, 5, 8)).shape
    torch.Size([3, 5, 4])
    >>> sum(p.numel() for p in layer.parameters())  # 2 blocks of 4x2 weights + 4 biases
    20
    """

    def __init__(self, in_dim: int, out_dim: int, *, groups: int = 1, device=None, dtype=None):
        super().__init__()
        if groups < 1 or in_dim % groups or out_dim % groups:
            raise ValueError(
                f"groups={groups} must divide both in_dim={in_dim} and out_dim={out_dim}"
            )
        self.groups = groups
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(
            torch.empty(groups, in_dim // groups, out_dim // groups, **factory)
        )
        self.bias = nn.Parameter(torch.empty(out_dim, **factory))
        bound = (groups / in_dim) ** 0.5  # nn.Linear's init, per block
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project ``x`` (..., in_dim) to (..., out_dim)."""
        if self.groups == 1:
            return x @ self.weight[0] + self.bias
        chunks = x.unflatten(-1, (self.groups, -1))  # (..., groups, in/groups)
        out = torch.einsum("...gi,gio->...go", chunks, self.weight)
        return out.flatten(-2) + self.bias


def gelu_mlp(
    in_dim: int, dims: Sequence[int], *, groups: int = 1, device=None, dtype=None
) -> nn.Sequential:
    """Linear + GELU layers of widths ``dims`` (SpeechBrain's ``VanillaNN`` with GELU),
    block-diagonal with ``groups`` blocks when ``groups > 1``.
    """
    if not dims or min(dims) < 1:
        raise ValueError(f"MLP widths must be a non-empty list of positive ints, got {dims}")
    layers = []
    for dim in dims:
        layers += [GroupedLinear(in_dim, dim, groups=groups, device=device, dtype=dtype), nn.GELU()]
        in_dim = dim
    return nn.Sequential(*layers)


@MIXERS.register("summarymixing")
class SummaryMixing(nn.Module):
    """SummaryMixing token mixer.

    Arguments
    ---------
    d_model : int
        Model width.
    nhead : int
        Accepted for a uniform interface; SummaryMixing has no heads.
    dropout : float
        Dropout on the combiner's input (training only).
    local_dims : sequence of int, optional
        Widths of the local MLP ``f``; default ``[d_model]``.
    summary_dims : sequence of int, optional
        Widths of the summary MLP ``s``; default ``[d_model]``.
    lite : bool
        Drop the local branch (what ``summarymixing_lite`` builds).
    groups : int
        Block-diagonal local and summary projections with this many blocks (the public
        code uses ``nhead``, which Study B's parameter-matched widths assume); 1 = dense.
    device, dtype
        Placement of the parameters.

    Example
    -------
    >>> import torch
    >>> mixer = SummaryMixing(d_model=16, nhead=1, local_dims=[24, 8], summary_dims=[12])
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
        local_dims: Sequence[int] | None = None,
        summary_dims: Sequence[int] | None = None,
        lite: bool = False,
        groups: int = 1,
        device=None,
        dtype=None,
    ):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.d_model = d_model
        self.nhead = nhead
        self.lite = lite
        summary_dims = list(summary_dims or [d_model])
        self.summary_proj = gelu_mlp(d_model, summary_dims, groups=groups, **factory)
        self.summary_norm = nn.LayerNorm(summary_dims[-1], **factory)
        combine_in = summary_dims[-1]
        if lite:
            self.local_proj = self.local_norm = None
        else:
            local_dims = list(local_dims or [d_model])
            self.local_proj = gelu_mlp(d_model, local_dims, groups=groups, **factory)
            self.local_norm = nn.LayerNorm(local_dims[-1], **factory)
            combine_in += local_dims[-1]
        self.dropout = nn.Dropout(dropout)
        self.combine = gelu_mlp(combine_in, [d_model], **factory)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None):
        """Mix ``x`` (batch, time, d_model); ``key_padding_mask`` (batch, time), True = padded.

        Returns (batch, time, d_model), zero on padded frames.
        """
        x = prepare_input(x, key_padding_mask, self.d_model, "summarymixing")
        if x.shape[1] == 0:
            return empty_output(x)
        batch, time, _ = x.shape
        summary = zero_padded(self.summary_proj(x), key_padding_mask)  # (batch, time, d_s)
        if key_padding_mask is None:
            mean = summary.mean(dim=1)
        else:
            count = (~key_padding_mask).sum(dim=1, keepdim=True).clamp(min=1)
            mean = summary.sum(dim=1) / count.to(summary.dtype)  # (batch, d_s)
        mean = self.summary_norm(mean).unsqueeze(1).expand(batch, time, -1)
        if self.lite:
            combined = mean
        else:
            combined = torch.cat([self.local_norm(self.local_proj(x)), mean], dim=-1)
        out = self.combine(self.dropout(combined))
        return zero_padded(out, key_padding_mask)


@MIXERS.register("summarymixing_lite")
class SummaryMixingLite(SummaryMixing):
    """SummaryMixing-lite: the summary branch only, ``y_t = c(s̄)``.

    Arguments
    ---------
    d_model : int
        Model width.
    nhead : int
        Accepted for a uniform interface; unused.
    dropout : float
        Dropout on the combiner's input (training only).
    summary_dims : sequence of int, optional
        Widths of the summary MLP ``s``; default ``[d_model]``.
    groups : int
        Block-diagonal summary projection with this many blocks; 1 = dense.
    device, dtype
        Placement of the parameters.

    Example
    -------
    >>> import torch
    >>> SummaryMixingLite(d_model=8, nhead=1)(torch.randn(2, 4, 8)).shape
    torch.Size([2, 4, 8])
    """

    def __init__(
        self,
        *,
        d_model: int,
        nhead: int,
        dropout: float = 0.0,
        summary_dims: Sequence[int] | None = None,
        groups: int = 1,
        device=None,
        dtype=None,
    ):
        super().__init__(
            d_model=d_model,
            nhead=nhead,
            dropout=dropout,
            summary_dims=summary_dims,
            lite=True,
            groups=groups,
            device=device,
            dtype=dtype,
        )
