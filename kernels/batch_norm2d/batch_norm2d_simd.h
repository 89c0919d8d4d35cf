// batch_norm2d_simd.h — batch normalization on SIMD registers: training statistics, the
// normalization and the backward pass, each a loop over the H*W values of a plane.
//
// x, y, dy, dx (and residual, dresidual when given) are (N,C,H,W); gamma, beta, mean, invstd,
// running_mean, running_var are (C).
// The formulas are those of batch_norm2d_reference.h; channel c owns the N planes
// x[n, c, :, :] of HW contiguous values each, and every loop below runs over one plane in
// registers of W floats (8 with AVX2, 4 with SSE2 or NEON), then a scalar tail.
//
// Sums: a plane is summed in a register of W float partial sums (a CIFAR plane has at most
// 32*32 values: W partial sums of 1024/W values each lose nothing of note), and the planes of
// a channel are combined in double, in plane order (statistics: see batch_norm2d_stats_simd).
// Threads take whole channels (statistics, backward) or planes (normalization), so every sum is
// taken in the same order whatever the thread count, and so is the result.
//
// The backward pass folds the reference's formula into one fma per value (g = dy * gamma):
//   dx = invstd/M (M g - sum g - xhat sum(g xhat)),  xhat = (x - mean) invstd
//      = a dy + b x + k,   a = gamma invstd,  b = -a invstd sum(dy xhat) / M,
//                          k = -a sum(dy) / M - b mean
// Backward writes dx (=: it needs no zeroed buffer, one pass over memory fewer) and accumulates
// (+=) into dgamma, dbeta; any of the three may be null (not needed).
//
// Fused ReLU (relu in forward; relu_y or relu_beta in backward): the forward clamps in the same
// fma loop, and the backward reads dy through the ReLU's mask in both of its passes, where the
// separate ReLU op would read x and dy and write a masked copy that the norm then reads again.
// The mask is y > 0 after a residual's add; without one it is recomputed from x (relu_beta),
// one plane fewer to read per pass: ResNet-20's BN backward 1206 / 1209 -> 1113 / 1143 ms over
// 39 steps (edl train --profile, 2 alternating pairs), the trained weights identical bit for bit.
// Fused residual (the end of a ResNet block, y = relu(bn(x) + r)): the forward adds r in the
// same loop, and the backward writes r's gradient (the masked dy) — where the add and the ReLU
// would have taken a pass over memory each way of their own. ResNet-20 (edl train --profile,
// 39 steps, two alternating pairs): 9.72 and 9.66 s in ops instead of 10.31 and 9.89.
//
// The backward's sums go down a channel, its N planes one after another, C·HW floats apart:
// each plane (4 KB for 32×32) a page of its own, where the hardware prefetcher stops. They ask
// for the next planes of x, dy and y while summing one (prefetch.h): ResNet-20's BN backward
// took 1062-1110 ms of 39 steps instead of 1140-1142 (edl train --profile, 2 alternating
// pairs); the same in the statistics of the forward pass made no difference.
// The passes that write (the normalization, dx) ask for the next plane they will write, so
// its stores do not each wait for a line to be read in from memory first (prefetch.h,
// prefetch_floats_for_write). ResNet-20 (edl train --profile-shapes, 39 steps, 3 alternating
// pairs each, ms): backward 803 -> 774 (16 channels), 258 -> 234 (32), 210 -> 159 (64);
// forward 465 -> 447, 158 -> 146, 101 -> 96. (The same for the residual's gradient, written
// beside the sums, made no difference.)
//
// Tested by: ctest -R 'op\.batch_norm2d\.'   Benchmarked by: build/bench/edl_bench --benchmark_filter='^batch_norm2d/'
#pragma once

#include <xsimd/xsimd.hpp>

#include <cmath>
#include <cstdint>

#include "engine/threads.h"
#include "kernels/common/plane_stats.h"
#include "kernels/common/prefetch.h"

