// reduce_simd.h — sum (and through it mean) of all elements on SIMD registers.
//
// x is n floats (any shape, flattened); the forward returns sum_i x_i, the backward adds dy to
// every dx_i (accumulating, as the reference does).
//
// The sum is cut into blocks of a fixed 4096 values. Each block is summed in four registers of
// float partial sums (plane_sum_simd, kernels/common/plane_stats.h, which says why four). A
// block's sum goes to a double, and the blocks are added in order after the parallel loop:
// float partial sums of at most 4096 values lose nothing of note (the reference sums in double
// for the same reason), and since the blocks do not depend on the thread count, neither does
// the result.
//
// Tested by: ctest -R 'op\.(sum|mean)\.'     Benchmarked by: build/bench/edl_bench --benchmark_filter='^(sum|mean)/'
#pragma once

#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "engine/threads.h"
#include "kernels/common/plane_stats.h"

namespace edl {

using Vec = xsimd::batch<float>;  // one SIMD register of floats

inline double sum_forward_simd(const float* x, int64_t n) {
  constexpr int64_t kBlock = 4096;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> block_sum(static_cast<size_t>(blocks));
#pragma omp parallel for if (n >= kParallelMin)
  for (int64_t b = 0; b < blocks; ++b) {
    block_sum[b] = plane_sum_simd(x + b * kBlock, std::min(kBlock, n - b * kBlock));
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
