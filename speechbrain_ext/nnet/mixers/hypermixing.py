"""Multi-head HyperMixing (Mai et al., HyperMixer; HyperConformer), linear in time.

Per head h, with the head's channels ``x_h`` (time, d_head) and two token-wise hypernetworks
(MLPs applied to every frame of ``x + positional encoding``) producing W₁, W₂ (time, k):
``y_h = W₂ · GELU(W₁ᵀ x_h)``. Heads are concatenated and layer-normalised. Rows of W₁, W₂ at
padded frames are zero, so padded frames neither feed nor receive anything. Memory is
O(time · k) per head: no (time, time) tensor.

Same computation as SpeechBrain's ``speechbrain.nnet.hypermixing.HyperMixing`` (the mixer of
Study B), without its dummy (batch, time, time) weights and its ``max_length`` limit on the
position table.

Example
-------
>>> import torch
>>> from speechbrain_ext.nnet.mixers import build_mixer
>>> mixer = build_mixer("hypermixing", d_model=32, nhead=4, hypernet_size=64)
>>> mixer(torch.randn(2, 10, 32)).shape
torch.Size([2, 10, 32])
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_ext.nnet.masking import zero_padded
from speechbrain_ext.nnet.mixers import MIXERS
from speechbrain_ext.nnet.mixers._common import empty_output, head_dim, prepare_input
from speechbrain_ext.nnet.positional import sinusoidal_embedding


class ParallelMLP(nn.Module):
    """``nhead`` independent two-layer GELU MLPs, one per channel group (head).

    Arguments
    ---------
    nhead : int
        Number of MLPs.
    in_dim, hidden_dim, out_dim : int
        Sizes of each head's MLP.
    device, dtype
        Placement of the parameters.

    Example
    -------
    >>> import torch
    >>> mlp = ParallelMLP(nhead=2, in_dim=3, hidden_dim=5, out_dim=4)
    >>> mlp(torch.randn(7, 2, 10, 3)).shape  # (batch, head, time, in_dim)
    torch.Size([7, 2, 10, 4])
    """

    def __init__(
        self, *, nhead: int, in_dim: int, hidden_dim: int, out_dim: int, device=None, dtype=None
    ):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.weight1 = nn.Parameter(torch.empty(nhead, in_dim, hidden_dim, **factory))
        self.bias1 = nn.Parameter(torch.empty(nhead, 1, hidden_dim, **factory))
        self.weight2 = nn.Parameter(torch.empty(nhead, hidden_dim, out_dim, **factory))
        self.bias2 = nn.Parameter(torch.empty(nhead, 1, out_dim, **factory))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Per head: uniform weights of variance 1/fan_in, biases as ``nn.Linear``."""
        for weight, bias in ((self.weight1, self.bias1), (self.weight2, self.bias2)):
            bound = 1.0 / math.sqrt(weight.shape[1])
            nn.init.uniform_(weight, -math.sqrt(3.0) * bound, math.sqrt(3.0) * bound)
            nn.init.uniform_(bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, head, time, in_dim) -> (batch, head, time, out_dim)."""
        # In-place bias adds: a matmul's output is not needed by its backward, and an extra
        # (batch, head, time, k) allocation per add cost ~10 % of the mixer's time on CPU.
        hidden = F.gelu(torch.matmul(x, self.weight1).add_(self.bias1))
        return torch.matmul(hidden, self.weight2).add_(self.bias2)


@MIXERS.register("hypermixing")
class HyperMixing(nn.Module):
    """Multi-head HyperMixing token mixer.

    Arguments
    ---------
    d_model : int
        Model width.
    nhead : int
        Number of heads; must divide ``d_model`` and ``hypernet_size``.
    dropout : float
        Dropout on the mixed output before the layer norm (training only).
    hypernet_size : int, optional
        Total hidden size k of the token-mixing MLPs over all heads (each head gets
        ``hypernet_size // nhead``). Study B uses the FFN size; default ``4 * d_model``.
    tied : bool
        Use the same generated matrix for W₁ and W₂.
    device, dtype
        Placement of the parameters.

    Example
    -------
    >>> import torch
    >>> mixer = HyperMixing(d_model=16, nhead=2, hypernet_size=8, tied=True)
    >>> mixer(torch.randn(1, 5, 16)).shape
    torch.Size([1, 5, 16])
    """

    def __init__(
        self,
        *,
        d_model: int,
        nhead: int,
        dropout: float = 0.0,
        hypernet_size: int | None = None,
        tied: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.d_model = d_model
        self.nhead = nhead
        self.head_dim = head_dim(d_model, nhead)
        if d_model % 2:
            raise ValueError(f"hypermixing needs an even d_model (position table), got {d_model}")
        hypernet_size = 4 * d_model if hypernet_size is None else hypernet_size
        if hypernet_size < nhead or hypernet_size % nhead:
            raise ValueError(
                f"hypernet_size={hypernet_size} must be a positive multiple of nhead={nhead}"
            )
        self.hypernet_size = hypernet_size
        self.tied = tied
        sizes = {
            "nhead": nhead,
            "in_dim": self.head_dim,
            "hidden_dim": self.head_dim,
            "out_dim": hypernet_size // nhead,
        }
        self.w1_gen = ParallelMLP(**sizes, **factory)
        self.w2_gen = None if tied else ParallelMLP(**sizes, **factory)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model, **factory)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None):
        """Mix ``x`` (batch, time, d_model); ``key_padding_mask`` (batch, time), True = padded.

        Returns (batch, time, d_model), zero on padded frames.
        """
        x = prepare_input(x, key_padding_mask, self.d_model, "hypermixing")
        if x.shape[1] == 0:
            return empty_output(x)
        batch, time, _ = x.shape
        positions = torch.arange(time, device=x.device)
        pos = sinusoidal_embedding(positions, self.d_model, dtype=x.dtype)  # (time, d_model)

        def heads(t: torch.Tensor) -> torch.Tensor:  # (b, t, d) -> (b, head, t, head_dim)
            return t.view(t.shape[0], time, self.nhead, self.head_dim).transpose(1, 2)

        hyper_in = heads(x + pos)
        w1 = self.w1_gen(hyper_in)  # (batch, head, time, k)
        w2 = w1 if self.w2_gen is None else self.w2_gen(hyper_in)
        if key_padding_mask is not None:
            valid = (~key_padding_mask)[:, None, :, None].to(w1.dtype)
            w1, w2 = w1 * valid, w2 * valid
        hidden = F.gelu(torch.matmul(w1.transpose(-1, -2), heads(x)))  # (batch, head, k, head_dim)
        mixed = torch.matmul(w2, hidden)  # (batch, head, time, head_dim)
        out = self.norm(self.dropout(mixed.transpose(1, 2).reshape(batch, time, self.d_model)))
        return zero_padded(out, key_padding_mask)