namespace edl {

using Vec = xsimd::batch<float>;  // one SIMD register of floats

// Channel c's batch mean mu and variance var (over M values) as the forward keeps them: mean,
// invstd = 1/sqrt(var + eps), and the running averages (of the unbiased variance), as the
// reference updates them.
inline void batch_norm2d_store_stats(int64_t c, double mu, double var, double M, double momentum, double eps,
                                     float* mean, float* invstd, float* running_mean, float* running_var) {
  mean[c] = static_cast<float>(mu);
  invstd[c] = static_cast<float>(1.0 / std::sqrt(var + eps));
  const double unbiased = M > 1 ? var * M / (M - 1) : var;
  running_mean[c] = static_cast<float>((1 - momentum) * running_mean[c] + momentum * mu);
  running_var[c] = static_cast<float>((1 - momentum) * running_var[c] + momentum * unbiased);
}

// Training-mode statistics: writes mean and invstd and updates the running averages. Two passes
// over each channel, as in the reference: the mean, then the squared deviations from it (one
// pass of E[x^2] - E[x]^2 subtracts two large numbers and loses every digit when the mean is
// large against the spread). A one-pass merge of per-plane statistics (Chan, Golub & LeVeque
// 1979), which reads x from memory once, measured no faster on a CIFAR layer: the channel is
// still in cache for the second pass. What pays is not reading x at all: the merge below, of
// statistics the convolution that wrote x took while each image was in cache.
inline void batch_norm2d_stats_simd(const float* x, float* mean, float* invstd, float* running_mean,
                                    float* running_var, int64_t N, int64_t C, int64_t HW, double momentum,
                                    double eps) {
  const double M = static_cast<double>(N * HW);
#pragma omp parallel for if (N * C * HW >= kParallelMin)
  for (int64_t c = 0; c < C; ++c) {
    double s = 0, ss = 0;
    for (int64_t n = 0; n < N; ++n) s += plane_sum_simd(x + (n * C + c) * HW, HW);
    const double mu = s / M;
    for (int64_t n = 0; n < N; ++n)
      ss += plane_sum_sq_dev_simd(x + (n * C + c) * HW, HW, static_cast<float>(mu));
    batch_norm2d_store_stats(c, mu, ss / M, M, momentum, eps, mean, invstd, running_mean, running_var);
  }
}

// The same statistics from the PlaneStats of x (engine/tensor.h) that the kernel that wrote x
// left (conv2d's fast variants), without reading x: each channel's planes merged in order, in
// double (Chan, Golub & LeVeque 1979: the means' differences carry the spread between planes,
// so nothing large is subtracted). The batch norm's forward then reads x once fewer: see
// batch_norm2d.cpp for what that bought.
inline void batch_norm2d_stats_from_planes(const float* plane_mean, const float* plane_m2, float* mean, float* invstd,
                                           float* running_mean, float* running_var, int64_t N, int64_t C, int64_t HW,
                                           double momentum, double eps) {
  const double M = static_cast<double>(N * HW), per_plane = static_cast<double>(HW);
  for (int64_t c = 0; c < C; ++c) {
    double mu = 0, m2 = 0, count = 0;
    for (int64_t n = 0; n < N && HW > 0; ++n) {
      const double d = plane_mean[n * C + c] - mu, total = count + per_plane;
      mu += d * per_plane / total;
      m2 += plane_m2[n * C + c] + d * d * count * per_plane / total;
      count = total;
    }
    batch_norm2d_store_stats(c, mu, M > 0 ? m2 / M : 0.0, M, momentum, eps, mean, invstd, running_mean, running_var);
  }
}

// The normalization of channel c as one fma per value, x * scale + shift: scale = gamma invstd,
// shift = beta - mean scale (itself one fma). The backward recomputes it to find where a fused
// ReLU passed the gradient (below), so both passes take it from here and round alike.
struct BnAffine {
  float scale, shift;
};
inline BnAffine batch_norm2d_affine(float gamma, float beta, float mean, float invstd) {
  const float scale = gamma * invstd;
  return {scale, std::fma(-mean, scale, beta)};
}

// y = x * scale + shift per channel (BnAffine); plus residual[i] when residual is not null.
// With relu, y = max(that, 0) (as the reference: v > 0 ? v : 0).
inline void batch_norm2d_forward_simd(const float* x, const float* gamma, const float* beta, const float* mean,
                                      const float* invstd, float* y, int64_t N, int64_t C, int64_t HW,
                                      bool relu = false, const float* residual = nullptr) {
  constexpr int64_t W = Vec::size;
  const int64_t n_vec = HW - HW % W;
#pragma omp parallel for if (N * C * HW >= kParallelMin)
  for (int64_t p = 0; p < N * C; ++p) {
    const int64_t c = p % C;
    if (p + 1 < N * C) prefetch_floats_for_write(y + (p + 1) * HW, HW);  // the next plane (see the top)
    const auto [scale, shift] = batch_norm2d_affine(gamma[c], beta[c], mean[c], invstd[c]);
    const Vec scale_v(scale), shift_v(shift), zero(0.0f);
    const float* xp = x + p * HW;
    const float* rp = residual ? residual + p * HW : nullptr;
    float* yp = y + p * HW;
    // The four cases as four loops, the tests out of them; the residual is added after the
    // fma, in the reference's order.
    if (relu && rp) {
      for (int64_t i = 0; i < n_vec; i += W) {
        const Vec v = xsimd::fma(Vec::load_unaligned(xp + i), scale_v, shift_v) + Vec::load_unaligned(rp + i);
        xsimd::select(v > zero, v, zero).store_unaligned(yp + i);
      }
    } else if (relu) {
      for (int64_t i = 0; i < n_vec; i += W) {
        const Vec v = xsimd::fma(Vec::load_unaligned(xp + i), scale_v, shift_v);
        xsimd::select(v > zero, v, zero).store_unaligned(yp + i);
      }
    } else if (rp) {
      for (int64_t i = 0; i < n_vec; i += W)
        (xsimd::fma(Vec::load_unaligned(xp + i), scale_v, shift_v) + Vec::load_unaligned(rp + i)).store_unaligned(yp + i);
    } else {
      for (int64_t i = 0; i < n_vec; i += W)
        xsimd::fma(Vec::load_unaligned(xp + i), scale_v, shift_v).store_unaligned(yp + i);
    }
    for (int64_t i = n_vec; i < HW; ++i) {
      float v = std::fma(xp[i], scale, shift);  // as the vectors (and the backward's mask)
      if (rp) v += rp[i];
      yp[i] = relu && !(v > 0) ? 0.0f : v;
    }
  }
}

// dy[i], or with a fused ReLU dy[i] where y[i] > 0 and 0 elsewhere (yp null: no ReLU).
inline Vec batch_norm2d_masked_dy(const float* gp, const float* yp, int64_t i) {
  const Vec g = Vec::load_unaligned(gp + i);
  if (!yp) return g;
  const Vec zero(0.0f);
  return xsimd::select(Vec::load_unaligned(yp + i) > zero, g, zero);
}
inline float batch_norm2d_masked_dy_scalar(const float* gp, const float* yp, int64_t i) {
  return !yp || yp[i] > 0 ? gp[i] : 0.0f;
}

// dy masked where the ReLU's input, recomputed from x as the forward computed it (x * scale +
// shift, no residual), was positive: the same floats, so the same mask as y > 0.
inline Vec batch_norm2d_dy_where_x_passed(const float* gp, Vec xv, const BnAffine& aff, int64_t i) {
  const Vec zero(0.0f);
  return xsimd::select(xsimd::fma(xv, Vec(aff.scale), Vec(aff.shift)) > zero, Vec::load_unaligned(gp + i), zero);
}
inline float batch_norm2d_dy_where_x_passed_scalar(const float* gp, float x, const BnAffine& aff, int64_t i) {
  return std::fma(x, aff.scale, aff.shift) > 0 ? gp[i] : 0.0f;
}

// The sums of dy[i] and of dy[i] (x[i] - mu) over one plane of n values (dy masked by yp as
// above, or with kMaskFromX where x passed the ReLU: aff), each in two registers of partial
// sums (four independent chains, as above).
template <bool kMaskFromX = false>
inline void batch_norm2d_plane_grad_sums_simd(const float* xp, const float* gp, const float* yp, int64_t n, float mu,
                                              float& sum_dy, float& sum_dy_xc, const BnAffine& aff = {}) {
  constexpr int64_t W = Vec::size;
  const int64_t n_vec = n - n % (2 * W);
  const Vec m(mu);
  Vec s0(0.0f), s1(0.0f), sx0(0.0f), sx1(0.0f);
  for (int64_t i = 0; i < n_vec; i += 2 * W) {
    const Vec x0 = Vec::load_unaligned(xp + i), x1 = Vec::load_unaligned(xp + i + W);
    const Vec g0 = kMaskFromX ? batch_norm2d_dy_where_x_passed(gp, x0, aff, i)  //
                              : batch_norm2d_masked_dy(gp, yp, i);
    const Vec g1 = kMaskFromX ? batch_norm2d_dy_where_x_passed(gp, x1, aff, i + W)  //
                              : batch_norm2d_masked_dy(gp, yp, i + W);
    s0 += g0;
    s1 += g1;
    sx0 = xsimd::fma(g0, x0 - m, sx0);
    sx1 = xsimd::fma(g1, x1 - m, sx1);
  }
  sum_dy = xsimd::hadd(s0 + s1), sum_dy_xc = xsimd::hadd(sx0 + sx1);
  for (int64_t i = n_vec; i < n; ++i) {
    const float g = kMaskFromX ? batch_norm2d_dy_where_x_passed_scalar(gp, xp[i], aff, i)
                               : batch_norm2d_masked_dy_scalar(gp, yp, i);
    sum_dy += g;
    sum_dy_xc += g * (xp[i] - mu);
  }
}

// relu_y: the output of a fused ReLU forward (dy counts only where it is positive), or null.
// dresidual: where to write that masked dy, the gradient of a residual added before the ReLU
// (null: none, or no ReLU, where the residual's gradient is dy itself).
// dx or dresidual may be dy itself (BackwardCtx::dy_writable): each value of dy is read before
// the one in its place is written.
// relu_beta: a fused ReLU without a residual (relu_y null): beta, and dy counts where x *
// scale + shift (BnAffine) is positive — recomputed from x, which both passes read anyway,
// rather than read from y: the sums' pass, which waits on memory, then reads two planes of
// every channel instead of three.
inline void batch_norm2d_backward_simd(const float* x, const float* gamma, const float* mean, const float* invstd,
                                       const float* dy, float* dx, float* dgamma, float* dbeta, int64_t N, int64_t C,
                                       int64_t HW, bool training, const float* relu_y = nullptr,
                                       float* dresidual = nullptr, const float* relu_beta = nullptr) {
  constexpr int64_t W = Vec::size;
  const int64_t n_vec = HW - HW % W;
  const double M = static_cast<double>(N * HW);
#pragma omp parallel for if (N * C * HW >= kParallelMin)
  for (int64_t c = 0; c < C; ++c) {
    double sum_dy = 0, sum_dy_xc = 0;  // sum(dy), sum(dy (x - mean))
    const BnAffine aff = relu_beta ? batch_norm2d_affine(gamma[c], relu_beta[c], mean[c], invstd[c]) : BnAffine{};
    for (int64_t n = 0; n < N; ++n) {
      float s, sx;
      const int64_t p = (n * C + c) * HW, next = p + C * HW;
      prefetch_floats(x + next, HW);
      prefetch_floats(dy + next, HW);
      if (relu_y) prefetch_floats(relu_y + next, HW);
      if (relu_beta) batch_norm2d_plane_grad_sums_simd<true>(x + p, dy + p, nullptr, HW, mean[c], s, sx, aff);
      else batch_norm2d_plane_grad_sums_simd(x + p, dy + p, relu_y ? relu_y + p : nullptr, HW, mean[c], s, sx);
      sum_dy += s, sum_dy_xc += sx;
      // The plane's masked dy, while it is in L1; dx's pass then reads it instead of dy and y
      // (ResNet-20's BN backward 1485-1515 -> 1387-1436 ms over 39 steps, against writing it
      // in dx's pass).
      if (dresidual) {
        const float* yp = relu_y ? relu_y + p : nullptr;
        float* drp = dresidual + p;
        for (int64_t i = 0; i < n_vec; i += W) batch_norm2d_masked_dy(dy + p, yp, i).store_unaligned(drp + i);
        for (int64_t i = n_vec; i < HW; ++i) drp[i] = batch_norm2d_masked_dy_scalar(dy + p, yp, i);
      }
    }
    const double sum_dy_xhat = sum_dy_xc * invstd[c];
    if (dgamma) dgamma[c] += static_cast<float>(sum_dy_xhat);
    if (dbeta) dbeta[c] += static_cast<float>(sum_dy);
    if (!dx) continue;
    // dx = a dy + b x + k (see the top of the file); in eval, b = k = 0.
    const double a = static_cast<double>(gamma[c]) * invstd[c];
    const double b = training ? -a * invstd[c] * sum_dy_xhat / M : 0.0;
    const double k = training ? -a * sum_dy / M - b * mean[c] : 0.0;
    const float af = static_cast<float>(a), bf = static_cast<float>(b), kf = static_cast<float>(k);
    const Vec av(af), bv(bf), kv(kf);
    for (int64_t n = 0; n < N; ++n) {
      const int64_t p = (n * C + c) * HW;
      // dy masked: dresidual holds it already, else mask it here
      const float *xp = x + p, *gp = dresidual ? dresidual + p : dy + p;
      const float* yp = relu_y && !dresidual ? relu_y + p : nullptr;
      float* dxp = dx + p;
      if (n + 1 < N) prefetch_floats_for_write(dxp + C * HW, HW);  // the next plane (see the top)
      if (relu_beta) {
        for (int64_t i = 0; i < n_vec; i += W) {
          const Vec xv = Vec::load_unaligned(xp + i);
          const Vec d = xsimd::fma(av, batch_norm2d_dy_where_x_passed(gp, xv, aff, i), xsimd::fma(bv, xv, kv));
          d.store_unaligned(dxp + i);
        }
        for (int64_t i = n_vec; i < HW; ++i)
          dxp[i] = af * batch_norm2d_dy_where_x_passed_scalar(gp, xp[i], aff, i) + bf * xp[i] + kf;
        continue;
      }
      for (int64_t i = 0; i < n_vec; i += W) {
        const Vec d = xsimd::fma(av, batch_norm2d_masked_dy(gp, yp, i), xsimd::fma(bv, Vec::load_unaligned(xp + i), kv));
        d.store_unaligned(dxp + i);
      }
      for (int64_t i = n_vec; i < HW; ++i) dxp[i] = af * batch_norm2d_masked_dy_scalar(gp, yp, i) + bf * xp[i] + kf;
    }
  }
}

}  // namespace edl
