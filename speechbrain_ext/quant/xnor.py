"""Bit-packed XNOR-popcount matrix product for W1A1 layers on CPU.

For ±1 matrices ``A`` (M, K) and ``W`` (N, K), packed 64 signs per ``int64`` word (bit 1 =
+1, unused bits 0 in both), ``A Wᵀ = K − 2 · popcount(a XOR w)`` summed over the words: an
exact integer result. A binarized linear layer then applies its scales after the product:
``y = α_x · s_w · (sign(x − β) · sign(W − m)ᵀ) + bias``.

Two implementations of :func:`xnor_matmul`:

- ``"torch"``: pure PyTorch, XOR of row blocks against all weight rows and a SWAR popcount
  (shifts, masks, one multiply) on ``int64`` (PyTorch 2.11 has no ``bitwise_count``);
- ``"cpp"``: a small C++ kernel (``__builtin_popcountll``, ``at::parallel_for``) compiled with
  ``torch.utils.cpp_extension.load_inline`` on first use; if it cannot be built, ``"auto"``
  falls back to the PyTorch path with one warning.

Example
-------
>>> import torch
>>> a = torch.tensor([[1.0, -1.0, 1.0], [-1.0, -1.0, -1.0]])
>>> w = torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, -1.0]])
>>> xnor_matmul(pack_signs(a), pack_signs(w), k=3, backend="torch")
tensor([[ 1,  1],
        [-3,  1]], dtype=torch.int32)
>>> a @ w.T
tensor([[ 1.,  1.],
        [-3.,  1.]])
"""

import warnings

import torch
from torch import nn

WORD = 64
BACKENDS = ("auto", "torch", "cpp")

_M1, _M2, _M4 = 0x5555555555555555, 0x3333333333333333, 0x0F0F0F0F0F0F0F0F
_H01 = 0x0101010101010101


