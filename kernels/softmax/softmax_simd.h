// softmax_simd.h — softmax and log_softmax over the last dimension, on SIMD registers.
//
// x, y, dy, dx are (R,K): R rows of K values; the formulas are those of softmax_reference.h.
// Each row takes three passes of registers of W floats (8 with AVX2, 4 with SSE2 or NEON),
// each followed by its scalar tail:
//   1. m = max_k x_k                      (subtracting it keeps exp from overflowing)
//   2. s = sum_k exp(x_k - m)             (xsimd::exp on the whole register)
//   3. log_softmax: y_k = x_k - m - log s      softmax: y_k = exp(x_k - m) / s
// softmax keeps exp(x_k - m) in y during pass 2 and scales it in pass 3, so it computes each
// exp once. Rows are independent: threads take whole rows when there are many values, and every
// row is computed the same way whatever the thread count. Backward kernels accumulate (+=).
//
// Tested by: ctest -R 'op\.(softmax|log_softmax)\.'
// Benchmarked by: build/bench/edl_bench --benchmark_filter='^(softmax|log_softmax)/'
#pragma once

#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "engine/threads.h"

namespace edl {

using Vec = xsimd::batch<float>;  // one SIMD register of floats

// max_k x_k of one row of K >= 1 values. (xsimd 8 has a horizontal add but no horizontal max:
// the register's lanes go through memory.)
inline float softmax_row_max_simd(const float* x, int64_t K) {
  constexpr int64_t W = Vec::size;
  const int64_t k_vec = K - K % W;
  float m = x[0];
  if (k_vec > 0) {
    Vec mv = Vec::load_unaligned(x);
    for (int64_t k = W; k < k_vec; k += W) mv = xsimd::max(mv, Vec::load_unaligned(x + k));
    alignas(64) float lanes[W];
    mv.store_aligned(lanes);
    m = *std::max_element(lanes, lanes + W);
  }
  for (int64_t k = k_vec; k < K; ++k) m = std::max(m, x[k]);
  return m;
}

// sum_k exp(x_k - m) of one row; also stores each exp(x_k - m) in e when e is not null.
inline float softmax_row_sum_exp_simd(const float* x, float m, float* e, int64_t K) {
  constexpr int64_t W = Vec::size;
  const int64_t k_vec = K - K % W;
  const Vec mv(m);
  Vec acc(0.0f);
  for (int64_t k = 0; k < k_vec; k += W) {
    const Vec ev = xsimd::exp(Vec::load_unaligned(x + k) - mv);
    if (e) ev.store_unaligned(e + k);
    acc += ev;
  }
  float s = xsimd::hadd(acc);
  for (int64_t k = k_vec; k < K; ++k) {
    const float ek = std::exp(x[k] - m);
    if (e) e[k] = ek;
    s += ek;
  }
  return s;
}

inline void log_softmax_forward_simd(const float* x, float* y, int64_t R, int64_t K) {
  constexpr int64_t W = Vec::size;
  const int64_t k_vec = K - K % W;
#pragma omp parallel for if (R * K >= kParallelMin)
  for (int64_t r = 0; r < R; ++r) {
    const float* xr = x + r * K;
    float* yr = y + r * K;
    const float m = softmax_row_max_simd(xr, K);
    const float lse = m + std::log(softmax_row_sum_exp_simd(xr, m, nullptr, K));
    const Vec lse_v(lse);
    for (int64_t k = 0; k < k_vec; k += W) (Vec::load_unaligned(xr + k) - lse_v).store_unaligned(yr + k);
    for (int64_t k = k_vec; k < K; ++k) yr[k] = xr[k] - lse;
  }
}

inline void softmax_forward_simd(const float* x, float* y, int64_t R, int64_t K) {
  constexpr int64_t W = Vec::size;
  const int64_t k_vec = K - K % W;
#pragma omp parallel for if (R * K >= kParallelMin)
  for (int64_t r = 0; r < R; ++r) {
    const float* xr = x + r * K;
    float* yr = y + r * K;
    const float inv = 1.0f / softmax_row_sum_exp_simd(xr, softmax_row_max_simd(xr, K), yr, K);
    const Vec inv_v(inv);
    for (int64_t k = 0; k < k_vec; k += W) (Vec::load_unaligned(yr + k) * inv_v).store_unaligned(yr + k);
    for (int64_t k = k_vec; k < K; ++k) yr[k] *= inv;
  }
}

// dx_k += y_k (dy_k - sum_j dy_j y_j)
inline void softmax_backward_simd(const float* y, const float* dy, float* dx, int64_t R, int64_t K) {
  constexpr int64_t W = Vec::size;
  const int64_t k_vec = K - K % W;
#pragma omp parallel for if (R * K >= kParallelMin)
  for (int64_t r = 0; r < R; ++r) {
    const float *yr = y + r * K, *gr = dy + r * K;
    float* dxr = dx + r * K;
    Vec acc(0.0f);
    for (int64_t k = 0; k < k_vec; k += W)
      acc = xsimd::fma(Vec::load_unaligned(gr + k), Vec::load_unaligned(yr + k), acc);
    float dot = xsimd::hadd(acc);
    for (int64_t k = k_vec; k < K; ++k) dot += gr[k] * yr[k];
    const Vec dot_v(dot);
    for (int64_t k = 0; k < k_vec; k += W) {
      const Vec d = Vec::load_unaligned(yr + k) * (Vec::load_unaligned(gr + k) - dot_v);
      (Vec::load_unaligned(dxr + k) + d).store_unaligned(dxr + k);
    }
    for (int64_t k = k_vec; k < K; ++k) dxr[k] += yr[k] * (gr[k] - dot);
  }
}

// y is the log_softmax output: dx_k += dy_k - exp(y_k) sum_j dy_j
inline void log_softmax_backward_simd(const float* y, const float* dy, float* dx, int64_t R, int64_t K) {
  constexpr int64_t W = Vec::size;
  const int64_t k_vec = K - K % W;
#pragma omp parallel for if (R * K >= kParallelMin)
  for (int64_t r = 0; r < R; ++r) {
    const float *yr = y + r * K, *gr = dy + r * K;
    float* dxr = dx + r * K;
    Vec acc(0.0f);
    for (int64_t k = 0; k < k_vec; k += W) acc += Vec::load_unaligned(gr + k);
    float sum = xsimd::hadd(acc);
    for (int64_t k = k_vec; k < K; ++k) sum += gr[k];
    const Vec sum_v(sum);
    for (int64_t k = 0; k < k_vec; k += W) {
      const Vec d = Vec::load_unaligned(gr + k) - xsimd::exp(Vec::load_unaligned(yr + k)) * sum_v;
      (Vec::load_unaligned(dxr + k) + d).store_unaligned(dxr + k);
    }
    for (int64_t k = k_vec; k < K; ++k) dxr[k] += gr[k] - std::exp(yr[k]) * sum;
  }
}

}  // namespace edl
