// peak_bench.cpp — the ceiling: how many multiply-adds per second can this machine do at all,
// and how close do SGEMM libraries get to it on square matrices?
//
//   peak/fma/threads:T           register-only chains of fused multiply-adds (FMA) on
//                                xsimd::batch<float>: no memory traffic, nothing but arithmetic.
//                                T = 1 and all threads (one chain per thread, total reported).
//   peak/ukernel/threads:T       the GEMM's micro-kernel (gemm_ukernel.h) alone, over packed
//                                panels of A and B that stay in L1: what the GEMM could reach if
//                                packing, blocking and memory cost nothing. Between the two
//                                lies the price of feeding the FMAs from memory (the loads and
//                                broadcasts of A and B), a property of the tile and the core.
//   gemm/<impl>/<n>^3/threads:T  square SGEMM, n = 256, 512, 1024, 2048, for every matmul
//                                variant of the registry and every baseline library
//                                (Eigen; OpenBLAS and oneDNN when found): see gemm_bench.h.
//
// Why several accumulators. An FMA's result is ready only ~4 cycles after it starts (latency),
// but a core starts up to 2 new ones every cycle (two FMA units: throughput). One chain
// acc = acc*m + a waits on itself: 1 FMA per 4 cycles, 1/8 of the peak. With A independent
// chains in flight the units stay busy once A >= latency x units (4 x 2 = 8 on AMD Zen 3 and
// Intel Skylake; 4 x 4 = 16 on Apple M1). We use 12 (16 vector registers on x86 with AVX2:
// 12 accumulators + constants fit without spilling) or 16 where there are 32 registers
// (AArch64, AVX-512). Fewer accumulators measure the latency, not the peak: try kAcc = 1.
//
// FLOPs: an FMA on a vector of L lanes is 2·L FLOPs (a multiply and an add per lane), so one
// call is 2 · L · kAcc · kSteps FLOPs. The peak is that of the instruction set this build
// targets: in the native build (-march=native) the widest the build machine has (AVX2+FMA on a
// recent x86, AVX-512 where it has it), SSE2 (no FMA: a multiply and an add) in the portable
// one, NEON on AArch64.
//
//   build/bench/edl_bench --benchmark_filter='^peak/'
//   build/bench/edl_bench --benchmark_filter='^gemm/' --benchmark_min_time=0.05
//
// The entries are registered by a static initializer because ops_bench.cpp owns main(). The
// registry is built on first use (function-local statics), so reading it here is safe.
#include <xsimd/xsimd.hpp>

#include "bench/gemm_bench.h"
#include "kernels/common/gemm_ukernel.h"

#ifdef EDL_HAVE_DNNL
#include <oneapi/dnnl/dnnl_version.h>
#endif

