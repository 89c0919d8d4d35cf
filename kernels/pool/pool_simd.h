// pool_simd.h — max, average and global average pooling on SIMD registers.
//
// Shapes and formulas as in pool_reference.h: x is (N,C,H,W) seen as P = N*C planes, y is
// (N,C,OH,OW) (or (N,C) for global pooling), argmax holds for each output the plane index of
// its input. Planes are independent, so threads take whole planes, and the result does not
// depend on the thread count.
//
// Windows. SIMD wants contiguous loads, but the windows of a stride-2 pooling start at every
// other column. So for each output row we evaluate the window at *every* column j (W
// consecutive columns per register, each tap one unaligned load of W neighbours), into a row
// buffer, and keep every stride-th: y[oh, ow] = row[ow * stride - padding]. Stride 2 computes
// twice the windows it needs, each from whole-register loads, which beats gathering every other
// value (AVX2's gather is slow and SSE2 and NEON have none). Windows that cross the padding
// (border outputs), and rows with fewer windows than a register holds, take the scalar path:
// the reference's loop for a single output.
//
// Max: the taps are visited in the reference's order (row by row) and a tap wins only when it
// is strictly greater, so ties go to the same input as in the reference; its plane index rides
// along in a register of int32. Backward routes dy to argmax: a scatter, which no SIMD
// instruction set here has (AVX-512 would), so it stays a scalar loop, threaded over planes.
// Average backward mirrors the forward: dy / (K*K) is spread into a row buffer at the window
// starts (zeros between them) and each tap adds that buffer to its row of dx with whole
// registers. The backward kernels add (+=) into a zeroed dx; subsampling's (below) writes it.
//
// Tested by: ctest -R 'op\.(max_pool2d|avg_pool2d|global_avg_pool2d)\.'
// Benchmarked by: build/bench/edl_bench --benchmark_filter='pool2d/'
#pragma once

#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "engine/threads.h"
#include "kernels/pool/pool_reference.h"

