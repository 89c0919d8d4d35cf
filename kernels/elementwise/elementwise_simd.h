// elementwise_simd.h — add, sub, mul on SIMD registers, for the two layouts CNNs use.
//
//   same shape:  a, b, y are n = outer*C*inner floats      y[k] = a[k] op b[k]
//   broadcast:   a, y are (outer, C, inner), b is (C)      y[o,c,i] = a[o,c,i] op b[c]
// A per-channel bias or scale, b of shape (C,1,1) against x of shape (N,C,H,W), is outer = N,
// inner = H*W; a scalar b is C = 1. Every other broadcast runs the reference (the op's
// `supports` says which calls come here).
//
// Backward, as in elementwise_reference.h: da += dy * (1 for add and sub, b for mul);
// db += dy * (+1 for add, -1 for sub, a for mul), and a broadcast b sums that over every
// position that used it. Backward kernels accumulate (+=), but for the same-shape add/sub, which
// writes (=) fresh buffers; da or db may be null (not needed).
//
// Registers hold W floats (8 with AVX2, 4 with SSE2 or NEON); each loop runs whole registers,
// then the scalar tail. Loops over many values are split across threads (threads.h). The sums
// for db are taken per plane of `inner` values, kept in doubles, and added per channel in plane
// order after the parallel loop, so the result does not depend on the thread count.
//
// Tested by: ctest -R 'op\.(add|sub|mul)\.'
// Benchmarked by: build/bench/edl_bench --benchmark_filter='^(add|sub|mul)/'
#pragma once

#include <xsimd/xsimd.hpp>

#include <cstdint>
#include <vector>

#include "engine/threads.h"

