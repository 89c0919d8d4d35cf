// pool_reference.h — max, average and global average pooling, as plain loops.
//
// x is (N,C,H,W), y is (N,C,OH,OW) with OH = (H + 2*padding - K) / stride + 1 (OW likewise);
// global average pooling gives y of shape (N,C). Planes are independent, so the kernels work
// on P = N*C planes of H*W values.
//   max:     y = max over the window (padding never wins: it is -infinity, as in PyTorch);
//            argmax records which input each output came from, and backward routes dy there:
//            dx[argmax] += dy.
//   average: y = (1/(K*K)) sum over the window, padding counting as zeros (PyTorch's default
//            count_include_pad=True); backward spreads dy / (K*K) over the window.
//   global:  y = mean over the whole plane; backward spreads dy / (H*W) over it.
// Backward kernels accumulate (+=) into dx.
//
// Tested by: ctest -R 'op\.(max_pool2d|avg_pool2d|global_avg_pool2d)'
// Benchmarked by: build/bench/edl_bench --benchmark_filter='pool2d/'
#pragma once

#include <cstdint>
#include <limits>

namespace edl {

struct Pool2dShape {
  int64_t P, H, W;                 // P = N*C planes
  int64_t K, stride, padding;
  int64_t OH, OW;
};

template <typename T>
void max_pool2d_forward_reference(const T* x, T* y, int32_t* argmax, const Pool2dShape& s) {
  for (int64_t p = 0; p < s.P; ++p)
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        T best = -std::numeric_limits<T>::infinity();
        int32_t best_i = -1;
        for (int64_t kh = 0; kh < s.K; ++kh)
          for (int64_t kw = 0; kw < s.K; ++kw) {
            int64_t ih = oh * s.stride - s.padding + kh, iw = ow * s.stride - s.padding + kw;
            if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
            T v = x[(p * s.H + ih) * s.W + iw];
            if (v > best || best_i < 0) best = v, best_i = static_cast<int32_t>(ih * s.W + iw);
          }
        y[(p * s.OH + oh) * s.OW + ow] = best;
        argmax[(p * s.OH + oh) * s.OW + ow] = best_i;
      }
}

template <typename T>
void max_pool2d_backward_reference(const int32_t* argmax, const T* dy, T* dx, const Pool2dShape& s) {
  for (int64_t p = 0; p < s.P; ++p)
    for (int64_t o = 0; o < s.OH * s.OW; ++o) dx[p * s.H * s.W + argmax[p * s.OH * s.OW + o]] += dy[p * s.OH * s.OW + o];
}

template <typename T>
void avg_pool2d_forward_reference(const T* x, T* y, const Pool2dShape& s) {
  const T inv = T(1) / static_cast<T>(s.K * s.K);
  for (int64_t p = 0; p < s.P; ++p)
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        T acc = 0;
        for (int64_t kh = 0; kh < s.K; ++kh)
          for (int64_t kw = 0; kw < s.K; ++kw) {
            int64_t ih = oh * s.stride - s.padding + kh, iw = ow * s.stride - s.padding + kw;
            if (ih >= 0 && ih < s.H && iw >= 0 && iw < s.W) acc += x[(p * s.H + ih) * s.W + iw];
          }
        y[(p * s.OH + oh) * s.OW + ow] = acc * inv;
      }
}

template <typename T>
void avg_pool2d_backward_reference(const T* dy, T* dx, const Pool2dShape& s) {
  const T inv = T(1) / static_cast<T>(s.K * s.K);
  for (int64_t p = 0; p < s.P; ++p)
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        const T g = dy[(p * s.OH + oh) * s.OW + ow] * inv;
        for (int64_t kh = 0; kh < s.K; ++kh)
          for (int64_t kw = 0; kw < s.K; ++kw) {
            int64_t ih = oh * s.stride - s.padding + kh, iw = ow * s.stride - s.padding + kw;
            if (ih >= 0 && ih < s.H && iw >= 0 && iw < s.W) dx[(p * s.H + ih) * s.W + iw] += g;
          }
      }
}

// x is (P, HW) planes, y is (P)
template <typename T>
void global_avg_pool2d_forward_reference(const T* x, T* y, int64_t P, int64_t HW) {
  for (int64_t p = 0; p < P; ++p) {
    T acc = 0;
    for (int64_t i = 0; i < HW; ++i) acc += x[p * HW + i];
    y[p] = acc / static_cast<T>(HW);
  }
}

template <typename T>
void global_avg_pool2d_backward_reference(const T* dy, T* dx, int64_t P, int64_t HW) {
  for (int64_t p = 0; p < P; ++p)
    for (int64_t i = 0; i < HW; ++i) dx[p * HW + i] += dy[p] / static_cast<T>(HW);
}

}  // namespace edl
