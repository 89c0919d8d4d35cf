// concat_reference.h — concatenation along one dimension, and its backward (a split).
//
// Each input i is viewed as (outer, len_i, inner) and y as (outer, sum len_i, inner), where
// outer is the product of the dimensions before the concatenated one and inner of those after.
// For channels of NCHW tensors: outer = N, len_i = C_i, inner = H*W.
// Backward hands each input its slice of dy (accumulated, +=, into dx_i).
//
// Tested by: ctest -R 'op\.concat'     Benchmarked by: build/bench/edl_bench --benchmark_filter='^concat/'
#pragma once

#include <cstdint>
#include <vector>

namespace edl {

template <typename T>
void concat_forward_reference(const std::vector<const T*>& xs, const std::vector<int64_t>& lens, T* y, int64_t outer,
                              int64_t inner) {
  int64_t total = 0;
  for (int64_t len : lens) total += len;
  for (int64_t o = 0; o < outer; ++o) {
    int64_t at = 0;
    for (size_t i = 0; i < xs.size(); ++i) {
      for (int64_t k = 0; k < lens[i] * inner; ++k) y[(o * total + at) * inner + k] = xs[i][o * lens[i] * inner + k];
      at += lens[i];
    }
  }
}

template <typename T>
void concat_backward_reference(const T* dy, const std::vector<T*>& dxs, const std::vector<int64_t>& lens, int64_t outer,
                               int64_t inner) {
  int64_t total = 0;
  for (int64_t len : lens) total += len;
  for (int64_t o = 0; o < outer; ++o) {
    int64_t at = 0;
    for (size_t i = 0; i < dxs.size(); ++i) {
      if (dxs[i])
        for (int64_t k = 0; k < lens[i] * inner; ++k) dxs[i][o * lens[i] * inner + k] += dy[(o * total + at) * inner + k];
      at += lens[i];
    }
  }
}

}  // namespace edl
