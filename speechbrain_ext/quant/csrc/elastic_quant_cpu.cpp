// Fused elastic activation quantizers for the CPU, forward and backward
// (speechbrain_ext.quant.quantizers._elastic; built by speechbrain_ext.nnet.cpu_kernels).
//
// With u = (x − β) / α, computed as PyTorch does (a subtraction, then a division, in fp32):
//
//   rounding set (elastic_uniform, and elastic_binary's unsigned {0, α}):
//       q = clip(round(u), lo, hi)      (round half to even, as torch.round)
//   sign set (elastic_binary's signed {−α, α}):
//       q = +1 if u >= 0 else −1
//   out = α q (+ β when add_beta: elastic_uniform adds the shift back)
//   keep_zeros: out = 0 where x == 0 (and no gradient flows there)
//
// The backward pass takes the same x (it recomputes u and q: nothing else is saved) and the
// output gradient g, and returns
//
//   ∂L/∂x = g inside the range (lo <= u <= hi; |u| <= 1 for the sign set), 0 outside
//   Σ g · ∂out/∂α,   ∂out/∂α = q − u inside and q outside (rounding set), q (sign set)
//   Σ g · ∂out/∂β,   = Σ g outside (add_beta), −Σ g inside (otherwise)
//
// the two sums unscaled (the caller applies LSQ's gradient scale). One pass over memory each
// way, against about eight tensor passes for the same quantizer in PyTorch ops. The sums
// accumulate in float over blocks of 2048 elements, then in double per thread, then in thread
// order: deterministic for a thread count.
//
// Tensors are raw pointers to contiguous fp32 memory (the Python side checks). Only pybind11 is
// included, so the build takes seconds. Built without -ffp-contract=fast, so that α q + β is a
// multiplication then an addition, as in PyTorch: the outputs equal the PyTorch path bitwise.

#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

constexpr int64_t kSerialBelow = 1 << 15;  // fewer elements: one thread (the fork costs more)
constexpr int64_t kBlock = 2048;           // elements summed in float before joining the double

inline int team_size(int64_t n, int threads) { return n < kSerialBelow ? 1 : threads; }

// The codes q of u: the sign set, or round-then-clip to [lo, hi] (NaN stays NaN, as torch.clamp).
template <bool kSign>
inline float codes(float u, float lo, float hi) {
  if (kSign) return u >= 0.0f ? 1.0f : -1.0f;
  const float r = std::nearbyint(u);
  return r < lo ? lo : (r > hi ? hi : r);
}

template <bool kSign>
inline bool outside(float u, float lo, float hi) {
  return kSign ? std::fabs(u) > 1.0f : (u < lo || u > hi);
}

template <bool kSign, bool kAddBeta, bool kKeepZeros>
void forward_impl(const float* x, float* out, int64_t n, float alpha, float beta, float lo,
                  float hi, int threads) {
#pragma omp parallel for simd num_threads(team_size(n, threads)) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float u = (x[i] - beta) / alpha;
    float y = alpha * codes<kSign>(u, lo, hi);
    if (kAddBeta) y = y + beta;
    out[i] = (kKeepZeros && x[i] == 0.0f) ? 0.0f : y;
  }
}

template <bool kSign, bool kAddBeta, bool kKeepZeros>
std::pair<double, double> backward_impl(const float* x, const float* grad, float* grad_x,
                                        int64_t n, float alpha, float beta, float lo, float hi,
                                        int threads) {
  const int team = team_size(n, threads);
  std::vector<double> sums_alpha(team, 0.0), sums_beta(team, 0.0);
#pragma omp parallel num_threads(team)
  {
#ifdef _OPENMP
    const int64_t me = omp_get_thread_num(), size = omp_get_num_threads();
#else
    const int64_t me = 0, size = 1;
#endif
    const int64_t begin = n * me / size, end = n * (me + 1) / size;
    double d_alpha = 0.0, d_beta = 0.0;
    for (int64_t b0 = begin; b0 < end; b0 += kBlock) {
      const int64_t b1 = b0 + kBlock < end ? b0 + kBlock : end;
      float block_alpha = 0.0f, block_beta = 0.0f;
#pragma omp simd reduction(+ : block_alpha, block_beta)
      for (int64_t i = b0; i < b1; ++i) {
        const float g = (kKeepZeros && x[i] == 0.0f) ? 0.0f : grad[i];
        const float u = (x[i] - beta) / alpha;
        const float q = codes<kSign>(u, lo, hi);
        const bool out = outside<kSign>(u, lo, hi);
        if (grad_x != nullptr) grad_x[i] = out ? 0.0f : g;
        block_alpha += g * ((kSign || out) ? q : q - u);
        block_beta += kAddBeta ? (out ? g : 0.0f) : (out ? 0.0f : -g);
      }
      d_alpha += block_alpha;
      d_beta += block_beta;
    }
    sums_alpha[me] = d_alpha;
    sums_beta[me] = d_beta;
  }
  double total_alpha = 0.0, total_beta = 0.0;
  for (int t = 0; t < team; ++t) {
    total_alpha += sums_alpha[t];
    total_beta += sums_beta[t];
  }
  return {total_alpha, total_beta};
}