namespace edl::bench {
namespace {

using Batch = xsimd::batch<float>;
constexpr int kLanes = static_cast<int>(Batch::size);
#if defined(__aarch64__) || defined(__AVX512F__)
constexpr int kAcc = 16;  // 32 vector registers
#else
constexpr int kAcc = 12;  // 16 vector registers
#endif
constexpr int64_t kSteps = int64_t{1} << 16;  // ~0.1 ms per call
// Calls per thread per parallel region: ~2 ms of work, so starting and joining the threads is
// noise, and a thread the OS pauses for a moment (a shared machine) costs a fraction, not all.
constexpr int kCalls = 16;

// kSteps rounds of kAcc independent FMAs, all in registers. acc -> acc*m + a converges to 1,
// so nothing overflows or goes denormal (denormals are slow on some CPUs). The sum is returned
// so the compiler cannot drop the work; `start` comes from outside so it cannot precompute it.
float fma_chains(float start) {
  Batch acc[kAcc];
  for (int k = 0; k < kAcc; ++k) acc[k] = Batch(start + 0.01f * static_cast<float>(k));
  const Batch m(0.999f), a(0.001f);
  for (int64_t s = 0; s < kSteps; ++s)
    for (int k = 0; k < kAcc; ++k) acc[k] = xsimd::fma(acc[k], m, a);
  Batch sum = acc[0];
  for (int k = 1; k < kAcc; ++k) sum += acc[k];
  return xsimd::hadd(sum);
}

void peak_fma(benchmark::State& st, int threads) {
  ThreadScope scope(threads);
  float start = 1.0f;
  benchmark::DoNotOptimize(start);
  for (auto _ : st) {
    float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    for (int c = 0; c < kCalls; ++c) total += fma_chains(start + static_cast<float>(c));
    benchmark::DoNotOptimize(total);
  }
  const double flops = 2.0 * kLanes * kAcc * static_cast<double>(kSteps) * kCalls * threads;
  st.counters["FLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}

// kUkCalls calls of the micro-kernel per thread on its own packed panels (kc = 256: A is
// MR·256 floats, B 256·NR, 40 KB with AVX-512's 8×32 tile, inside a 48 KB L1), each adding into
// the same C tile (in L1 too).
constexpr int64_t kUkDepth = 256;
constexpr int kUkCalls = 256;

void peak_ukernel(benchmark::State& st, int threads) {
  ThreadScope scope(threads);
  for (auto _ : st) {
#pragma omp parallel num_threads(threads)
    {
      alignas(64) static thread_local float a[kGemmMR * kUkDepth], b[kUkDepth * kGemmNR], c[kGemmMR * kGemmNR];
      static thread_local bool filled = [] {  // small values: the sums stay finite and normal
        for (float& v : a) v = 0.001f;
        for (float& v : b) v = 0.002f;
        for (float& v : c) v = 0.0f;
        return true;
      }();
      benchmark::DoNotOptimize(filled);
      for (int call = 0; call < kUkCalls; ++call) gemm_ukernel_f32(kUkDepth, a, b, c, kGemmNR, true);
      benchmark::DoNotOptimize(c[0]);
    }
  }
  const double flops = 2.0 * kGemmMR * kGemmNR * kUkDepth * kUkCalls * threads;
  st.counters["FLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}

// What the report prints under "machine": the SIMD the peak was measured with, the libraries.
void add_context() {
  benchmark::AddCustomContext("edl_simd", fmt::format("{} ({} float lanes, {} accumulators)",
                                                      xsimd::default_arch::name(), kLanes, kAcc));
  benchmark::AddCustomContext("edl_threads", std::to_string(all_threads()));
  benchmark::AddCustomContext("edl_compiler", __VERSION__);
  std::string libs = fmt::format("Eigen {}.{}.{}", EIGEN_WORLD_VERSION, EIGEN_MAJOR_VERSION, EIGEN_MINOR_VERSION);
#ifdef EDL_HAVE_OPENBLAS
  libs += fmt::format("; OpenBLAS ({})", openblas_get_config());
#else
  libs += "; OpenBLAS not found at build time";
#endif
#ifdef EDL_HAVE_DNNL
  const dnnl_version_t* v = dnnl_version();
  const char* runtime = v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : v->cpu_runtime == DNNL_RUNTIME_TBB ? "TBB" : "other";
  libs += fmt::format("; oneDNN {}.{}.{} ({} threads)", v->major, v->minor, v->patch, runtime);
#else
  libs += "; oneDNN not found at build time";
#endif
  benchmark::AddCustomContext("edl_baselines", libs);
}

const bool registered = [] {
  add_context();
  for (int t : thread_counts())
    benchmark::RegisterBenchmark(("peak/fma/threads:" + std::to_string(t)).c_str(), peak_fma, t)->UseRealTime();
  for (int t : thread_counts())
    benchmark::RegisterBenchmark(("peak/ukernel/threads:" + std::to_string(t)).c_str(), peak_ukernel, t)->UseRealTime();
  for (int64_t n : {256, 512, 1024, 2048}) register_gemm("gemm", std::to_string(n) + "^3", n, n, n);
  return true;
}();

}  // namespace
}  // namespace edl::bench