def pack_signs(x: torch.Tensor, *, shift: float = 0.0, backend: str = "torch") -> torch.Tensor:
    """Signs of ``x − shift`` (..., K) (``>= 0`` → bit 1) packed into (..., ceil(K / 64)) int64.

    ``backend="cpp"`` (2-D FP32 input only) packs in the C++ extension, ``"auto"`` when it
    builds; the result is the same.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown xnor backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if backend != "torch" and x.dim() == 2 and x.dtype == torch.float32:
        module = cpp_kernel()
        if module is not None:
            return module.pack_signs_f32(x, float(shift))
        if backend == "cpp":
            raise RuntimeError("the XNOR C++ kernel could not be built (see the warning)")
    bits = ((x - shift) if shift else x).ge(0).to(torch.int64)
    k = bits.shape[-1]
    bits = torch.nn.functional.pad(bits, (0, (-k) % WORD))
    bits = bits.view(*bits.shape[:-1], -1, WORD)
    shifts = torch.arange(WORD, dtype=torch.int64, device=x.device)
    return (bits << shifts).sum(dim=-1)  # distinct bits: the sum is their OR


def popcount64(x: torch.Tensor) -> torch.Tensor:
    """Set bits of every int64 word (SWAR; same shape, int64)."""
    x = x - ((x >> 1) & _M1)
    x = (x & _M2) + ((x >> 2) & _M2)
    x = (x + (x >> 4)) & _M4
    return (x * _H01) >> 56  # top byte: the count (<= 64, so the sign bit stays clear)


def _xnor_torch(a: torch.Tensor, w: torch.Tensor, k: int, block: int = 64) -> torch.Tensor:
    out = torch.empty(a.shape[0], w.shape[0], dtype=torch.int32)
    for start in range(0, a.shape[0], block):
        rows = a[start : start + block]
        mismatches = popcount64(rows[:, None, :] ^ w[None, :, :]).sum(dim=-1)  # (rows, N)
        out[start : start + block] = (k - 2 * mismatches).to(torch.int32)
    return out


_CPP_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>

torch::Tensor xnor_gemm(torch::Tensor a, torch::Tensor w, int64_t k) {
  TORCH_CHECK(a.dtype() == torch::kInt64 && w.dtype() == torch::kInt64, "int64 words expected");
  a = a.contiguous();
  w = w.contiguous();
  const int64_t m = a.size(0), n = w.size(0), words = a.size(1);
  TORCH_CHECK(w.size(1) == words, "a and w must have the same number of words");
  auto out = torch::empty({m, n}, torch::kInt32);
  const uint64_t* pa = reinterpret_cast<const uint64_t*>(a.data_ptr<int64_t>());
  const uint64_t* pw = reinterpret_cast<const uint64_t*>(w.data_ptr<int64_t>());
  int32_t* po = out.data_ptr<int32_t>();
  at::parallel_for(0, (m + 3) / 4, 1, [&](int64_t begin, int64_t end) {
    for (int64_t block = begin; block < end; ++block) {
      const int64_t i0 = block * 4, rows = std::min<int64_t>(4, m - i0);
      for (int64_t j = 0; j < n; ++j) {
        const uint64_t* wj = pw + j * words;
        int64_t acc[4] = {0, 0, 0, 0};
        for (int64_t r = 0; r < rows; ++r) {
          const uint64_t* ai = pa + (i0 + r) * words;
          int64_t c = 0;
          for (int64_t t = 0; t < words; ++t) c += __builtin_popcountll(ai[t] ^ wj[t]);
          acc[r] = c;
        }
        for (int64_t r = 0; r < rows; ++r) po[(i0 + r) * n + j] = (int32_t)(k - 2 * acc[r]);
      }
    }
  });
  return out;
}

torch::Tensor xnor_linear_f32(torch::Tensor a, torch::Tensor w, int64_t k, double scale,
                              torch::Tensor bias) {
  // scale · (A Wᵀ) + bias, written as float32 in the kernel's epilogue.
  a = a.contiguous();
  w = w.contiguous();
  const int64_t m = a.size(0), n = w.size(0), words = a.size(1);
  TORCH_CHECK(w.size(1) == words, "a and w must have the same number of words");
  const bool has_bias = bias.numel() > 0;
  TORCH_CHECK(!has_bias || bias.numel() == n, "bias must have one value per output");
  auto bias_f = has_bias ? bias.contiguous().to(torch::kFloat32) : bias;
  auto out = torch::empty({m, n}, torch::kFloat32);
  const uint64_t* pa = reinterpret_cast<const uint64_t*>(a.data_ptr<int64_t>());
  const uint64_t* pw = reinterpret_cast<const uint64_t*>(w.data_ptr<int64_t>());
  const float* pb = has_bias ? bias_f.data_ptr<float>() : nullptr;
  float* po = out.data_ptr<float>();
  const float s = (float)scale;
  at::parallel_for(0, m, 4, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const uint64_t* ai = pa + i * words;
      for (int64_t j = 0; j < n; ++j) {
        const uint64_t* wj = pw + j * words;
        int64_t c = 0;
        for (int64_t t = 0; t < words; ++t) c += __builtin_popcountll(ai[t] ^ wj[t]);
        po[i * n + j] = s * (float)(k - 2 * c) + (has_bias ? pb[j] : 0.0f);
      }
    }
  });
  return out;
}

torch::Tensor pack_signs_f32(torch::Tensor x, double shift) {
  TORCH_CHECK(x.dtype() == torch::kFloat32 && x.dim() == 2, "(rows, K) float32 expected");
  x = x.contiguous();
  const int64_t m = x.size(0), k = x.size(1), words = (k + 63) / 64;
  auto out = torch::zeros({m, words}, torch::kInt64);
  const float* px = x.data_ptr<float>();
  uint64_t* po = reinterpret_cast<uint64_t*>(out.data_ptr<int64_t>());
  const float s = (float)shift;
  at::parallel_for(0, m, 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* row = px + i * k;
      for (int64_t t = 0; t < words; ++t) {
        uint64_t word = 0;
        const int64_t stop = std::min<int64_t>(64, k - t * 64);
        for (int64_t b = 0; b < stop; ++b) word |= (uint64_t)(row[t * 64 + b] - s >= 0.0f) << b;
        po[i * words + t] = word;
      }
    }
  });
  return out;
}
"""
_CPP_MODULE = None
_CPP_FAILED = False


