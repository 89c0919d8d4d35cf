// denormal_bench.cpp — what flushing subnormal floats to zero buys (engine/threads.h).
//
// The mul op on 16384 floats (small enough to run on one thread) times 0.5, the floats either
// normal (1.0) or subnormal (1e-39, whose products are subnormal too), with flush-to-zero on,
// as edl sets it in every thread, and off, as in a program that never asked for it:
//   denormal/mul/normal                 the baseline
//   denormal/mul/subnormal              flushed: runs at the baseline's speed
//   denormal/mul/subnormal, no flush    what subnormals cost where they are computed in full
// Compare the three times. How much the last one costs depends on the core: Intel cores take a
// microcode assist per subnormal operation and run it many times slower; the AMD Zen 3 of the
// course machine multiplies subnormals in hardware and shows little difference here (a division
// with a subnormal operand still costs it 2-3x).
//
//   build/bench/edl_bench --benchmark_filter='^denormal/'
#include <benchmark/benchmark.h>

#include <algorithm>

#include "engine/ops.h"
#include "engine/threads.h"

using namespace edl;

namespace {

void denormal_mul(benchmark::State& state, float value, bool flush) {
  constexpr int64_t n = 16384;
  Tensor x = Tensor::empty({n});
  std::fill_n(x.data<float>(), n, value);
  const Tensor half = Tensor::scalar(0.5);
  init_threads_once();  // before turning the flush off: the first op call would turn it back on
  flush_denormals_in_this_thread(flush);
  for (auto _ : state) benchmark::DoNotOptimize(mul(x, half));
  flush_denormals_in_this_thread(true);
  state.SetItemsProcessed(state.iterations() * n);
}

BENCHMARK_CAPTURE(denormal_mul, normal, 1.0f, true)->Name("denormal/mul/normal");
BENCHMARK_CAPTURE(denormal_mul, subnormal, 1e-39f, true)->Name("denormal/mul/subnormal");
BENCHMARK_CAPTURE(denormal_mul, subnormal_no_flush, 1e-39f, false)->Name("denormal/mul/subnormal, no flush");

}  // namespace
