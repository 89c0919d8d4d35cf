// activation_simd.h — relu, relu6, hardswish, sigmoid, gelu and their derivatives on SIMD registers.
//
// x, y, dy, dx are n floats each (any shape, flattened); the formulas are those of
// activation_reference.h. Each kernel is one loop over whole registers of W floats (W = 8
// with AVX2, 4 with SSE2 or NEON: xsimd picks the widest the compiler targets), then the last
// n % W values go through the reference kernel itself. The loop is split across threads when n
// is large (threads.h); every value is computed on its own, so the result does not depend on
// the thread count. Backward kernels write dx (=), where the reference accumulates (+=) into a
// zeroed buffer: the variant's backward then needs no zeroed buffer, which saves one pass over
// memory out of four (ResNet-20, 24 steps: relu backward 686 and 604 ms before, 461 and 354
// after, alternating; the forward, as a control, 340/318 and 306/242).
//
// Loads are unaligned: a tensor's storage is 64-byte aligned, but a view (a slice of a batch)
// may start anywhere, and on current cores an unaligned load of aligned data costs the same.
// Constant registers (zero, six) are declared inside the parallel loops: declared outside,
// OpenMP shares one copy in memory, and since a SIMD type may alias the floats the loop stores,
// the loop reloads it on every iteration (measured 15% slower on relu6); declared inside, they
// stay in registers (the compiler hoists them out of the loop).
//
// Tested by: ctest -R 'op\.(relu|relu6|hardswish|sigmoid|gelu)\.'
// Benchmarked by: build/bench/edl_bench --benchmark_filter='^(relu|relu6|hardswish|sigmoid|gelu)/'
#pragma once

#include <algorithm>

#include <xsimd/xsimd.hpp>

#include <cstdint>

#include "engine/threads.h"
#include "kernels/activation/activation_reference.h"

