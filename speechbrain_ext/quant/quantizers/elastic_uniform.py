"""k-bit elastic uniform quantization of activations (BiT's multi-bit activations, LSQ+).

With ``u = (x − β) / α``: ``x_q = α · clip(round(u), Qn, Qp) + β``, where the codes are
``Qn..Qp = −2^(k−1)..2^(k−1)−1`` (signed) or ``0..2^k−1`` (unsigned, non-negative inputs).
Gradients: straight-through to ``x`` inside the range; ``∂x_q/∂α = round(u) − u`` inside,
``Qn`` below, ``Qp`` above (LSQ, scaled by ``1/√(numel·Qp)``); ``∂x_q/∂β = 0`` inside and 1
outside (β shifts the grid). α starts at 2·mean|x|/√Qp (signed) or 4·mean|x|/√Qp (unsigned)
of the first batch, β at 0.

Example
-------
>>> import torch
>>> quantizer = ElasticUniform(bits=2)
>>> quantizer(torch.tensor([-1.0, 0.2, 0.9, 3.0])).abs().tolist()  # alpha 2.55, codes -2..1
[0.0, 0.0, 0.0, 2.549999952316284]
"""

import torch

from speechbrain_ext.quant.quantizers import QUANTIZERS
from speechbrain_ext.quant.quantizers._elastic import ElasticQuantizerBase, lsq_grad_scale


class _ElasticUniformFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, shifted, alpha, qn: int, qp: int):
        u = shifted / alpha
        q = torch.round(u).clamp_(qn, qp)
        ctx.save_for_backward(u, q)
        ctx.levels = (qn, qp)
        return alpha * q

    @staticmethod
    def backward(ctx, grad):
        u, q = ctx.saved_tensors
        qn, qp = ctx.levels
        outside = (u < qn) | (u > qp)
        d_alpha = q - u.masked_fill(outside, 0.0)  # round(u) − u inside; Qn below, Qp above
        grad_alpha = torch.dot(d_alpha.reshape(-1), grad.reshape(-1).to(d_alpha.dtype))
        grad_alpha = grad_alpha * lsq_grad_scale(u.numel(), qp)
        return grad.masked_fill(outside, 0.0), grad_alpha.reshape(()), None, None


@QUANTIZERS.register("elastic_uniform")
class ElasticUniform(ElasticQuantizerBase):
    """Elastic k-bit uniform activation quantizer with learnable α and β.

    Arguments
    ---------
    bits : int
        2, 4 or 8.
    value_set : str
        ``"auto"``, ``"signed"`` or ``"unsigned"``.
    keep_zeros : bool
        Exact zeros stay zero (convolution inputs).

    Example
    -------
    >>> import torch
    >>> quantizer = ElasticUniform(bits=4, value_set="unsigned")
    >>> quantizer.levels()
    (0, 15)
    """

    def __init__(self, *, bits: int, value_set: str = "auto", keep_zeros: bool = False):
        if bits not in (2, 4, 8):
            raise ValueError(f"elastic_uniform takes 2, 4 or 8 bits, got bits={bits}")
        super().__init__(bits=bits, value_set=value_set, keep_zeros=keep_zeros)

    def levels(self) -> tuple[int, int]:
        """(Qn, Qp) of the codes."""
        if bool(self.unsigned):
            return 0, 2**self.bits - 1
        return -(2 ** (self.bits - 1)), 2 ** (self.bits - 1) - 1

    def kernel_mode(self, numel: int) -> tuple:
        """The kernel's rounding set on ``Qn..Qp``, β added back."""
        qn, qp = self.levels()
        return (qn, qp, False, True, self.keep_zeros, lsq_grad_scale(numel, qp))

    def reference(self, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """``α · clip(round((x − β) / α), Qn, Qp) + β`` in PyTorch ops."""
        qn, qp = self.levels()
        return _ElasticUniformFn.apply(x.float() - self.beta, alpha, qn, qp) + self.beta
