// batch_norm2d_reference.h — batch normalization over (N,H,W) per channel (Ioffe & Szegedy 2015).
//
// x is (N,C,H,W), gamma (weight), beta (bias), mean, invstd, running_mean, running_var are (C),
// y (and residual, when given) is (N,C,H,W). Per channel c, over the M = N*H*W values of that channel:
//   training: mean[c] = (1/M) sum x,   var[c] = (1/M) sum (x - mean)^2   (biased, as PyTorch)
//             running_mean = (1-momentum) running_mean + momentum mean
//             running_var  = (1-momentum) running_var  + momentum var * M/(M-1)   (unbiased)
//   eval:     mean, var = running_mean, running_var
//   invstd = 1 / sqrt(var + eps),   xhat = (x - mean) invstd,   y = gamma xhat + beta
// Backward in training, where mean and var depend on x (with g = dy * gamma):
//   dx = invstd / M * (M g - sum(g) - xhat sum(g xhat))
//   dgamma = sum(dy xhat),   dbeta = sum(dy)
// In eval mean and var are constants, so dx = g invstd. The backward kernel accumulates (+=).
// Fused with a ReLU (attribute relu = 1): the op definition composes these kernels with the
// ReLU's own reference kernels (kernels/activation/activation_reference.h): y = relu(bn(x)), and
// backward first keeps dy only where y > 0, then runs the formulas above.
// With a residual r (the end of a residual block): y = relu?(bn(x) + r), and the gradient of r
// is that same dy (kept where y > 0 when there is a ReLU).
//
// Tested by: ctest -R 'op\.batch_norm2d'     Benchmarked by: build/bench/edl_bench --benchmark_filter='^batch_norm2d/'
#pragma once

#include <cmath>
#include <cstdint>

namespace edl {

// Training-mode statistics: writes mean and invstd (C) and updates the running averages.
template <typename T>
void batch_norm2d_stats_reference(const T* x, T* mean, T* invstd, T* running_mean, T* running_var, int64_t N,
                                  int64_t C, int64_t HW, double momentum, double eps) {
  const int64_t M = N * HW;
  for (int64_t c = 0; c < C; ++c) {
    double s = 0, ss = 0;  // accumulate in double: a channel has up to millions of values
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) s += x[(n * C + c) * HW + i];
    double mu = s / static_cast<double>(M);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        double d = x[(n * C + c) * HW + i] - mu;
        ss += d * d;
      }
    double var = ss / static_cast<double>(M);
    mean[c] = static_cast<T>(mu);
    invstd[c] = static_cast<T>(1.0 / std::sqrt(var + eps));
    double unbiased = M > 1 ? var * static_cast<double>(M) / static_cast<double>(M - 1) : var;
    running_mean[c] = static_cast<T>((1 - momentum) * running_mean[c] + momentum * mu);
    running_var[c] = static_cast<T>((1 - momentum) * running_var[c] + momentum * unbiased);
  }
}

// y = gamma (x - mean) invstd + beta (+ residual, when not null), whichever statistics mean and
// invstd hold.
template <typename T>
void batch_norm2d_forward_reference(const T* x, const T* gamma, const T* beta, const T* mean, const T* invstd, T* y,
                                    int64_t N, int64_t C, int64_t HW, const T* residual = nullptr) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) {
      const T scale = gamma[c] * invstd[c], shift = beta[c] - mean[c] * scale;
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t k = (n * C + c) * HW + i;
        y[k] = x[k] * scale + shift + (residual ? residual[k] : T(0));
      }
    }
}

template <typename T>
void batch_norm2d_backward_reference(const T* x, const T* gamma, const T* mean, const T* invstd, const T* dy, T* dx,
                                     T* dgamma, T* dbeta, int64_t N, int64_t C, int64_t HW, bool training) {
  const double M = static_cast<double>(N * HW);
  for (int64_t c = 0; c < C; ++c) {
    double sum_dy = 0, sum_dy_xhat = 0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t k = (n * C + c) * HW + i;
        sum_dy += dy[k];
        sum_dy_xhat += dy[k] * (x[k] - mean[c]) * invstd[c];
      }
    if (dgamma) dgamma[c] += static_cast<T>(sum_dy_xhat);
    if (dbeta) dbeta[c] += static_cast<T>(sum_dy);
    if (!dx) continue;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t i = 0; i < HW; ++i) {
        const int64_t k = (n * C + c) * HW + i;
        if (training) {
          const double xhat = (x[k] - mean[c]) * invstd[c];
          dx[k] += static_cast<T>(gamma[c] * invstd[c] / M * (M * dy[k] - sum_dy - xhat * sum_dy_xhat));
        } else {
          dx[k] += gamma[c] * invstd[c] * dy[k];
        }
      }
  }
}

}  // namespace edl
