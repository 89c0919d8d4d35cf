// concat_copy.h — concatenation as block copies: each input's (len_i × inner) block of every
// outer index is one contiguous run in the input and in y, so the forward is a memcpy per
// block, in parallel over the blocks, and the backward copies (or adds) dy's blocks back.
//
// Shapes as in concat_reference.h: input i is (outer, len_i, inner), y (outer, sum len_i, inner).
// The reference copies element by element through an index product, on one thread; ResNet-20's
// option-A shortcut (zeros, x, zeros along the channels) spent 2 ms of a training step in it,
// forward and backward (edl train --profile), against 1 ms with this variant.
//
// Tested by: ctest -R 'op\.concat'     Benchmarked by: build/bench/edl_bench --benchmark_filter='^concat/'
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "engine/threads.h"

namespace edl {

// Calls f(o, i, at, total) for every block: input i at outer index o, at offset `at` of y's
// `total` along the concatenated dimension.
template <typename F>
void concat_for_blocks(const std::vector<int64_t>& lens, int64_t outer, int64_t inner, F f) {
  std::vector<int64_t> at(lens.size() + 1, 0);
  for (size_t i = 0; i < lens.size(); ++i) at[i + 1] = at[i] + lens[i];
  const int64_t blocks = outer * static_cast<int64_t>(lens.size());
#pragma omp parallel for schedule(static) if (outer * at.back() * inner >= kParallelMin)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t o = b / static_cast<int64_t>(lens.size());
    const size_t i = static_cast<size_t>(b % static_cast<int64_t>(lens.size()));
    f(o, i, at[i], at.back());
  }
}

template <typename T>
void concat_forward_copy(const std::vector<const T*>& xs, const std::vector<int64_t>& lens, T* y, int64_t outer,
                         int64_t inner) {
  concat_for_blocks(lens, outer, inner, [&](int64_t o, size_t i, int64_t at, int64_t total) {
    std::copy_n(xs[i] + o * lens[i] * inner, lens[i] * inner, y + (o * total + at) * inner);
  });
}

// dx_i = its slice of dy (written, =), or dx_i += it where add[i]; null dx_i are skipped.
template <typename T>
void concat_backward_copy(const T* dy, const std::vector<T*>& dxs, const std::vector<bool>& add,
                          const std::vector<int64_t>& lens, int64_t outer, int64_t inner) {
  concat_for_blocks(lens, outer, inner, [&](int64_t o, size_t i, int64_t at, int64_t total) {
    if (!dxs[i]) return;
    const T* src = dy + (o * total + at) * inner;
    T* dst = dxs[i] + o * lens[i] * inner;
    if (add[i])
      for (int64_t k = 0; k < lens[i] * inner; ++k) dst[k] += src[k];
    else
      std::copy_n(src, lens[i] * inner, dst);
  });
}

}  // namespace edl
