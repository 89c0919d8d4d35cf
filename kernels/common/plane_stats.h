// plane_stats.h — sums over one plane of floats on SIMD registers: its sum, the squared
// deviations from a mean, and from both the plane's PlaneStats (engine/tensor.h) — what
// batch_norm2d's statistics are made of, and what conv2d's fast variants leave for it.
#pragma once

#include <algorithm>
#include <cstdint>

#include <xsimd/xsimd.hpp>

namespace edl {

// The sum of one plane of n values, in four registers of partial sums: an add waits ~3-4
// cycles for the previous result in its register, so one register would leave the adder idle
// most of the time (and halve the speed of the statistics), while four independent chains
// keep it busy. (A CIFAR plane has at most 32*32 values, sum's blocks 4096: W partial sums of
// n/W values each lose nothing of note.)
inline float plane_sum_simd(const float* p, int64_t n) {
  using V = xsimd::batch<float>;
  constexpr int64_t W = V::size;
  const int64_t n_vec = n - n % (4 * W);
  V s0(0.0f), s1(0.0f), s2(0.0f), s3(0.0f);
  for (int64_t i = 0; i < n_vec; i += 4 * W) {
    s0 += V::load_unaligned(p + i);
    s1 += V::load_unaligned(p + i + W);
    s2 += V::load_unaligned(p + i + 2 * W);
    s3 += V::load_unaligned(p + i + 3 * W);
  }
  float sum = xsimd::hadd((s0 + s1) + (s2 + s3));
  for (int64_t i = n_vec; i < n; ++i) sum += p[i];
  return sum;
}

// The sum of (p[i] - mu)^2 over one plane of n values, in four registers as above.
inline float plane_sum_sq_dev_simd(const float* p, int64_t n, float mu) {
  using V = xsimd::batch<float>;
  constexpr int64_t W = V::size;
  const int64_t n_vec = n - n % (4 * W);
  const V m(mu);
  V s0(0.0f), s1(0.0f), s2(0.0f), s3(0.0f);
  for (int64_t i = 0; i < n_vec; i += 4 * W) {
    const V d0 = V::load_unaligned(p + i) - m, d1 = V::load_unaligned(p + i + W) - m;
    const V d2 = V::load_unaligned(p + i + 2 * W) - m, d3 = V::load_unaligned(p + i + 3 * W) - m;
    s0 = xsimd::fma(d0, d0, s0);
    s1 = xsimd::fma(d1, d1, s1);
    s2 = xsimd::fma(d2, d2, s2);
    s3 = xsimd::fma(d3, d3, s3);
  }
  float sum = xsimd::hadd((s0 + s1) + (s2 + s3));
  for (int64_t i = n_vec; i < n; ++i) sum += (p[i] - mu) * (p[i] - mu);
  return sum;
}

// A plane's mean and the sum of its squared deviations from it, in one pass (meant for a plane
// just written, still in cache: a kernel's output). The sums are of d = p[i] - p[0], not of
// p[i]: M2 = Σd² - (Σd)²/n then subtracts numbers about as large as M2 itself (p[0] is one of
// the values, a standard deviation or so from their mean), where Σp² - (Σp)²/n would lose every
// digit of a plane whose mean is large against its spread. Two chains of partial sums per sum
// (see plane_sum_simd), lanes added in double.
inline void plane_mean_m2_simd(const float* p, int64_t n, float& mean, float& m2) {
  if (n <= 0) {
    mean = m2 = 0.0f;
    return;
  }
  using V = xsimd::batch<float>;
  constexpr int64_t W = V::size;
  const int64_t n_vec = n - n % (2 * W);
  const float shift = p[0];
  const V k(shift);
  V s0(0.0f), s1(0.0f), q0(0.0f), q1(0.0f);
  for (int64_t i = 0; i < n_vec; i += 2 * W) {
    const V d0 = V::load_unaligned(p + i) - k, d1 = V::load_unaligned(p + i + W) - k;
    s0 += d0;
    s1 += d1;
    q0 = xsimd::fma(d0, d0, q0);
    q1 = xsimd::fma(d1, d1, q1);
  }
  alignas(64) float s_lanes[W], q_lanes[W];
  (s0 + s1).store_aligned(s_lanes);
  (q0 + q1).store_aligned(q_lanes);
  double sum = 0, sum_sq = 0;
  for (int64_t l = 0; l < W; ++l) sum += s_lanes[l], sum_sq += q_lanes[l];
  for (int64_t i = n_vec; i < n; ++i) {
    const double d = static_cast<double>(p[i]) - shift;
    sum += d, sum_sq += d * d;
  }
  const double count = static_cast<double>(n);
  mean = static_cast<float>(shift + sum / count);
  m2 = static_cast<float>(std::max(0.0, sum_sq - sum * sum / count));
}

// Where a kernel writes the PlaneStats of its output (mean[n*C + c], m2[n*C + c]), and whether
// it did: kernels that compute them only on some of their paths set `done` when they have.
struct PlaneStatsOut {
  float* mean;
  float* m2;
  bool done = false;
};

}  // namespace edl
