// activation_reference.h — pointwise activations and their derivatives, as plain loops.
//
// x, y, dy, dx are n elements each (any shape, flattened).
//   relu(x)      = max(x, 0)                   relu'(x)      = x > 0
//   relu6(x)     = min(max(x, 0), 6)           relu6'(x)     = 0 < x < 6
//   hardswish(x) = x * relu6(x + 3) / 6        hardswish'(x) = 0 if x < -3, 1 if x > 3,
//                  (Howard et al. 2019,                         (2x + 3) / 6 otherwise
//                   MobileNetV3)
//   sigmoid(x)   = 1 / (1 + exp(-x))           sigmoid'(x)   = y (1 - y), from the output y
//   gelu(x)      = x Φ(x)                      gelu'(x)      = Φ(x) + x φ(x)
//                  (Hendrycks & Gimpel 2016;    with Φ(x) = (1 + erf(x/√2)) / 2 the normal
//                   PyTorch's exact form)       CDF and φ(x) = exp(-x²/2) / √(2π) its density
// At the kinks (x = 0, 6, ±3) the derivative takes PyTorch's value. Backward kernels
// accumulate (+=) into dx.
//
// Tested by: ctest -R 'op\.(relu|relu6|hardswish|sigmoid|gelu)'
// Benchmarked by: build/bench/edl_bench --benchmark_filter='^(relu|relu6|hardswish|sigmoid|gelu)/'
#pragma once

#include <cmath>
#include <cstdint>

namespace edl {

template <typename T>
void relu_forward_reference(const T* x, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0 ? x[i] : T(0);
}
template <typename T>
void relu_backward_reference(const T* x, const T* /*y*/, const T* dy, T* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] += x[i] > 0 ? dy[i] : T(0);
}

template <typename T>
void relu6_forward_reference(const T* x, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0 ? T(0) : (x[i] > 6 ? T(6) : x[i]);
}
template <typename T>
void relu6_backward_reference(const T* x, const T* /*y*/, const T* dy, T* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] += (x[i] > 0 && x[i] < 6) ? dy[i] : T(0);
}

template <typename T>
void hardswish_forward_reference(const T* x, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    T r = x[i] + 3;
    r = r < 0 ? T(0) : (r > 6 ? T(6) : r);
    y[i] = x[i] * r / 6;
  }
}
template <typename T>
void hardswish_backward_reference(const T* x, const T* /*y*/, const T* dy, T* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    T d = x[i] < -3 ? T(0) : (x[i] > 3 ? T(1) : (2 * x[i] + 3) / 6);
    dx[i] += d * dy[i];
  }
}

template <typename T>
void sigmoid_forward_reference(const T* x, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = T(1) / (T(1) + std::exp(-x[i]));
}
template <typename T>
void sigmoid_backward_reference(const T* /*x*/, const T* y, const T* dy, T* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] += dy[i] * y[i] * (T(1) - y[i]);
}

template <typename T>
void gelu_forward_reference(const T* x, T* y, int64_t n) {
  const T inv_sqrt2 = T(0.70710678118654752440);
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * (T(1) + std::erf(x[i] * inv_sqrt2)) / 2;
}
template <typename T>
void gelu_backward_reference(const T* x, const T* /*y*/, const T* dy, T* dx, int64_t n) {
  const T inv_sqrt2 = T(0.70710678118654752440), inv_sqrt_2pi = T(0.39894228040143267794);
  for (int64_t i = 0; i < n; ++i) {
    const T cdf = (T(1) + std::erf(x[i] * inv_sqrt2)) / 2;
    const T pdf = std::exp(-x[i] * x[i] / 2) * inv_sqrt_2pi;
    dx[i] += dy[i] * (cdf + x[i] * pdf);
  }
}

}  // namespace edl