def cpp_kernel():
    """The compiled extension module, or None (warned once) when it cannot be built."""
    global _CPP_MODULE, _CPP_FAILED
    if _CPP_MODULE is None and not _CPP_FAILED:
        try:
            from torch.utils.cpp_extension import load_inline

            _CPP_MODULE = load_inline(
                name="speechbrain_ext_xnor_v3",
                cpp_sources=_CPP_SOURCE,
                functions=["xnor_gemm", "xnor_linear_f32", "pack_signs_f32"],
                extra_cflags=["-O3", "-march=native"],
                verbose=False,
            )
        except Exception as error:  # no compiler, no headers, ...
            _CPP_FAILED = True
            warnings.warn(
                f"XNOR C++ kernel unavailable ({type(error).__name__}: {error}); using the "
                "pure-PyTorch path",
                RuntimeWarning,
                stacklevel=2,
            )
    return _CPP_MODULE


def xnor_matmul(
    a_packed: torch.Tensor, w_packed: torch.Tensor, *, k: int, backend: str = "auto"
) -> torch.Tensor:
    """``sign(A) · sign(W)ᵀ`` (M, N) int32 from packed (M, words) and (N, words) int64.

    Arguments
    ---------
    a_packed, w_packed : torch.Tensor
        Outputs of :func:`pack_signs` on (M, K) and (N, K).
    k : int
        The unpacked length K.
    backend : str
        ``"auto"`` (C++ when it builds), ``"torch"`` or ``"cpp"`` (error if it cannot build).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown xnor backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if a_packed.shape[-1] != w_packed.shape[-1]:
        raise ValueError(
            f"packed shapes {tuple(a_packed.shape)} and {tuple(w_packed.shape)} differ in words"
        )
    if backend != "torch":
        module = cpp_kernel()
        if module is not None:
            return module.xnor_gemm(a_packed, w_packed, k)
        if backend == "cpp":
            raise RuntimeError("the XNOR C++ kernel could not be built (see the warning)")
    return _xnor_torch(a_packed, w_packed, k)


class XnorLinear(nn.Module):
    """Inference-only W1A1 linear layer on packed bits, built from a binarized ``QuantLinear``
    (BWN weights, signed elastic-binary inputs): ``α s (sign(x − β) sign(W − m)ᵀ) + bias``.

    Arguments
    ---------
    layer : QuantLinear
        A layer quantized at w1a1 whose input quantizer is initialised and uses the signed set.
    backend : str
        See :func:`xnor_matmul`.

    Example
    -------
    >>> import torch
    >>> from speechbrain_ext.quant.layers import QuantLinear
    >>> layer = QuantLinear(70, 5, weight_bits=1, act_bits=1)
    >>> x = torch.randn(3, 70)
    >>> reference = layer(x)  # also initialises α from this batch
    >>> fast = XnorLinear(layer, backend="torch")
    >>> bool(torch.allclose(fast(x), reference, atol=1e-5))
    True
    """

    def __init__(self, layer: nn.Module, *, backend: str = "auto"):
        super().__init__()
        quantizer = layer.input_quantizers["input"]
        if layer.weight_bits != 1 or layer.act_bits != 1 or bool(quantizer.unsigned):
            raise ValueError("XnorLinear needs a w1a1 layer with signed binary inputs")
        with torch.no_grad():
            binary = layer.quantized_weight().float()  # s · ±1
            scale = binary.abs().amax()
            self.register_buffer("weight_bits", pack_signs(binary))
            self.register_buffer(
                "out_scale", (quantizer.alpha.detach().clamp(min=1e-5) * scale).float()
            )
            self.register_buffer("beta", quantizer.beta.detach().float().clone())
            bias = layer.bias.detach().float().clone() if layer.bias is not None else None
            self.register_buffer("bias", bias)
        self.in_features = layer.in_features
        self.backend = backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_features) -> (..., out_features), FP32."""
        lead = x.shape[:-1]
        rows = x.reshape(-1, self.in_features).float()
        packed = pack_signs(rows, shift=float(self.beta), backend=self.backend)
        module = cpp_kernel() if self.backend != "torch" else None
        if module is not None:  # product, scale and bias in one C++ pass
            bias = self.bias if self.bias is not None else torch.empty(0)
            out = module.xnor_linear_f32(
                packed, self.weight_bits, self.in_features, float(self.out_scale), bias
            )
            return out.view(*lead, -1)
        dots = xnor_matmul(packed, self.weight_bits, k=self.in_features, backend=self.backend)
        out = dots.float() * self.out_scale
        if self.bias is not None:
            out = out + self.bias
        return out.view(*lead, -1)
