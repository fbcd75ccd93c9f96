"""k-bit symmetric uniform weights (2, 4, 8 bits) with one scale per layer.

``s = max|W| / Q``, ``W_q = s · clip(round(W / s), −Q, Q)`` with ``Q = 2^(k−1) − 1`` (2 bits:
ternary {−s, 0, s}, as BiT's 2-bit weights); straight-through gradient. Codes are
``q + Q`` in ``[0, 2Q]``, stored in k bits.

Example
-------
>>> import torch
>>> UniformWeight(bits=2)(torch.tensor([0.2, -1.0, 0.6]))
tensor([ 0., -1.,  1.])
"""

import torch
from torch import nn

from speechbrain_ext.quant.quantizers import QUANTIZERS
from speechbrain_ext.quant.quantizers.bwn import straight_through


@QUANTIZERS.register("uniform")
class UniformWeight(nn.Module):
    """Symmetric uniform k-bit weight quantizer, per-layer scale, straight-through gradient.

    Arguments
    ---------
    bits : int
        2, 4 or 8.

    Example
    -------
    >>> import torch
    >>> quantizer = UniformWeight(bits=4)
    >>> codes, params = quantizer.encode(torch.tensor([0.7, -0.3, 0.0]))
    >>> codes.tolist(), round(params["scale"], 6)  # codes q + 7, scale 0.7 / 7
    ([14, 4, 7], 0.1)
    """

    kind = "weight"

    def __init__(self, *, bits: int):
        super().__init__()
        if bits not in (2, 4, 8):
            raise ValueError(f"uniform weights take 2, 4 or 8 bits, got bits={bits}")
        self.bits = bits
        self.levels = 2 ** (bits - 1) - 1  # Q

    def _scale(self, w: torch.Tensor) -> torch.Tensor:
        peak = w.abs().max()
        return torch.where(peak > 0, peak / self.levels, torch.ones_like(peak))

    @torch.no_grad()
    def encode(self, weight: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Codes ``q + Q`` (uint8, weight's shape) and ``{"scale"}``."""
        w = weight.detach().float()
        scale = self._scale(w)
        q = torch.clamp(torch.round(w / scale), -self.levels, self.levels)
        return (q + self.levels).to(torch.uint8), {"scale": scale.item()}

    def decode(self, codes: torch.Tensor, params: dict, *, dtype=torch.float32) -> torch.Tensor:
        """``scale · (codes − Q)``."""
        q = codes.to(torch.float32) - self.levels
        return (torch.tensor(params["scale"], dtype=torch.float32) * q).to(dtype)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """The quantized weight (same shape and dtype), straight-through gradient."""
        w = weight.detach().float()
        scale = self._scale(w)
        q = torch.clamp(torch.round(w / scale), -self.levels, self.levels)
        return straight_through(weight, (scale * q).to(weight.dtype))