// The eight (sign set, add β, keep zeros) instantiations behind one runtime switch.
template <template <bool, bool, bool> class Op, typename... Args>
auto dispatch(bool sign_set, bool add_beta, bool keep_zeros, Args... args) {
  const int mode = (sign_set ? 4 : 0) | (add_beta ? 2 : 0) | (keep_zeros ? 1 : 0);
  switch (mode) {
    case 0: return Op<false, false, false>::run(args...);
    case 1: return Op<false, false, true>::run(args...);
    case 2: return Op<false, true, false>::run(args...);
    case 3: return Op<false, true, true>::run(args...);
    case 4: return Op<true, false, false>::run(args...);
    case 5: return Op<true, false, true>::run(args...);
    case 6: return Op<true, true, false>::run(args...);
    default: return Op<true, true, true>::run(args...);
  }
}

template <bool kSign, bool kAddBeta, bool kKeepZeros>
struct Forward {
  static int run(const float* x, float* out, int64_t n, float alpha, float beta, float lo,
                 float hi, int threads) {
    forward_impl<kSign, kAddBeta, kKeepZeros>(x, out, n, alpha, beta, lo, hi, threads);
    return 0;
  }
};

template <bool kSign, bool kAddBeta, bool kKeepZeros>
struct Backward {
  static std::pair<double, double> run(const float* x, const float* grad, float* grad_x,
                                       int64_t n, float alpha, float beta, float lo, float hi,
                                       int threads) {
    return backward_impl<kSign, kAddBeta, kKeepZeros>(x, grad, grad_x, n, alpha, beta, lo, hi,
                                                       threads);
  }
};

void forward(std::uintptr_t x_ptr, std::uintptr_t out_ptr, int64_t n, float alpha, float beta,
             float lo, float hi, bool sign_set, bool add_beta, bool keep_zeros, int threads) {
  pybind11::gil_scoped_release release;
  dispatch<Forward>(sign_set, add_beta, keep_zeros, reinterpret_cast<const float*>(x_ptr),
                    reinterpret_cast<float*>(out_ptr), n, alpha, beta, lo, hi, threads);
}

// Returns (Σ g ∂out/∂α, Σ g ∂out/∂β); writes ∂L/∂x into grad_x unless its pointer is 0.
std::pair<double, double> backward(std::uintptr_t x_ptr, std::uintptr_t grad_ptr,
                                   std::uintptr_t grad_x_ptr, int64_t n, float alpha, float beta,
                                   float lo, float hi, bool sign_set, bool add_beta,
                                   bool keep_zeros, int threads) {
  pybind11::gil_scoped_release release;
  return dispatch<Backward>(sign_set, add_beta, keep_zeros,
                            reinterpret_cast<const float*>(x_ptr),
                            reinterpret_cast<const float*>(grad_ptr),
                            reinterpret_cast<float*>(grad_x_ptr), n, alpha, beta, lo, hi,
                            threads);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Fused elastic activation quantizers for the CPU (speechbrain_ext.quant)";
  m.def("forward", &forward, "Elastic quantizer forward (raw pointers; see the source)");
  m.def("backward", &backward, "Elastic quantizer backward (raw pointers; see the source)");
}
