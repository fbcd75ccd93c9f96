// Fused selective scan for the CPU, forward and backward (speechbrain_ext.nnet.cpu_kernels).
//
//   h_t = exp(Δ_t A) h_(t-1) + Δ_t B_t x_t,   h before the first frame = 0
//   Δ_t = delta_t, or softplus(delta_t + delta_bias) (the mixer's dt_proj bias and softplus)
//   y_t = (C_t · h_t + D x_t) · SiLU(z_t)      (D and z optional)
//
// x, Δ, z: (batch, time, d_inner); A: (d_inner, d_state); B, C: (batch, time, d_state); D:
// (d_inner). With `reverse` the recurrence runs from the last frame to the first.
//
// Work is split over blocks of kWidth channels (OpenMP over batch × blocks in the forward pass,
// over blocks in the backward pass). A block keeps its d_state × kWidth states in a local array
// (registers / L1) and walks the sequence once; only y is written, never a
// (batch, time, d_inner, d_state) tensor. The inner loops run over the kWidth channels of a
// block, contiguous in memory, so the compiler vectorises them; exp is a polynomial written here
// so that it vectorises too (relative error ~1e-7, as libm's expf).
//
// The backward pass needs h_t again. The forward pass (when asked) saves the state at the start of
// every chunk of `chunk` frames; the backward pass walks the chunks in reverse, recomputes one
// chunk's decays and states into a local buffer from its saved start state, then runs the
// adjoint recurrence g_t = ∂L/∂h_t = gy_t C_t + exp(Δ_(t+1) A) g_(t+1) backwards through it.
// Gradients of B and C sum over channels: every thread adds into its own (batch, time, d_state)
// slice of a buffer that the caller sums over threads (deterministic for a fixed thread count).
//
// Tensors are passed as raw pointers with their batch and time strides (the last dimension must
// be contiguous); the Python side checks dtypes (fp32), devices and shapes. Only pybind11 is
// included, not the torch headers, so the build takes seconds.

#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

constexpr int kWidth = 16;     // channels per block: one AVX-512 vector, two AVX2 vectors
constexpr int kMaxState = 64;  // largest d_state held in a block's local arrays
constexpr float kLog2E = 1.4426950408889634f;

// A (batch, time, features) view: element (b, t, f) at p[b * sb + t * st + f].
struct View {
  float* p;
  int64_t sb;
  int64_t st;
  inline float* at(int64_t b, int64_t t) const { return p + b * sb + t * st; }
};

View make_view(std::uintptr_t ptr, int64_t sb, int64_t st) {
  return View{reinterpret_cast<float*>(ptr), sb, st};
}

