"""BiT's elastic binarization of activations (Liu et al. 2022, "BiT", Eq. 3-5).

With ``u = (x − β) / α``:

- unsigned set {0, α} (non-negative inputs: softmax probabilities, ReLU outputs):
  ``x_b = α · round(clip(u, 0, 1))``;
- signed set {−α, α}: ``x_b = α · sign(u)`` (sign(0) = +1).

Gradients: straight-through to ``x`` inside the clip range (``0 ≤ u ≤ 1``, resp. ``|u| ≤ 1``),
zero outside; β gets minus the summed input gradient (``∂x_b/∂β = −1`` inside the range). For α,
BiT's estimator scaled by LSQ's ``g = 1/√numel``:

- unsigned: ``∂x_b/∂α = round(u) − u`` inside, 0 below, 1 above;
- signed: ``∂x_b/∂α = sign(u)``.

α starts at 4·mean|x| (unsigned) or 2·mean|x| (signed) of the first batch, β at 0.

Example
-------
>>> import torch
>>> quantizer = ElasticBinary(bits=1)
>>> x = torch.tensor([-1.0, 0.5, 2.0, -0.5])
>>> quantizer(x).tolist()  # signed set, alpha = 2 * mean|x| = 2
[-2.0, 2.0, 2.0, -2.0]
>>> quantizer.alpha.item(), bool(quantizer.unsigned)
(2.0, False)
"""

import torch

from speechbrain_ext.quant.quantizers import QUANTIZERS
from speechbrain_ext.quant.quantizers._elastic import ElasticQuantizerBase, lsq_grad_scale


class _ElasticBinaryFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, shifted, alpha, unsigned: bool):
        u = shifted / alpha
        if unsigned:
            q = torch.round(u).clamp_(0, 1)
        else:
            q = torch.where(u >= 0, 1.0, -1.0).to(u.dtype)
        ctx.save_for_backward(u, q)
        ctx.unsigned = unsigned
        return alpha * q

    @staticmethod
    def backward(ctx, grad):
        u, q = ctx.saved_tensors
        scale = lsq_grad_scale(u.numel(), 1)
        if ctx.unsigned:
            outside = (u < 0) | (u > 1)
            d_alpha = q - u.masked_fill(outside, 0.0)  # q − u inside; below q = 0, above q = 1
        else:
            outside = u.abs() > 1
            d_alpha = q
        grad_alpha = torch.dot(d_alpha.reshape(-1), grad.reshape(-1).to(d_alpha.dtype)) * scale
        return grad.masked_fill(outside, 0.0), grad_alpha.reshape(()), None


@QUANTIZERS.register("elastic_binary")
class ElasticBinary(ElasticQuantizerBase):
    """BiT elastic binarization with learnable α and β.

    Arguments
    ---------
    bits : int
        Must be 1.
    value_set : str
        ``"auto"`` (unsigned iff the first batch is non-negative), ``"signed"`` or
        ``"unsigned"``.
    keep_zeros : bool
        Exact zeros stay zero (convolution inputs, see the package docs).

    Example
    -------
    >>> import torch
    >>> probs = ElasticBinary(bits=1, value_set="unsigned")
    >>> probs(torch.tensor([0.0, 0.1, 0.3, 0.9])).detach()  # alpha = 4 * 0.325 = 1.3
    tensor([0.0000, 0.0000, 0.0000, 1.3000])
    """

    def __init__(self, *, bits: int = 1, value_set: str = "auto", keep_zeros: bool = False):
        if bits != 1:
            raise ValueError(f"elastic_binary quantizes to 1 bit, got bits={bits}")
        super().__init__(bits=1, value_set=value_set, keep_zeros=keep_zeros)

    def levels(self) -> tuple[int, int]:
        """(0, 1) for the unsigned set, (−1, 1) for the signed one."""
        return (0, 1) if bool(self.unsigned) else (-1, 1)

    def kernel_mode(self, numel: int) -> tuple:
        """The kernel's rounding set on {0, 1} (unsigned) or its sign set, no β added back."""
        unsigned = bool(self.unsigned)
        lo, hi = self.levels()
        return (lo, hi, not unsigned, False, self.keep_zeros, lsq_grad_scale(numel, 1))

    def reference(self, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """``α · round(clip(u, 0, 1))`` or ``α · sign(u)`` in PyTorch ops."""
        return _ElasticBinaryFn.apply(x.float() - self.beta, alpha, bool(self.unsigned))

    def signs(self, x: torch.Tensor) -> torch.Tensor:
        """The ±1 codes of the signed set (what an XNOR kernel consumes), no gradient."""
        if bool(self.unsigned):
            raise ValueError("signs() is for the signed {-alpha, alpha} set")
        alpha, shifted = self._prepare(x)
        return torch.where(shifted / alpha >= 0, 1.0, -1.0)