namespace edl {

using Vec = xsimd::batch<float>;  // one SIMD register of floats
using IVec = xsimd::batch<int32_t>;
static_assert(IVec::size == Vec::size, "an int32 index rides in each float lane");

// The outputs whose windows lie inside the input: rows [oh_lo, oh_hi), columns [ow_lo, ow_hi)
// (lo == hi when no window fits). The others cross the padding.
struct PoolInterior {
  int64_t oh_lo, oh_hi, ow_lo, ow_hi;
};
inline PoolInterior pool_interior(const Pool2dShape& s) {
  const int64_t lo = (s.padding + s.stride - 1) / s.stride;  // the first o with o*stride - padding >= 0
  auto hi = [&](int64_t in, int64_t out) {  // one past the last o with o*stride - padding + K <= in
    const int64_t last_start = in + s.padding - s.K;
    const int64_t end = last_start < 0 ? 0 : last_start / s.stride + 1;
    return std::clamp(end, std::min(lo, out), out);
  };
  return {std::min(lo, s.OH), hi(s.H, s.OH), std::min(lo, s.OW), hi(s.W, s.OW)};
}

// The SIMD part of output row oh: columns [ow_lo, ow_hi), whose windows start at the input
// columns j = ow*stride - padding in [j_lo, j_end). Empty for a row whose windows cross the
// padding and for one with fewer window columns than a register holds.
struct PoolRow {
  int64_t ow_lo, ow_hi, j_lo, j_end;
};
inline PoolRow pool_row(const Pool2dShape& s, const PoolInterior& in, int64_t oh) {
  const PoolRow r{in.ow_lo, in.ow_hi, in.ow_lo * s.stride - s.padding, (in.ow_hi - 1) * s.stride - s.padding + 1};
  const bool inside = oh >= in.oh_lo && oh < in.oh_hi && in.ow_lo < in.ow_hi;
  return inside && r.j_end - r.j_lo >= static_cast<int64_t>(Vec::size) ? r : PoolRow{0, 0, 0, 0};
}

// ---- max ----------------------------------------------------------------------------------

// One output through the reference's loop (windows that cross the padding).
inline void max_pool2d_one_output(const float* xp, const Pool2dShape& s, int64_t oh, int64_t ow, float& y,
                                  int32_t& argmax) {
  float best = -std::numeric_limits<float>::infinity();
  int32_t best_i = -1;
  for (int64_t kh = 0; kh < s.K; ++kh)
    for (int64_t kw = 0; kw < s.K; ++kw) {
      const int64_t ih = oh * s.stride - s.padding + kh, iw = ow * s.stride - s.padding + kw;
      if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
      const float v = xp[ih * s.W + iw];
      if (v > best || best_i < 0) best = v, best_i = static_cast<int32_t>(ih * s.W + iw);
    }
  y = best, argmax = best_i;
}

// The max over the K x K window whose top-left input is (ih0, j), for every column j in
// [j_lo, j_end) (at least W of them); row_max[j] and row_arg[j] receive value and plane index.
// The last register is moved back to end at j_end: it recomputes a few windows instead of
// needing a scalar tail.
inline void max_pool2d_row_simd(const float* xp, const Pool2dShape& s, int64_t ih0, int64_t j_lo, int64_t j_end,
                                float* row_max, int32_t* row_arg) {
  constexpr int64_t W = Vec::size;
  alignas(64) int32_t lane_index[W];
  for (int64_t l = 0; l < W; ++l) lane_index[l] = static_cast<int32_t>(l);
  const IVec lane = IVec::load_aligned(lane_index);
  for (int64_t j0 = j_lo; j0 < j_end; j0 += W) {
    const int64_t j = std::min(j0, j_end - W);
    Vec best = Vec::load_unaligned(xp + ih0 * s.W + j);  // tap (0, 0) first, as in the reference
    IVec arg = IVec(static_cast<int32_t>(ih0 * s.W + j)) + lane;
    for (int64_t kh = 0; kh < s.K; ++kh)
      for (int64_t kw = (kh == 0 ? 1 : 0); kw < s.K; ++kw) {
        const int64_t at = (ih0 + kh) * s.W + j + kw;
        const Vec v = Vec::load_unaligned(xp + at);
        const auto wins = v > best;  // strictly: on a tie the earlier tap keeps it
        best = xsimd::select(wins, v, best);
        arg = xsimd::select(xsimd::bool_cast(wins), IVec(static_cast<int32_t>(at)) + lane, arg);
      }
    best.store_unaligned(row_max + j);
    arg.store_unaligned(row_arg + j);
  }
}

inline void max_pool2d_forward_simd(const float* x, float* y, int32_t* argmax, const Pool2dShape& s) {
  const PoolInterior in = pool_interior(s);
#pragma omp parallel if (s.P * s.H * s.W >= kParallelMin)
  {
    std::vector<float> max_buffer(static_cast<size_t>(s.W));  // one output row's windows, per thread
    std::vector<int32_t> arg_buffer(static_cast<size_t>(s.W));
    float* row_max = max_buffer.data();
    int32_t* row_arg = arg_buffer.data();
#pragma omp for
    for (int64_t p = 0; p < s.P; ++p) {
      const float* xp = x + p * s.H * s.W;
      for (int64_t oh = 0; oh < s.OH; ++oh) {
        float* yr = y + (p * s.OH + oh) * s.OW;
        int32_t* ar = argmax + (p * s.OH + oh) * s.OW;
        const PoolRow r = pool_row(s, in, oh);
        if (r.ow_lo < r.ow_hi) {
          max_pool2d_row_simd(xp, s, oh * s.stride - s.padding, r.j_lo, r.j_end, row_max, row_arg);
          for (int64_t ow = r.ow_lo; ow < r.ow_hi; ++ow) {  // keep every stride-th window
            yr[ow] = row_max[ow * s.stride - s.padding];
            ar[ow] = row_arg[ow * s.stride - s.padding];
          }
        }
        for (int64_t ow = 0; ow < s.OW; ++ow)
          if (ow < r.ow_lo || ow >= r.ow_hi) max_pool2d_one_output(xp, s, oh, ow, yr[ow], ar[ow]);
      }
    }
  }
}

// dx[argmax] += dy: a scalar scatter (see the top of the file), threads over planes.
inline void max_pool2d_backward_simd(const int32_t* argmax, const float* dy, float* dx, const Pool2dShape& s) {
  const int64_t OHW = s.OH * s.OW;
#pragma omp parallel for if (s.P * s.H * s.W >= kParallelMin)
  for (int64_t p = 0; p < s.P; ++p)
    for (int64_t o = 0; o < OHW; ++o) dx[p * s.H * s.W + argmax[p * OHW + o]] += dy[p * OHW + o];
}

// ---- average ------------------------------------------------------------------------------

inline float avg_pool2d_one_output(const float* xp, const Pool2dShape& s, int64_t oh, int64_t ow) {
  float acc = 0;
  for (int64_t kh = 0; kh < s.K; ++kh)
    for (int64_t kw = 0; kw < s.K; ++kw) {
      const int64_t ih = oh * s.stride - s.padding + kh, iw = ow * s.stride - s.padding + kw;
      if (ih >= 0 && ih < s.H && iw >= 0 && iw < s.W) acc += xp[ih * s.W + iw];
    }
  return acc * (1.0f / static_cast<float>(s.K * s.K));
}

// The mean over the K x K window whose top-left input is (ih0, j), for j in [j_lo, j_end) (at
// least W columns; the last register moved back as for max).
inline void avg_pool2d_row_simd(const float* xp, const Pool2dShape& s, int64_t ih0, int64_t j_lo, int64_t j_end,
                                float* row) {
  constexpr int64_t W = Vec::size;
  const Vec inv(1.0f / static_cast<float>(s.K * s.K));
  for (int64_t j0 = j_lo; j0 < j_end; j0 += W) {
    const int64_t j = std::min(j0, j_end - W);
    Vec acc(0.0f);
    for (int64_t kh = 0; kh < s.K; ++kh)
      for (int64_t kw = 0; kw < s.K; ++kw) acc += Vec::load_unaligned(xp + (ih0 + kh) * s.W + j + kw);
    (acc * inv).store_unaligned(row + j);
  }
}

inline void avg_pool2d_forward_simd(const float* x, float* y, const Pool2dShape& s) {
  const PoolInterior in = pool_interior(s);
#pragma omp parallel if (s.P * s.H * s.W >= kParallelMin)
  {
    std::vector<float> buffer(static_cast<size_t>(s.W));  // one output row's windows, per thread
    float* row = buffer.data();
#pragma omp for
    for (int64_t p = 0; p < s.P; ++p) {
      const float* xp = x + p * s.H * s.W;
      for (int64_t oh = 0; oh < s.OH; ++oh) {
        float* yr = y + (p * s.OH + oh) * s.OW;
        const PoolRow r = pool_row(s, in, oh);
        if (r.ow_lo < r.ow_hi) {
          avg_pool2d_row_simd(xp, s, oh * s.stride - s.padding, r.j_lo, r.j_end, row);
          for (int64_t ow = r.ow_lo; ow < r.ow_hi; ++ow) yr[ow] = row[ow * s.stride - s.padding];
        }
        for (int64_t ow = 0; ow < s.OW; ++ow)
          if (ow < r.ow_lo || ow >= r.ow_hi) yr[ow] = avg_pool2d_one_output(xp, s, oh, ow);
      }
    }
  }
}

inline void avg_pool2d_backward_simd(const float* dy, float* dx, const Pool2dShape& s) {
  constexpr int64_t W = Vec::size;
  const PoolInterior in = pool_interior(s);
  const float inv = 1.0f / static_cast<float>(s.K * s.K);
#pragma omp parallel if (s.P * s.H * s.W >= kParallelMin)
  {
    std::vector<float> buffer(static_cast<size_t>(s.W));  // dy / (K*K) at the window starts, 0 between
    float* row = buffer.data();
#pragma omp for
    for (int64_t p = 0; p < s.P; ++p) {
      float* dxp = dx + p * s.H * s.W;
      for (int64_t oh = 0; oh < s.OH; ++oh) {
        const float* g = dy + (p * s.OH + oh) * s.OW;
        const int64_t ih0 = oh * s.stride - s.padding;
        const PoolRow r = pool_row(s, in, oh);
        if (r.ow_lo < r.ow_hi) {
          std::fill(row + r.j_lo, row + r.j_end, 0.0f);
          for (int64_t ow = r.ow_lo; ow < r.ow_hi; ++ow) row[ow * s.stride - s.padding] = g[ow] * inv;
          for (int64_t kh = 0; kh < s.K; ++kh)
            for (int64_t kw = 0; kw < s.K; ++kw) {
              float* d = dxp + (ih0 + kh) * s.W + kw;  // d[j]: tap (kh, kw) of the window starting at column j
              int64_t j = r.j_lo;
              for (; j + W <= r.j_end; j += W)
                (Vec::load_unaligned(d + j) + Vec::load_unaligned(row + j)).store_unaligned(d + j);
              for (; j < r.j_end; ++j) d[j] += row[j];
            }
        }
        for (int64_t ow = 0; ow < s.OW; ++ow) {
          if (ow >= r.ow_lo && ow < r.ow_hi) continue;
          for (int64_t kh = 0; kh < s.K; ++kh)  // the reference's loop, for one output
            for (int64_t kw = 0; kw < s.K; ++kw) {
              const int64_t ih = ih0 + kh, iw = ow * s.stride - s.padding + kw;
              if (ih >= 0 && ih < s.H && iw >= 0 && iw < s.W) dxp[ih * s.W + iw] += g[ow] * inv;
            }
        }
      }
    }
  }
}

// ---- subsampling --------------------------------------------------------------------------
// An average over 1×1 windows without padding only keeps every stride-th value of every
// stride-th row (x[:, :, ::2, ::2]: ResNet-20's option-A shortcut before subsample_pad2d): the
// forward is a strided copy, and the backward writes all of dx — dy where a window starts, 0
// elsewhere — instead of adding to a zeroed tensor, as no two windows share an input. Against
// the row-buffer kernels above, which evaluate every column and write dx twice (edl train
// --model resnet20 --profile, 39 steps, two alternating pairs): forward 84-86 -> 37-38 ms,
// backward 130-135 -> 49-56 ms.
inline bool avg_pool2d_is_subsample(const Pool2dShape& s) { return s.K == 1 && s.padding == 0; }

inline void avg_pool2d_subsample_forward(const float* x, float* y, const Pool2dShape& s) {
#pragma omp parallel for if (s.P * s.OH * s.OW >= kParallelMin)
  for (int64_t p = 0; p < s.P; ++p)
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      const float* xr = x + (p * s.H + oh * s.stride) * s.W;
      float* yr = y + (p * s.OH + oh) * s.OW;
      for (int64_t ow = 0; ow < s.OW; ++ow) yr[ow] = xr[ow * s.stride];
    }
}

