"""BWN weight binarization, as in BiT: ``W_b = mean|W| · sign(W − mean(W))``.

One scale per layer (the mean absolute value of the latent weight) and one centring mean; the
gradient is straight-through (``∂W_b/∂W = 1``; the scale is not trained). Codes are one bit per
weight (1 = +1, 0 = −1).

Example
-------
>>> import torch
>>> w = torch.tensor([[0.5, -1.0], [2.0, 0.1]])
>>> BWNWeight(bits=1)(w)  # mean|W| = 0.9, mean(W) = 0.4
tensor([[ 0.9000, -0.9000],
        [ 0.9000, -0.9000]])
"""

import torch
from torch import nn

from speechbrain_ext.quant.quantizers import QUANTIZERS, binary_sign


class _StraightThrough(torch.autograd.Function):
    """Forward: the given quantized tensor; backward: the gradient unchanged to the latent one."""

    @staticmethod
    def forward(ctx, latent, quantized):
        return quantized

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def straight_through(latent: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
    """``quantized`` in the forward pass, identity gradient to ``latent`` in the backward pass."""
    return _StraightThrough.apply(latent, quantized.detach())


@QUANTIZERS.register("bwn")
class BWNWeight(nn.Module):
    """Binary weights with a layer-wise scale (BiT / BWN).

    Arguments
    ---------
    bits : int
        Must be 1.

    Example
    -------
    >>> import torch
    >>> quantizer = BWNWeight(bits=1)
    >>> codes, params = quantizer.encode(torch.tensor([1.0, -3.0]))
    >>> codes.tolist(), params
    ([1, 0], {'scale': 2.0, 'mean': -1.0})
    """

    kind = "weight"

    def __init__(self, *, bits: int = 1):
        super().__init__()
        if bits != 1:
            raise ValueError(f"bwn binarizes weights to 1 bit, got bits={bits}")
        self.bits = 1

    @torch.no_grad()
    def encode(self, weight: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Codes (uint8, weight's shape; 1 = +1) and ``{"scale", "mean"}`` (FP32 floats)."""
        w = weight.detach().float()
        mean = w.mean()
        codes = (w - mean >= 0).to(torch.uint8)
        return codes, {"scale": w.abs().mean().item(), "mean": mean.item()}

    @staticmethod
    def decode(codes: torch.Tensor, params: dict, *, dtype=torch.float32) -> torch.Tensor:
        """``scale · (2·codes − 1)``."""
        signs = codes.to(dtype) * 2 - 1
        return torch.tensor(params["scale"], dtype=torch.float32).to(dtype) * signs

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """The binarized weight (same shape and dtype), straight-through gradient."""
        w = weight.detach().float()
        scale = w.abs().mean()
        quantized = (scale * binary_sign(w - w.mean())).to(weight.dtype)
        return straight_through(weight, quantized)