namespace edl {

using Vec = xsimd::batch<float>;  // one SIMD register of floats

struct BinaryLayout {
  int64_t outer, C, inner;  // a and y are (outer, C, inner)
  bool same_shape;          // b too; else b is (C)
};

// y = op(a, b); `op` is a generic lambda ([](auto u, auto v) { return u + v; }) so that one
// expression serves the registers and the scalar tail.
template <typename Op>
void binary_forward_simd(const float* a, const float* b, float* y, const BinaryLayout& s, Op op) {
  constexpr int64_t W = Vec::size;
  if (s.same_shape) {
    const int64_t n = s.outer * s.C * s.inner, n_vec = n - n % W;
#pragma omp parallel for if (n >= kParallelMin)
    for (int64_t k = 0; k < n_vec; k += W)
      op(Vec::load_unaligned(a + k), Vec::load_unaligned(b + k)).store_unaligned(y + k);
    for (int64_t k = n_vec; k < n; ++k) y[k] = op(a[k], b[k]);
    return;
  }
  // One plane of `inner` values per (o, c), all sharing the value b[c].
  const int64_t planes = s.outer * s.C, inner_vec = s.inner - s.inner % W;
#pragma omp parallel for if (planes * s.inner >= kParallelMin)
  for (int64_t p = 0; p < planes; ++p) {
    const float* ap = a + p * s.inner;
    float* yp = y + p * s.inner;
    const float bc = b[p % s.C];
    const Vec bv(bc);
    for (int64_t i = 0; i < inner_vec; i += W) op(Vec::load_unaligned(ap + i), bv).store_unaligned(yp + i);
    for (int64_t i = inner_vec; i < s.inner; ++i) yp[i] = op(ap[i], bc);
  }
}

inline void add_forward_simd(const float* a, const float* b, float* y, const BinaryLayout& s) {
  binary_forward_simd(a, b, y, s, [](auto u, auto v) { return u + v; });
}
inline void sub_forward_simd(const float* a, const float* b, float* y, const BinaryLayout& s) {
  binary_forward_simd(a, b, y, s, [](auto u, auto v) { return u - v; });
}
inline void mul_forward_simd(const float* a, const float* b, float* y, const BinaryLayout& s) {
  binary_forward_simd(a, b, y, s, [](auto u, auto v) { return u * v; });
}

// db[c] += the sums of the planes of channel c (plane p belongs to channel p % C), added in
// double after the parallel loop, in plane order: the same order whatever the thread count.
inline void add_plane_sums(const std::vector<double>& plane_sum, float* db, int64_t C) {
  std::vector<double> channel_sum(static_cast<size_t>(C), 0.0);
  const int64_t planes = static_cast<int64_t>(plane_sum.size());
  for (int64_t p = 0; p < planes; ++p) channel_sum[p % C] += plane_sum[p];
  for (int64_t c = 0; c < C; ++c) db[c] += static_cast<float>(channel_sum[c]);
}

// y = a + sign * b with a and b of the same shape (sign is +1 for add, -1 for sub): da = dy and
// db = sign * dy, written (=) into buffers that need no zeroing — one pass over memory fewer
// than accumulating into zeroed ones.
inline void add_backward_same_shape_write_simd(const float* dy, float* da, float* db, float sign, int64_t n) {
  constexpr int64_t W = Vec::size;
  const int64_t n_vec = n - n % W;
#pragma omp parallel for if (n >= kParallelMin)
  for (int64_t k = 0; k < n_vec; k += W) {
    const Vec g = Vec::load_unaligned(dy + k);
    if (da) g.store_unaligned(da + k);
    if (db) (Vec(sign) * g).store_unaligned(db + k);
  }
  for (int64_t k = n_vec; k < n; ++k) {
    if (da) da[k] = dy[k];
    if (db) db[k] = sign * dy[k];
  }
}

// y = a + sign * b with b (C) broadcast over a (outer, C, inner): da += dy, db[c] += sign * the
// sum of dy over every position of channel c. (Same shapes: add_backward_same_shape_write_simd.)
inline void add_backward_simd(const float* dy, float* da, float* db, float sign, const BinaryLayout& s) {
  constexpr int64_t W = Vec::size;
  const int64_t planes = s.outer * s.C, inner_vec = s.inner - s.inner % W;
  std::vector<double> plane_sum(static_cast<size_t>(planes));  // sum of dy over each plane
#pragma omp parallel for if (planes * s.inner >= kParallelMin)
  for (int64_t p = 0; p < planes; ++p) {
    const float* g = dy + p * s.inner;
    float* dap = da ? da + p * s.inner : nullptr;
    Vec acc(0.0f);
    for (int64_t i = 0; i < inner_vec; i += W) {
      const Vec gv = Vec::load_unaligned(g + i);
      if (dap) (Vec::load_unaligned(dap + i) + gv).store_unaligned(dap + i);
      acc += gv;
    }
    float sum = xsimd::hadd(acc);
    for (int64_t i = inner_vec; i < s.inner; ++i) {
      if (dap) dap[i] += g[i];
      sum += g[i];
    }
    plane_sum[p] = static_cast<double>(sign) * sum;
  }
  if (db) add_plane_sums(plane_sum, db, s.C);
}

// y = a * b: da += dy * b, db += dy * a.
inline void mul_backward_simd(const float* a, const float* b, const float* dy, float* da, float* db,
                              const BinaryLayout& s) {
  constexpr int64_t W = Vec::size;
  if (s.same_shape) {
    const int64_t n = s.outer * s.C * s.inner, n_vec = n - n % W;
#pragma omp parallel for if (n >= kParallelMin)
    for (int64_t k = 0; k < n_vec; k += W) {
      const Vec g = Vec::load_unaligned(dy + k);
      if (da) xsimd::fma(g, Vec::load_unaligned(b + k), Vec::load_unaligned(da + k)).store_unaligned(da + k);
      if (db) xsimd::fma(g, Vec::load_unaligned(a + k), Vec::load_unaligned(db + k)).store_unaligned(db + k);
    }
    for (int64_t k = n_vec; k < n; ++k) {
      if (da) da[k] += dy[k] * b[k];
      if (db) db[k] += dy[k] * a[k];
    }
    return;
  }
  const int64_t planes = s.outer * s.C, inner_vec = s.inner - s.inner % W;
  std::vector<double> plane_sum(static_cast<size_t>(planes));  // sum of dy * a over each plane
#pragma omp parallel for if (planes * s.inner >= kParallelMin)
  for (int64_t p = 0; p < planes; ++p) {
    const float *g = dy + p * s.inner, *ap = a + p * s.inner;
    float* dap = da ? da + p * s.inner : nullptr;
    const float bc = b[p % s.C];
    const Vec bv(bc);
    Vec acc(0.0f);
    for (int64_t i = 0; i < inner_vec; i += W) {
      const Vec gv = Vec::load_unaligned(g + i);
      if (dap) xsimd::fma(gv, bv, Vec::load_unaligned(dap + i)).store_unaligned(dap + i);
      acc = xsimd::fma(gv, Vec::load_unaligned(ap + i), acc);
    }
    float sum = xsimd::hadd(acc);
    for (int64_t i = inner_vec; i < s.inner; ++i) {
      if (dap) dap[i] += g[i] * bc;
      sum += g[i] * ap[i];
    }
    plane_sum[p] = sum;
  }
  if (db) add_plane_sums(plane_sum, db, s.C);
}

}  // namespace edl
