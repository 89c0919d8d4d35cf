// prefetch.h — ask for memory before it is needed, where the hardware prefetcher cannot guess.
//
// The hardware prefetcher follows streams of consecutive cache lines within a 4 KB page. Kernels
// that read many short pieces — a few rows of each channel plane, a channel after another, each
// plane its own page (32×32 floats is exactly 4 KB) — start every piece with a miss to memory
// and wait for it. They can say early, one piece ahead, what they will read next.
#pragma once

#include <cstdint>

namespace edl {

// Every cache line of p[0 .. n), into all cache levels; kWrite asks for them in a state that
// allows writing (for lines about to be written: the stores then do not wait for the lines to
// be read in first, read for ownership). A hint: it never faults, even past the end of an
// array, and changes no result.
template <int kWrite>
inline void prefetch_lines(const float* p, int64_t n) {
  constexpr int64_t kLineFloats = 16;  // 64-byte lines
  for (int64_t i = 0; i < n; i += kLineFloats) __builtin_prefetch(p + i, kWrite);
  if (n > 0) __builtin_prefetch(p + n - 1, kWrite);  // the last line, when p is not line-aligned
}
inline void prefetch_floats(const float* p, int64_t n) { prefetch_lines<0>(p, n); }
inline void prefetch_floats_for_write(float* p, int64_t n) { prefetch_lines<1>(p, n); }

}  // namespace edl
