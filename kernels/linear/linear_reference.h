// linear_reference.h — the fully connected layer y = x·wᵀ + b, as plain loops.
//
// x is (N,IN), w is (OUT,IN) (PyTorch's layout), b is (OUT) or null, y is (N,OUT).
//   y[n][o] = b[o] + sum_i x[n][i] * w[o][i]
// Backward:
//   dx[n][i] = sum_o dy[n][o] * w[o][i]        (dx = dy · w)
//   dw[o][i] = sum_n dy[n][o] * x[n][i]        (dw = dyᵀ · x)
//   db[o]    = sum_n dy[n][o]
// The backward kernel accumulates (+=); null outputs are skipped.
//
// Tested by: ctest -R 'op\.linear'     Benchmarked by: build/bench/edl_bench --benchmark_filter='^linear/'
#pragma once

#include <cstdint>

namespace edl {

template <typename T>
void linear_forward_reference(const T* x, const T* w, const T* b, T* y, int64_t N, int64_t IN, int64_t OUT) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < OUT; ++o) {
      T acc = b ? b[o] : T(0);
      for (int64_t i = 0; i < IN; ++i) acc += x[n * IN + i] * w[o * IN + i];
      y[n * OUT + o] = acc;
    }
}

template <typename T>
void linear_backward_reference(const T* x, const T* w, const T* dy, T* dx, T* dw, T* db, int64_t N, int64_t IN,
                               int64_t OUT) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < OUT; ++o) {
      T g = dy[n * OUT + o];
      if (db) db[o] += g;
      for (int64_t i = 0; i < IN; ++i) {
        if (dx) dx[n * IN + i] += g * w[o * IN + i];
        if (dw) dw[o * IN + i] += g * x[n * IN + i];
      }
    }
}

}  // namespace edl