// 2^v for v in [-126, 126] (clamped outside): 2^round(v) by exponent bits times a degree-7
// polynomial of 2^f, f in [-0.5, 0.5]. Branch-free, so loops over it vectorise.
inline float exp2_poly(float v) {
  v = std::min(std::max(v, -126.0f), 126.0f);
  const float magic = 12582912.0f;  // 1.5 · 2^23: adding and subtracting it rounds to nearest
  float r = (v + magic) - magic;
  float f = (v - r) * 0.6931471805599453f;  // f·ln2, |f·ln2| <= 0.347
  float p = 1.0f / 5040.0f;
  p = p * f + 1.0f / 720.0f;
  p = p * f + 1.0f / 120.0f;
  p = p * f + 1.0f / 24.0f;
  p = p * f + 1.0f / 6.0f;
  p = p * f + 0.5f;
  p = p * f + 1.0f;
  p = p * f + 1.0f;
  int32_t bits = (static_cast<int32_t>(r) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

inline float sigmoid(float v) { return 1.0f / (1.0f + exp2_poly(-v * kLog2E)); }

// softplus(v) = max(v, 0) + log1p(exp(-|v|)), with log1p(e) = 2 atanh(e / (2 + e)) summed to the
// s^15 term (s <= 1/3: truncation ~1e-9). Vectorises; matches torch's softplus within 1 ulp or so.
inline float softplus(float v) {
  const float e = exp2_poly(-std::fabs(v) * kLog2E);
  const float s = e / (2.0f + e), s2 = s * s;
  float p = 1.0f / 15.0f;
  p = p * s2 + 1.0f / 13.0f;
  p = p * s2 + 1.0f / 11.0f;
  p = p * s2 + 1.0f / 9.0f;
  p = p * s2 + 1.0f / 7.0f;
  p = p * s2 + 1.0f / 5.0f;
  p = p * s2 + 1.0f / 3.0f;
  p = p * s2 + 1.0f;
  return std::max(v, 0.0f) + 2.0f * s * p;
}

struct Problem {
  int64_t batch, time, d_inner, d_state, chunk;
  bool reverse;
  View x, delta, z, B, C;  // z.p == nullptr: no gate
  const float* A;          // (d_inner, d_state)
  const float* D;          // (d_inner) or nullptr
  const float* delta_bias; // (d_inner) or nullptr: added to Δ before the softplus
  bool softplus;           // Δ = softplus(delta (+ delta_bias)) when true
  inline int64_t frame(int64_t step) const { return reverse ? time - 1 - step : step; }
  inline int64_t n_chunks() const { return (time + chunk - 1) / chunk; }
};

// Δ of one frame for the block at c0: the input, or softplus(input + bias).
template <int W>
inline void step_sizes(const Problem& pb, const float* raw, int64_t c0, float* dt) {
  if (!pb.softplus) {
    for (int w = 0; w < W; ++w) dt[w] = raw[w] + (pb.delta_bias ? pb.delta_bias[c0 + w] : 0.0f);
    return;
  }
  for (int w = 0; w < W; ++w)
    dt[w] = softplus(raw[w] + (pb.delta_bias ? pb.delta_bias[c0 + w] : 0.0f));
}

// One block of `W` channels starting at c0, one batch row: forward scan; writes y (contiguous
// (batch, time, d_inner)) and, when `starts` is given, the state before every chunk into
// starts[b][k][n][c] ((batch, n_chunks, d_state, d_inner)).
template <int W>
void forward_block(const Problem& pb, int64_t b, int64_t c0, float* y, float* starts) {
  const int64_t N = pb.d_state;
  float a2[kMaxState][W];  // A · log2(e), transposed to (state, channel)
  float h[kMaxState][W];
  float d_skip[W];
  for (int64_t n = 0; n < N; ++n)
    for (int w = 0; w < W; ++w) {
      a2[n][w] = pb.A[(c0 + w) * N + n] * kLog2E;
      h[n][w] = 0.0f;
    }
  for (int w = 0; w < W; ++w) d_skip[w] = pb.D ? pb.D[c0 + w] : 0.0f;
  for (int64_t s = 0; s < pb.time; ++s) {
    if (starts && s % pb.chunk == 0) {
      float* dst = starts + ((b * pb.n_chunks() + s / pb.chunk) * N) * pb.d_inner + c0;
      for (int64_t n = 0; n < N; ++n)
        for (int w = 0; w < W; ++w) dst[n * pb.d_inner + w] = h[n][w];
    }
    const int64_t t = pb.frame(s);
    const float* xt = pb.x.at(b, t) + c0;
    float dt[W];
    step_sizes<W>(pb, pb.delta.at(b, t) + c0, c0, dt);
    const float* Bt = pb.B.at(b, t);
    const float* Ct = pb.C.at(b, t);
    float dx[W], acc[W];
    for (int w = 0; w < W; ++w) {
      dx[w] = dt[w] * xt[w];
      acc[w] = d_skip[w] * xt[w];
    }
    for (int64_t n = 0; n < N; ++n) {
      const float bn = Bt[n], cn = Ct[n];
      for (int w = 0; w < W; ++w) {
        h[n][w] = exp2_poly(dt[w] * a2[n][w]) * h[n][w] + dx[w] * bn;
        acc[w] += h[n][w] * cn;
      }
    }
    float* yt = y + (b * pb.time + t) * pb.d_inner + c0;
    if (pb.z.p) {
      const float* zt = pb.z.at(b, t) + c0;
      for (int w = 0; w < W; ++w) yt[w] = acc[w] * zt[w] * sigmoid(zt[w]);
    } else {
      for (int w = 0; w < W; ++w) yt[w] = acc[w];
    }
  }
}

// The forward scan of a full block with explicit vectors (GCC/Clang vector extensions: one
// AVX-512 register, or two AVX2 ones), the d_state states held in `NS` registers when NS > 0
// (unrolled), else in a local array of d_state vectors. Same arithmetic as forward_block.
typedef float vfloat __attribute__((vector_size(kWidth * sizeof(float))));
typedef int32_t vint __attribute__((vector_size(kWidth * sizeof(int32_t))));

inline vfloat load(const float* p) {
  vfloat v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void store(float* p, vfloat v) { std::memcpy(p, &v, sizeof(v)); }

inline vfloat exp2_vec(vfloat v) {  // exp2_poly, lane by lane
  v = v < -126.0f ? vfloat{} - 126.0f : v;
  v = v > 126.0f ? vfloat{} + 126.0f : v;
  const float magic = 12582912.0f;
  vfloat r = (v + magic) - magic;
  vfloat f = (v - r) * 0.6931471805599453f;
  vfloat p = f * (1.0f / 5040.0f) + 1.0f / 720.0f;
  p = p * f + 1.0f / 120.0f;
  p = p * f + 1.0f / 24.0f;
  p = p * f + 1.0f / 6.0f;
  p = p * f + 0.5f;
  p = p * f + 1.0f;
  p = p * f + 1.0f;
  vint bits = (__builtin_convertvector(r, vint) + 127) << 23;
  return p * reinterpret_cast<vfloat&>(bits);
}

template <int NS>
void forward_block_vec(const Problem& pb, int64_t b, int64_t c0, float* y, float* starts) {
  const int64_t N = NS > 0 ? NS : pb.d_state;
  vfloat a2[kMaxState], h[kMaxState];
  for (int64_t n = 0; n < N; ++n) {
    float column[kWidth];
    for (int w = 0; w < kWidth; ++w) column[w] = pb.A[(c0 + w) * N + n] * kLog2E;
    a2[n] = load(column);
    h[n] = vfloat{};
  }
  const vfloat d_skip = pb.D ? load(pb.D + c0) : vfloat{};
  for (int64_t s = 0; s < pb.time; ++s) {
    if (starts && s % pb.chunk == 0) {
      float* dst = starts + ((b * pb.n_chunks() + s / pb.chunk) * N) * pb.d_inner + c0;
      for (int64_t n = 0; n < N; ++n) store(dst + n * pb.d_inner, h[n]);
    }
    const int64_t t = pb.frame(s);
    const vfloat xt = load(pb.x.at(b, t) + c0);
    float dt_lanes[kWidth];
    step_sizes<kWidth>(pb, pb.delta.at(b, t) + c0, c0, dt_lanes);
    const vfloat dt = load(dt_lanes);
    const float* Bt = pb.B.at(b, t);
    const float* Ct = pb.C.at(b, t);
    const vfloat dx = dt * xt;
    vfloat acc = d_skip * xt;
#pragma GCC unroll 16
    for (int64_t n = 0; n < N; ++n) {
      h[n] = exp2_vec(dt * a2[n]) * h[n] + dx * Bt[n];
      acc += h[n] * Ct[n];
    }
    float* yt = y + (b * pb.time + t) * pb.d_inner + c0;
    if (pb.z.p) {
      float out[kWidth];
      store(out, acc);
      const float* zt = pb.z.at(b, t) + c0;
      for (int w = 0; w < kWidth; ++w) yt[w] = out[w] * zt[w] * sigmoid(zt[w]);
    } else {
      store(yt, acc);
    }
  }
}

struct Grads {
  View gy;           // incoming gradient of y
  View gx, gdelta;   // (batch, time, d_inner), written
  float* gz;         // (batch, time, d_inner) contiguous, written when z is given
  float* gA;         // (d_inner, d_state), written
  float* gD;         // (d_inner), written when D is given
  float* gB;         // (threads, batch, time, d_state), accumulated per thread
  float* gC;
};

// One block of `W` channels, every batch row: backward pass (see the file comment).
template <int W>
void backward_block(const Problem& pb, const float* starts, const Grads& g, int64_t c0,
                    float* gB_thread, float* gC_thread, float* decay_buf, float* state_buf) {
  const int64_t N = pb.d_state, K = pb.chunk;
  float a2[kMaxState][W], A[kMaxState][W], carry[kMaxState][W];
  // Sums over time of gA and gD in two levels (within a chunk, then over chunks): the rounding
  // error grows with chunk + n_chunks terms, not with the sequence length.
  float gA[kMaxState][W], gA_chunk[kMaxState][W];
  float gD[W], gD_chunk[W];
  for (int64_t n = 0; n < N; ++n)
    for (int w = 0; w < W; ++w) {
      A[n][w] = pb.A[(c0 + w) * N + n];
      a2[n][w] = A[n][w] * kLog2E;
      gA[n][w] = 0.0f;
    }
  for (int w = 0; w < W; ++w) gD[w] = 0.0f;
  // decay_buf, state_buf: (K, N, W) scratch of this thread
  auto decay = [&](int64_t i, int64_t n) { return decay_buf + (i * N + n) * W; };
  auto state = [&](int64_t i, int64_t n) { return state_buf + (i * N + n) * W; };
  for (int64_t b = 0; b < pb.batch; ++b) {
    for (int64_t n = 0; n < N; ++n)
      for (int w = 0; w < W; ++w) carry[n][w] = 0.0f;
    for (int64_t k = pb.n_chunks() - 1; k >= 0; --k) {
      const int64_t s0 = k * K, len = std::min(K, pb.time - s0);
      const float* h0 = starts + ((b * pb.n_chunks() + k) * N) * pb.d_inner + c0;
      for (int64_t n = 0; n < N; ++n)
        for (int w = 0; w < W; ++w) gA_chunk[n][w] = 0.0f;
      for (int w = 0; w < W; ++w) gD_chunk[w] = 0.0f;
      // Recompute the chunk's decays and states from its start state.
      for (int64_t i = 0; i < len; ++i) {
        const int64_t t = pb.frame(s0 + i);
        const float* xt = pb.x.at(b, t) + c0;
        float dt[W];
        step_sizes<W>(pb, pb.delta.at(b, t) + c0, c0, dt);
        const float* Bt = pb.B.at(b, t);
        for (int64_t n = 0; n < N; ++n) {
          const float* prev = i ? state(i - 1, n) : h0 + n * pb.d_inner;
          float* a = decay(i, n);
          float* h = state(i, n);
          const float bn = Bt[n];
          for (int w = 0; w < W; ++w) {
            a[w] = exp2_poly(dt[w] * a2[n][w]);
            h[w] = a[w] * prev[w] + dt[w] * xt[w] * bn;
          }
        }
      }
      // Adjoint recurrence, last frame of the chunk first.
      for (int64_t i = len - 1; i >= 0; --i) {
        const int64_t t = pb.frame(s0 + i);
        const float* xt = pb.x.at(b, t) + c0;
        const float* raw = pb.delta.at(b, t) + c0;
        float dt[W];
        step_sizes<W>(pb, raw, c0, dt);
        const float* Bt = pb.B.at(b, t);
        const float* Ct = pb.C.at(b, t);
        const float* gyt = g.gy.at(b, t) + c0;
        float gy[W];  // ∂L/∂(C·h + D x)
        if (pb.z.p) {
          const float* zt = pb.z.at(b, t) + c0;
          float pre[W];
          for (int w = 0; w < W; ++w) pre[w] = (pb.D ? pb.D[c0 + w] : 0.0f) * xt[w];
          for (int64_t n = 0; n < N; ++n) {
            const float* h = state(i, n);
            const float cn = Ct[n];
            for (int w = 0; w < W; ++w) pre[w] += h[w] * cn;
          }
          float* gzt = g.gz + (b * pb.time + t) * pb.d_inner + c0;
          for (int w = 0; w < W; ++w) {
            const float sg = sigmoid(zt[w]);
            const float silu = zt[w] * sg;
            gy[w] = gyt[w] * silu;
            gzt[w] = gyt[w] * pre[w] * sg * (1.0f + zt[w] * (1.0f - sg));
          }
        } else {
          for (int w = 0; w < W; ++w) gy[w] = gyt[w];
        }
        float* gBt = gB_thread + (b * pb.time + t) * N;
        float* gCt = gC_thread + (b * pb.time + t) * N;
        float dx[W], sum_gb[W], sum_qa[W];
        for (int w = 0; w < W; ++w) {
          dx[w] = dt[w] * xt[w];
          sum_gb[w] = 0.0f;
          sum_qa[w] = 0.0f;
        }
        for (int64_t n = 0; n < N; ++n) {
          const float* h = state(i, n);
          const float* prev = i ? state(i - 1, n) : h0 + n * pb.d_inner;
          const float* a = decay(i, n);
          const float bn = Bt[n], cn = Ct[n];
          float gc = 0.0f, gb = 0.0f;
#pragma omp simd reduction(+ : gc, gb)
          for (int w = 0; w < W; ++w) {
            const float adj = carry[n][w] + gy[w] * cn;  // g_t
            gc += gy[w] * h[w];
            gb += adj * dx[w];
            sum_gb[w] += adj * bn;
            const float q = adj * a[w] * prev[w];  // ∂L/∂(Δ_t A)
            gA_chunk[n][w] += q * dt[w];
            sum_qa[w] += q * A[n][w];
            carry[n][w] = a[w] * adj;
          }
          gCt[n] += gc;
          gBt[n] += gb;
        }
        float* gxt = g.gx.at(b, t) + c0;
        float* gdt = g.gdelta.at(b, t) + c0;
        for (int w = 0; w < W; ++w) {
          const float d = pb.D ? pb.D[c0 + w] : 0.0f;
          gxt[w] = dt[w] * sum_gb[w] + d * gy[w];
          gdt[w] = sum_qa[w] + xt[w] * sum_gb[w];
          if (pb.softplus)  // through the softplus: d softplus(v) / dv = sigmoid(v)
            gdt[w] *= sigmoid(raw[w] + (pb.delta_bias ? pb.delta_bias[c0 + w] : 0.0f));
          gD_chunk[w] += gy[w] * xt[w];
        }
      }
      for (int64_t n = 0; n < N; ++n)
        for (int w = 0; w < W; ++w) gA[n][w] += gA_chunk[n][w];
      for (int w = 0; w < W; ++w) gD[w] += gD_chunk[w];
    }
  }
  for (int64_t n = 0; n < N; ++n)
    for (int w = 0; w < W; ++w) g.gA[(c0 + w) * N + n] = gA[n][w];
  if (g.gD)
    for (int w = 0; w < W; ++w) g.gD[c0 + w] = gD[w];
}

Problem make_problem(std::uintptr_t x, int64_t x_sb, int64_t x_st, std::uintptr_t delta,
                     int64_t delta_sb, int64_t delta_st, std::uintptr_t z, int64_t z_sb,
                     int64_t z_st, std::uintptr_t B, int64_t B_sb, int64_t B_st, std::uintptr_t C,
                     int64_t C_sb, int64_t C_st, std::uintptr_t A, std::uintptr_t D,
                     std::uintptr_t delta_bias, bool softplus, int64_t batch, int64_t time, int64_t d_inner, int64_t d_state, int64_t chunk,
                     bool reverse) {
  if (d_state < 1 || d_state > kMaxState)
    throw std::invalid_argument("selective_scan_cpu: d_state must be in 1.." +
                                std::to_string(kMaxState));
  if (chunk < 1) throw std::invalid_argument("selective_scan_cpu: chunk must be positive");
  Problem pb;
  pb.batch = batch;
  pb.time = time;
  pb.d_inner = d_inner;
  pb.d_state = d_state;
  pb.chunk = chunk;
  pb.reverse = reverse;
  pb.x = make_view(x, x_sb, x_st);
  pb.delta = make_view(delta, delta_sb, delta_st);
  pb.z = make_view(z, z_sb, z_st);
  pb.B = make_view(B, B_sb, B_st);
  pb.C = make_view(C, C_sb, C_st);
  pb.A = reinterpret_cast<const float*>(A);
  pb.D = reinterpret_cast<const float*>(D);
  pb.delta_bias = reinterpret_cast<const float*>(delta_bias);
  pb.softplus = softplus;
  return pb;
}

int64_t full_blocks(const Problem& pb) { return pb.d_inner / kWidth; }
int64_t work_items(const Problem& pb) {  // full blocks, then one item per leftover channel
  return full_blocks(pb) + pb.d_inner % kWidth;
}
int64_t item_channel(const Problem& pb, int64_t item) {
  const int64_t full = full_blocks(pb);
  return item < full ? item * kWidth : full * kWidth + (item - full);
}

void forward(std::uintptr_t x, int64_t x_sb, int64_t x_st, std::uintptr_t delta, int64_t delta_sb,
             int64_t delta_st, std::uintptr_t z, int64_t z_sb, int64_t z_st, std::uintptr_t B,
             int64_t B_sb, int64_t B_st, std::uintptr_t C, int64_t C_sb, int64_t C_st,
             std::uintptr_t A, std::uintptr_t D, std::uintptr_t delta_bias, bool softplus,
             std::uintptr_t y, std::uintptr_t starts,
             int64_t batch, int64_t time, int64_t d_inner, int64_t d_state, int64_t chunk,
             bool reverse, int threads) {
  const Problem pb = make_problem(x, x_sb, x_st, delta, delta_sb, delta_st, z, z_sb, z_st, B,
                                  B_sb, B_st, C, C_sb, C_st, A, D, delta_bias, softplus, batch, time,
                                  d_inner, d_state, chunk, reverse);
  float* y_p = reinterpret_cast<float*>(y);
  float* starts_p = reinterpret_cast<float*>(starts);
  const int64_t items = work_items(pb), full = full_blocks(pb);
  pybind11::gil_scoped_release release;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t job = 0; job < batch * items; ++job) {
    const int64_t b = job / items, item = job % items;
    const int64_t c0 = item_channel(pb, item);
    if (item < full && d_state == 16)
      forward_block_vec<16>(pb, b, c0, y_p, starts_p);
    else if (item < full)
      forward_block_vec<0>(pb, b, c0, y_p, starts_p);
    else
      forward_block<1>(pb, b, c0, y_p, starts_p);
  }
}

void backward(std::uintptr_t x, int64_t x_sb, int64_t x_st, std::uintptr_t delta,
              int64_t delta_sb, int64_t delta_st, std::uintptr_t z, int64_t z_sb, int64_t z_st,
              std::uintptr_t B, int64_t B_sb, int64_t B_st, std::uintptr_t C, int64_t C_sb,
              int64_t C_st, std::uintptr_t A, std::uintptr_t D, std::uintptr_t delta_bias,
              bool softplus, std::uintptr_t starts,
              std::uintptr_t gy, int64_t gy_sb, int64_t gy_st, std::uintptr_t gx,
              int64_t gx_sb, int64_t gx_st, std::uintptr_t gdelta, int64_t gdelta_sb,
              int64_t gdelta_st, std::uintptr_t gz, std::uintptr_t gA, std::uintptr_t gD,
              std::uintptr_t gB, std::uintptr_t gC, int64_t batch, int64_t time,
              int64_t d_inner, int64_t d_state, int64_t chunk, bool reverse, int threads) {
  const Problem pb = make_problem(x, x_sb, x_st, delta, delta_sb, delta_st, z, z_sb, z_st, B,
                                  B_sb, B_st, C, C_sb, C_st, A, D, delta_bias, softplus, batch, time,
                                  d_inner, d_state, chunk, reverse);
  Grads g;
  g.gy = make_view(gy, gy_sb, gy_st);
  g.gx = make_view(gx, gx_sb, gx_st);
  g.gdelta = make_view(gdelta, gdelta_sb, gdelta_st);
  g.gz = reinterpret_cast<float*>(gz);
  g.gA = reinterpret_cast<float*>(gA);
  g.gD = reinterpret_cast<float*>(gD);
  g.gB = reinterpret_cast<float*>(gB);
  g.gC = reinterpret_cast<float*>(gC);
  const float* starts_p = reinterpret_cast<const float*>(starts);
  const int64_t items = work_items(pb), full = full_blocks(pb);
  const int64_t per_thread = batch * time * d_state;  // one slice of gB / gC
  const int64_t scratch = chunk * d_state * kWidth;
  pybind11::gil_scoped_release release;
#pragma omp parallel num_threads(threads)
  {
#ifdef _OPENMP
    const int64_t me = omp_get_thread_num(), team = omp_get_num_threads();
#else
    const int64_t me = 0, team = 1;
#endif
    std::vector<float> decay_buf(scratch), state_buf(scratch);
    // Static split of the items into contiguous ranges, one per thread: thread `me` owns slice
    // `me` of gB and gC (the caller allocates `threads` slices, zeroed).
    const int64_t begin = items * me / team, end = items * (me + 1) / team;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t c0 = item_channel(pb, item);
      float* gB_me = g.gB + me * per_thread;
      float* gC_me = g.gC + me * per_thread;
      if (item < full)
        backward_block<kWidth>(pb, starts_p, g, c0, gB_me, gC_me, decay_buf.data(),
                               state_buf.data());
      else
        backward_block<1>(pb, starts_p, g, c0, gB_me, gC_me, decay_buf.data(),
                          state_buf.data());
    }
  }
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Fused selective scan for the CPU (speechbrain_ext.nnet.cpu_kernels)";
  m.def("forward", &forward, "Selective scan forward (raw pointers; see the source)");
  m.def("backward", &backward, "Selective scan backward (raw pointers; see the source)");
  m.attr("max_state") = kMaxState;
}
