"""Shared state of BiT's elastic activation quantizers (private: not a quantizer).

Both elastic quantizers have a learnable scale α and shift β (FP32 scalars), a value set chosen
once (``{0, …}`` for non-negative inputs, ``{−…, …}`` otherwise) and α initialised from the
first batch they see. ``initialized`` and ``unsigned`` are buffers, so a saved model does not
initialise again when loaded.

On the CPU, fp32 inputs run through one fused C++ kernel (``quant/csrc/elastic_quant_cpu.cpp``,
built on first use by :class:`speechbrain_ext.nnet.cpu_kernels.CpuKernel`): one pass over memory
forward, one backward, and only the input is kept for the backward pass (it recomputes the
codes), where the PyTorch ops make about eight passes each way and keep two tensors. Its outputs
equal the PyTorch path's bitwise, its gradients to float rounding (tested); other devices and
dtypes, ``torch.compile`` tracing, a failed build (one warning) and
``SPEECHBRAIN_EXT_NO_CPU_KERNELS=1`` use the PyTorch ops, which stay the reference.
"""

import math
from pathlib import Path

import torch
from torch import nn

from speechbrain_ext.nnet.cpu_kernels import CpuKernel

VALUE_SETS = ("auto", "signed", "unsigned")
ALPHA_EPS = 1e-5

#: The fused CPU kernel of both elastic quantizers. No FMA contraction: ``α·q + β`` is rounded
#: twice, as in PyTorch, so the outputs are bitwise the PyTorch path's.
ELASTIC_KERNEL = CpuKernel(
    "elastic_quant_cpu",
    Path(__file__).resolve().parents[1] / "csrc" / "elastic_quant_cpu.cpp",
    what="elastic quantizers",
    fallback="their PyTorch ops",
    cflags=("-O3", "-march=native", "-fopenmp", "-ffp-contract=off"),
)


def fused_kernel_for(x: torch.Tensor):
    """The fused kernel if it serves ``x`` (CPU, fp32, not traced by torch.compile), else None."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or torch.compiler.is_compiling():
        return None
    return ELASTIC_KERNEL.get()


class _FusedElasticFn(torch.autograd.Function):
    """Forward and backward of an elastic quantizer on :data:`ELASTIC_KERNEL`.

    ``mode`` is ``(lo, hi, sign_set, add_beta, keep_zeros, grad_scale)`` (see the C++ source).
    """

    @staticmethod
    def forward(ctx, x, alpha, beta, kernel, mode):
        x = x.contiguous()
        out = torch.empty(x.shape, dtype=x.dtype)
        a, b = float(alpha), float(beta)
        kernel.forward(x.data_ptr(), out.data_ptr(), x.numel(), a, b, *mode[:5],
                       torch.get_num_threads())  # fmt: skip
        ctx.save_for_backward(x)
        ctx.kernel, ctx.mode, ctx.scalars = kernel, mode, (a, b)
        return out

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        grad = grad.contiguous().to(x.dtype)
        grad_x = torch.empty(x.shape, dtype=x.dtype) if ctx.needs_input_grad[0] else None
        sum_alpha, sum_beta = ctx.kernel.backward(
            x.data_ptr(), grad.data_ptr(), 0 if grad_x is None else grad_x.data_ptr(),
            x.numel(), *ctx.scalars, *ctx.mode[:5], torch.get_num_threads(),
        )  # fmt: skip
        grad_alpha = torch.tensor(sum_alpha * ctx.mode[5], dtype=torch.float32)
        return grad_x, grad_alpha, torch.tensor(sum_beta, dtype=torch.float32), None, None


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

    def kernel_mode(self, numel: int) -> tuple:
        """``(lo, hi, sign_set, add_beta, keep_zeros, α's gradient scale)`` for the kernel."""
        raise NotImplementedError

    def reference(self, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """The quantized ``x`` in PyTorch ops (before :meth:`_finish`); α already clamped."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Quantized ``x`` (same shape and dtype): the fused CPU kernel or the PyTorch ops."""
        if not bool(self.initialized):
            self.initialize(x)
        alpha = self.alpha.clamp(min=ALPHA_EPS)
        kernel = fused_kernel_for(x)
        if kernel is not None:
            return _FusedElasticFn.apply(x, alpha, self.beta, kernel, self.kernel_mode(x.numel()))
        return self._finish(x, self.reference(x, alpha))

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
