"""Shared state of BiT's elastic activation quantizers (private: not a quantizer).

Both elastic quantizers have a learnable scale α and shift β (FP32 scalars), a value set chosen
once (``{0, …}`` for non-negative inputs, ``{−…, …}`` otherwise) and α initialised from the
first batch they see. ``initialized`` and ``unsigned`` are buffers, so a saved model does not
initialise again when loaded.
"""

import math

import torch
from torch import nn

VALUE_SETS = ("auto", "signed", "unsigned")
ALPHA_EPS = 1e-5


class ElasticQuantizerBase(nn.Module):
    """α, β, the value set and the first-batch initialisation of an elastic quantizer.

    Arguments
    ---------
    bits : int
        Activation bits.
    value_set : str
        ``"unsigned"`` ({0, α}-type set, for softmax probabilities, ReLU outputs), ``"signed"``
        ({−α, α}-type set) or ``"auto"``: unsigned iff the first batch has no negative value.
    keep_zeros : bool
        Exact zeros stay zero (and get no gradient): zero padding of a convolution and padded
        frames zeroed before it then stay padding, as with a padding-masked binary kernel.
    """

    kind = "activation"

    def __init__(self, *, bits: int, value_set: str = "auto", keep_zeros: bool = False):
        super().__init__()
        if value_set not in VALUE_SETS:
            raise ValueError(f"value_set must be one of {VALUE_SETS}, got {value_set!r}")
        self.bits = bits
        self.value_set = value_set
        self.keep_zeros = keep_zeros
        self.alpha = nn.Parameter(torch.tensor(1.0))
        self.beta = nn.Parameter(torch.tensor(0.0))
        self.register_buffer("initialized", torch.tensor(False))
        self.register_buffer("unsigned", torch.tensor(value_set == "unsigned"))

    def levels(self) -> tuple[int, int]:
        """Integer range (Qn, Qp) of the codes for the current value set."""
        raise NotImplementedError

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Pick the value set (``auto``) and α from ``x``: BiT's ``c · mean|x| / √Qp`` with
        c = 4 for the unsigned set, 2 for the signed one (1 bit: 4·mean|x|, 2·mean|x|).
        """
        if self.value_set == "auto":
            self.unsigned.fill_(bool(x.min() >= 0))
        _, qp = self.levels()
        factor = 4.0 if bool(self.unsigned) else 2.0
        alpha = factor * x.detach().float().abs().mean() / math.sqrt(qp)
        self.alpha.fill_(max(float(alpha), ALPHA_EPS))
        self.beta.zero_()
        self.initialized.fill_(True)

    def _prepare(self, x: torch.Tensor):
        """Initialise on the first call; α clamped positive (FP32) and ``x − β``."""
        if not bool(self.initialized):
            self.initialize(x)
        alpha = self.alpha.clamp(min=ALPHA_EPS)
        return alpha, x.float() - self.beta

    def _finish(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        out = out.to(x.dtype)
        if self.keep_zeros:
            out = torch.where(x == 0, torch.zeros((), dtype=out.dtype, device=out.device), out)
        return out

    def extra_repr(self) -> str:
        return f"bits={self.bits}, value_set={self.value_set!r}, keep_zeros={self.keep_zeros}"


def lsq_grad_scale(numel: int, qp: int) -> float:
    """LSQ's gradient scale of α, ``1 / √(numel · Qp)`` (BiT uses it too)."""
    return 1.0 / math.sqrt(max(numel, 1) * qp)