namespace edl {

using Vec = xsimd::batch<float>;  // one SIMD register of floats

inline void relu_forward_simd(const float* x, float* y, int64_t n) {
  constexpr int64_t W = Vec::size;
  const int64_t n_vec = n - n % W;
#pragma omp parallel for if (n >= kParallelMin)
  for (int64_t i = 0; i < n_vec; i += W) {
    const Vec zero(0.0f);
    const Vec v = Vec::load_unaligned(x + i);
    xsimd::select(v > zero, v, zero).store_unaligned(y + i);  // as the reference: x > 0 ? x : 0
  }
  relu_forward_reference(x + n_vec, y + n_vec, n - n_vec);
}

inline void relu_backward_simd(const float* x, const float* y, const float* dy, float* dx, int64_t n) {
  constexpr int64_t W = Vec::size;
  const int64_t n_vec = n - n % W;
#pragma omp parallel for if (n >= kParallelMin)
  for (int64_t i = 0; i < n_vec; i += W) {
    const Vec zero(0.0f);
    const Vec g = xsimd::select(Vec::load_unaligned(x + i) > zero, Vec::load_unaligned(dy + i), zero);
    g.store_unaligned(dx + i);
  }
  std::fill(dx + n_vec, dx + n, 0.0f);
  relu_backward_reference(x + n_vec, y + n_vec, dy + n_vec, dx + n_vec, n - n_vec);
}

inline void relu6_forward_simd(const float* x, float* y, int64_t n) {
  constexpr int64_t W = Vec::size;
  const int64_t n_vec = n - n % W;
#pragma omp parallel for if (n >= kParallelMin)
  for (int64_t i = 0; i < n_vec; i += W) {
    const Vec zero(0.0f), six(6.0f);
    const Vec v = Vec::load_unaligned(x + i);
    xsimd::select(v < zero, zero, xsimd::select(v > six, six, v)).store_unaligned(y + i);
  }
  relu6_forward_reference(x + n_vec, y + n_vec, n - n_vec);
}

inline void relu6_backward_simd(const float* x, const float* y, const float* dy, float* dx, int64_t n) {
  constexpr int64_t W = Vec::size;
  const int64_t n_vec = n - n % W;
#pragma omp parallel for if (n >= kParallelMin)
  for (int64_t i = 0; i < n_vec; i += W) {
    const Vec zero(0.0f), six(6.0f);
    const Vec v = Vec::load_unaligned(x + i);
    const Vec g = xsimd::select(v > zero && v < six, Vec::load_unaligned(dy + i), zero);
    g.store_unaligned(dx + i);
  }
  std::fill(dx + n_vec, dx + n, 0.0f);
  relu6_backward_reference(x + n_vec, y + n_vec, dy + n_vec, dx + n_vec, n - n_vec);
}

// x * clip(x + 3, 0, 6) / 6, the division done as a product with 1/6 (one rounding more, and
// a multiply is several times cheaper than a divide).
inline void hardswish_forward_simd(const float* x, float* y, int64_t n) {
  constexpr int64_t W = Vec::size;
  const int64_t n_vec = n - n % W;
#pragma omp parallel for if (n >= kParallelMin)
  for (int64_t i = 0; i < n_vec; i += W) {
    const Vec zero(0.0f), three(3.0f), six(6.0f), sixth(1.0f / 6.0f);
    const Vec v = Vec::load_unaligned(x + i);
    const Vec r = xsimd::clip(v + three, zero, six);
    (v * r * sixth).store_unaligned(y + i);
  }
  hardswish_forward_reference(x + n_vec, y + n_vec, n - n_vec);
}

// d/dx = 0 below -3, 1 above 3, and (2x + 3) / 6 = x/3 + 1/2 between.
inline void hardswish_backward_simd(const float* x, const float* y, const float* dy, float* dx, int64_t n) {
  constexpr int64_t W = Vec::size;
  const int64_t n_vec = n - n % W;
#pragma omp parallel for if (n >= kParallelMin)
  for (int64_t i = 0; i < n_vec; i += W) {
    const Vec zero(0.0f), one(1.0f), three(3.0f), third(1.0f / 3.0f), half(0.5f);
    const Vec v = Vec::load_unaligned(x + i);
    const Vec d = xsimd::select(v < -three, zero, xsimd::select(v > three, one, xsimd::fma(v, third, half)));
    (d * Vec::load_unaligned(dy + i)).store_unaligned(dx + i);
  }
  std::fill(dx + n_vec, dx + n, 0.0f);
  hardswish_backward_reference(x + n_vec, y + n_vec, dy + n_vec, dx + n_vec, n - n_vec);
}

// 1 / (1 + exp(-x)), xsimd::exp evaluating exp on the whole register (range reduction and a
// polynomial, as a libm does). Below x = -88 exp(-x) overflows to inf and y is 0, its limit.
inline void sigmoid_forward_simd(const float* x, float* y, int64_t n) {
  constexpr int64_t W = Vec::size;
  const int64_t n_vec = n - n % W;
#pragma omp parallel for if (n >= kParallelMin)
  for (int64_t i = 0; i < n_vec; i += W) {
    const Vec one(1.0f);
    const Vec v = Vec::load_unaligned(x + i);
    (one / (one + xsimd::exp(-v))).store_unaligned(y + i);
  }
  sigmoid_forward_reference(x + n_vec, y + n_vec, n - n_vec);
}

// From the output: dx = dy * y * (1 - y).
inline void sigmoid_backward_simd(const float* x, const float* y, const float* dy, float* dx, int64_t n) {
  constexpr int64_t W = Vec::size;
  const int64_t n_vec = n - n % W;
#pragma omp parallel for if (n >= kParallelMin)
  for (int64_t i = 0; i < n_vec; i += W) {
    const Vec one(1.0f);
    const Vec s = Vec::load_unaligned(y + i);
    (Vec::load_unaligned(dy + i) * s * (one - s)).store_unaligned(dx + i);
  }
  std::fill(dx + n_vec, dx + n, 0.0f);
  sigmoid_backward_reference(x + n_vec, y + n_vec, dy + n_vec, dx + n_vec, n - n_vec);
}

// x Φ(x) with Φ(x) = (1 + erf(x/√2)) / 2; xsimd::erf is a rational approximation on the whole
// register, accurate to a few float ulps like std::erf.
inline void gelu_forward_simd(const float* x, float* y, int64_t n) {
  constexpr int64_t W = Vec::size;
  const int64_t n_vec = n - n % W;
#pragma omp parallel for if (n >= kParallelMin)
  for (int64_t i = 0; i < n_vec; i += W) {
    const Vec half(0.5f), one(1.0f), inv_sqrt2(0.70710678118654752440f);
    const Vec v = Vec::load_unaligned(x + i);
    (v * half * (one + xsimd::erf(v * inv_sqrt2))).store_unaligned(y + i);
  }
  gelu_forward_reference(x + n_vec, y + n_vec, n - n_vec);
}

// dx = dy (Φ(x) + x φ(x)), φ(x) = exp(-x²/2) / √(2π).
inline void gelu_backward_simd(const float* x, const float* y, const float* dy, float* dx, int64_t n) {
  constexpr int64_t W = Vec::size;
  const int64_t n_vec = n - n % W;
#pragma omp parallel for if (n >= kParallelMin)
  for (int64_t i = 0; i < n_vec; i += W) {
    const Vec half(0.5f), one(1.0f), inv_sqrt2(0.70710678118654752440f), inv_sqrt_2pi(0.39894228040143267794f);
    const Vec v = Vec::load_unaligned(x + i);
    const Vec cdf = half * (one + xsimd::erf(v * inv_sqrt2));
    const Vec pdf = xsimd::exp(-half * v * v) * inv_sqrt_2pi;
    (Vec::load_unaligned(dy + i) * xsimd::fma(v, pdf, cdf)).store_unaligned(dx + i);
  }
  std::fill(dx + n_vec, dx + n, 0.0f);
  gelu_backward_reference(x + n_vec, y + n_vec, dy + n_vec, dx + n_vec, n - n_vec);
}

}  // namespace edl
