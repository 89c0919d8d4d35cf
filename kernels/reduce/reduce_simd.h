// reduce_simd.h — sum (and through it mean) of all elements on SIMD registers.
//
// x is n floats (any shape, flattened); the forward returns sum_i x_i, the backward adds dy to
// every dx_i (accumulating, as the reference does).
//
// The sum is cut into blocks of a fixed 4096 values. Each block is summed in four registers of
// W float partial sums (W = 8 with AVX2, 4 with SSE2 or NEON): an add has to wait ~4 cycles for
// its previous result, so a single register would leave the adder idle most of the time, while
// four independent chains keep it busy. A block's sum goes to a double, and the blocks are
// added in order after the parallel loop: float partial sums of at most 4096 values lose
// nothing of note (the reference sums in double for the same reason), and since the blocks do
// not depend on the thread count, neither does the result.
//
// Tested by: ctest -R 'op\.(sum|mean)\.'     Benchmarked by: build/bench/edl_bench --benchmark_filter='^(sum|mean)/'
#pragma once

#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "engine/threads.h"

namespace edl {

using Vec = xsimd::batch<float>;  // one SIMD register of floats

inline double sum_forward_simd(const float* x, int64_t n) {
  constexpr int64_t W = Vec::size, kBlock = 4096;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> block_sum(static_cast<size_t>(blocks));
#pragma omp parallel for if (n >= kParallelMin)
  for (int64_t b = 0; b < blocks; ++b) {
    const float* p = x + b * kBlock;
    const int64_t m = std::min(kBlock, n - b * kBlock), m_vec = m - m % (4 * W);
    Vec s0(0.0f), s1(0.0f), s2(0.0f), s3(0.0f);
    for (int64_t i = 0; i < m_vec; i += 4 * W) {
      s0 += Vec::load_unaligned(p + i);
      s1 += Vec::load_unaligned(p + i + W);
      s2 += Vec::load_unaligned(p + i + 2 * W);
      s3 += Vec::load_unaligned(p + i + 3 * W);
    }
    float s = xsimd::hadd((s0 + s1) + (s2 + s3));
    for (int64_t i = m_vec; i < m; ++i) s += p[i];
    block_sum[b] = s;
  }
  double total = 0;
  for (double s : block_sum) total += s;  // in block order
  return total;
}

inline void sum_backward_simd(float dy, float* dx, int64_t n) {
  constexpr int64_t W = Vec::size;
  const int64_t n_vec = n - n % W;
#pragma omp parallel for if (n >= kParallelMin)
  for (int64_t i = 0; i < n_vec; i += W) (Vec::load_unaligned(dx + i) + Vec(dy)).store_unaligned(dx + i);
  for (int64_t i = n_vec; i < n; ++i) dx[i] += dy;
}

}  // namespace edl
