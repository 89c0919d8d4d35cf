// dropout_reference.h — inverted dropout (Srivastava et al. 2014) with a stateless mask.
//
// x, y, dx, dy are n elements. In training each element is kept with probability 1 - p and
// scaled by 1 / (1 - p), so that the expected output equals x and evaluation needs no
// rescaling:  y[i] = keep(seed, i) ? x[i] / (1 - p) : 0.   Backward: dx[i] += the same factor * dy[i].
// The mask is a pure function of (seed, i) — a hash, not a stream of random numbers — so
// backward recomputes it instead of storing it, and a run is reproducible from its seed.
//
// Tested by: ctest -R 'op\.dropout'     Benchmarked by: build/bench/edl_bench --benchmark_filter='^dropout/'
#pragma once

#include <cstdint>

#include "engine/random.h"

namespace edl {

inline bool dropout_keep(uint64_t seed, int64_t i, double p) {
  uint64_t bits = splitmix64(seed ^ splitmix64(static_cast<uint64_t>(i)));
  return static_cast<double>(bits >> 11) * 0x1.0p-53 >= p;
}

template <typename T>
void dropout_forward_reference(const T* x, T* y, int64_t n, double p, uint64_t seed) {
  const T scale = static_cast<T>(1.0 / (1.0 - p));
  for (int64_t i = 0; i < n; ++i) y[i] = dropout_keep(seed, i, p) ? x[i] * scale : T(0);
}

template <typename T>
void dropout_backward_reference(const T* dy, T* dx, int64_t n, double p, uint64_t seed) {
  const T scale = static_cast<T>(1.0 / (1.0 - p));
  for (int64_t i = 0; i < n; ++i)
    if (dropout_keep(seed, i, p)) dx[i] += dy[i] * scale;
}

}  // namespace edl
