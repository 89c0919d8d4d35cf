// softmax_reference.h — softmax, log_softmax and cross-entropy over the last dimension.
//
// x, y are (R,K): R rows (every leading dimension flattened) of K values.
//   softmax(x)_k     = exp(x_k - m) / sum_j exp(x_j - m)       m = max_j x_j (for stability)
//   log_softmax(x)_k = x_k - m - log sum_j exp(x_j - m)
// Backward (per row):
//   softmax:     dx_k = y_k (dy_k - sum_j dy_j y_j)
//   log_softmax: dx_k = dy_k - softmax_k sum_j dy_j
//
// cross_entropy: logits (N,K) and targets, either class labels (N) or probabilities (N,K)
// (soft targets: mixup, distillation). With label smoothing e (Szegedy et al. 2016) the target
// distribution is q = (1 - e) target + e / K. The loss is the batch mean
//   L = -(1/N) sum_n sum_k q_nk log_softmax(x_n)_k
// and its gradients are dL/dx_nk = (softmax_nk - q_nk) / N and, for soft targets,
// dL/dtarget_nk = -(1 - e) log_softmax_nk / N. Backward kernels accumulate (+=).
//
// Tested by: ctest -R 'op\.(softmax|log_softmax|cross_entropy)'
// Benchmarked by: build/bench/edl_bench --benchmark_filter='softmax/|cross_entropy/'
#pragma once

#include <cmath>
#include <cstdint>

namespace edl {

template <typename T>
void log_softmax_forward_reference(const T* x, T* y, int64_t R, int64_t K) {
  for (int64_t r = 0; r < R; ++r) {
    const T* xr = x + r * K;
    T m = xr[0];
    for (int64_t k = 1; k < K; ++k) m = xr[k] > m ? xr[k] : m;
    T s = 0;
    for (int64_t k = 0; k < K; ++k) s += std::exp(xr[k] - m);
    const T lse = m + std::log(s);
    for (int64_t k = 0; k < K; ++k) y[r * K + k] = xr[k] - lse;
  }
}

template <typename T>
void softmax_forward_reference(const T* x, T* y, int64_t R, int64_t K) {
  log_softmax_forward_reference(x, y, R, K);
  for (int64_t i = 0; i < R * K; ++i) y[i] = std::exp(y[i]);
}

template <typename T>
void softmax_backward_reference(const T* y, const T* dy, T* dx, int64_t R, int64_t K) {
  for (int64_t r = 0; r < R; ++r) {
    T dot = 0;
    for (int64_t k = 0; k < K; ++k) dot += dy[r * K + k] * y[r * K + k];
    for (int64_t k = 0; k < K; ++k) dx[r * K + k] += y[r * K + k] * (dy[r * K + k] - dot);
  }
}

// y is the log_softmax output.
template <typename T>
void log_softmax_backward_reference(const T* y, const T* dy, T* dx, int64_t R, int64_t K) {
  for (int64_t r = 0; r < R; ++r) {
    T sum = 0;
    for (int64_t k = 0; k < K; ++k) sum += dy[r * K + k];
    for (int64_t k = 0; k < K; ++k) dx[r * K + k] += dy[r * K + k] - std::exp(y[r * K + k]) * sum;
  }
}

// The smoothed target q_nk: from a label (labels != null) or from a row of probabilities.
template <typename T>
T cross_entropy_target(const int32_t* labels, const T* probs, int64_t n, int64_t k, int64_t K, double smoothing) {
  const double t = labels ? (labels[n] == k ? 1.0 : 0.0) : static_cast<double>(probs[n * K + k]);
  return static_cast<T>((1.0 - smoothing) * t + smoothing / static_cast<double>(K));
}

// logp (N,K) receives log_softmax(logits), which backward reuses. Returns the mean loss.
template <typename T>
T cross_entropy_forward_reference(const T* logits, const int32_t* labels, const T* probs, T* logp, int64_t N,
                                  int64_t K, double smoothing) {
  log_softmax_forward_reference(logits, logp, N, K);
  double loss = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) loss -= cross_entropy_target(labels, probs, n, k, K, smoothing) * logp[n * K + k];
  return static_cast<T>(loss / static_cast<double>(N));
}

// dy is the gradient of the (scalar) loss; dlogits and dprobs may be null.
template <typename T>
void cross_entropy_backward_reference(const T* logp, const int32_t* labels, const T* probs, T dy, T* dlogits,
                                      T* dprobs, int64_t N, int64_t K, double smoothing) {
  const T scale = dy / static_cast<T>(N);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const int64_t i = n * K + k;
      if (dlogits) dlogits[i] += (std::exp(logp[i]) - cross_entropy_target(labels, probs, n, k, K, smoothing)) * scale;
      if (dprobs) dprobs[i] -= static_cast<T>(1.0 - smoothing) * logp[i] * scale;
    }
}

}  // namespace edl