// Writes (=) every value of dx.
inline void avg_pool2d_subsample_backward(const float* dy, float* dx, const Pool2dShape& s) {
#pragma omp parallel for if (s.P * s.H * s.W >= kParallelMin)
  for (int64_t p = 0; p < s.P; ++p)
    for (int64_t ih = 0; ih < s.H; ++ih) {
      float* d = dx + (p * s.H + ih) * s.W;
      std::fill_n(d, s.W, 0.0f);
      const int64_t oh = ih / s.stride;
      if (ih % s.stride != 0 || oh >= s.OH) continue;
      const float* g = dy + (p * s.OH + oh) * s.OW;
      for (int64_t ow = 0; ow < s.OW; ++ow) d[ow * s.stride] = g[ow];
    }
}

// ---- global average -----------------------------------------------------------------------

// x is (P, HW) planes, y is (P): the mean of each plane.
inline void global_avg_pool2d_forward_simd(const float* x, float* y, int64_t P, int64_t HW) {
  constexpr int64_t W = Vec::size;
  const int64_t n_vec = HW - HW % W;
#pragma omp parallel for if (P * HW >= kParallelMin)
  for (int64_t p = 0; p < P; ++p) {
    const float* xp = x + p * HW;
    Vec acc(0.0f);
    for (int64_t i = 0; i < n_vec; i += W) acc += Vec::load_unaligned(xp + i);
    float sum = xsimd::hadd(acc);
    for (int64_t i = n_vec; i < HW; ++i) sum += xp[i];
    y[p] = sum / static_cast<float>(HW);
  }
}

inline void global_avg_pool2d_backward_simd(const float* dy, float* dx, int64_t P, int64_t HW) {
  constexpr int64_t W = Vec::size;
  const int64_t n_vec = HW - HW % W;
#pragma omp parallel for if (P * HW >= kParallelMin)
  for (int64_t p = 0; p < P; ++p) {
    float* dxp = dx + p * HW;
    const float g = dy[p] / static_cast<float>(HW);
    for (int64_t i = 0; i < n_vec; i += W) (Vec::load_unaligned(dxp + i) + Vec(g)).store_unaligned(dxp + i);
    for (int64_t i = n_vec; i < HW; ++i) dxp[i] += g;
  }
}

}  // namespace edl
