// gemm_bench.h — what peak_bench.cpp and layers_bench.cpp share: the thread counts every entry
// runs at, the baseline libraries edl is compared against, and the GEMM entries themselves.
//
// A GEMM entry "<group>/<impl>/<shape>/threads:<T>" multiplies a (M,K) by b (K,N) into (M,N):
//   impl = matmul.<variant>   every variant of the registry's matmul op (edl's own kernels and
//                             whatever was registered since: nothing here names them), called
//                             through edl::call, which allocates the output on each call;
//   impl = Eigen | OpenBLAS | oneDNN
//                             the libraries, called directly into a preallocated output.
//                             OpenBLAS and oneDNN are optional: CMake defines EDL_HAVE_OPENBLAS
//                             and EDL_HAVE_DNNL when it finds them (bench/CMakeLists.txt).
// Threads: OpenMP's thread count is a process-wide setting, so Google Benchmark's ->Threads()
// (which runs the loop body on T threads) is the wrong tool; each entry instead sets the thread
// count of OpenMP (edl, Eigen, oneDNN) and OpenBLAS for its run and restores it afterwards.
// Times are wall-clock (UseRealTime): CPU time of the main thread means little for parallel code.
#pragma once

#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "kernels/matmul/matmul_eigen.h"

#ifdef EDL_HAVE_OPENBLAS
#include <cblas.h>  // OpenBLAS's own cblas.h: it declares openblas_set_num_threads too
#endif
#ifdef EDL_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

namespace edl::bench {

// The thread count of "all threads": OpenMP's default (one per core, or OMP_NUM_THREADS),
// read once at startup, before any entry changes it.
inline int all_threads() {
  static const int n = omp_get_max_threads();
  return n;
}

// Every entry is registered at 1 thread and at all threads.
inline std::vector<int> thread_counts() {
  if (all_threads() > 1) return {1, all_threads()};
  return {1};
}

inline void set_threads(int n) {
  omp_set_num_threads(n);
#ifdef EDL_HAVE_OPENBLAS
  openblas_set_num_threads(n);  // OpenBLAS (pthreads build) keeps its own pool, deaf to OpenMP
#endif
}

// edl::call sets the thread count itself the first time an op runs (and flushes subnormals in
// every thread). One tiny op call gets that done before an entry picks its own count, so the
// first entry to run an op does not run with all threads under a "threads:1" name.
inline void let_edl_configure_threads() {
  static const bool done = [] {
    NoGradGuard no_grad;
    call(op("matmul"), {Tensor::zeros({1, 1}), Tensor::zeros({1, 1})});
    return true;
  }();
  (void)done;
}

// Sets the thread count for one entry; puts the default back after it, so the per-op entries
// of ops_bench.cpp, which run later in the same process, see what they would alone.
class ThreadScope {
 public:
  explicit ThreadScope(int n) {
    let_edl_configure_threads();
    set_threads(n);
  }
  ~ThreadScope() { set_threads(all_threads()); }
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;
};

// ---- baseline libraries -----------------------------------------------------------------------

// y (M,N) = a (M,K) · b (K,N), all row-major and contiguous.
using SgemmFn = void (*)(const float* a, const float* b, float* y, int64_t M, int64_t N, int64_t K);

struct Baseline {
  const char* name;
  SgemmFn sgemm;
};

inline void sgemm_eigen(const float* a, const float* b, float* y, int64_t M, int64_t N, int64_t K) {
  matmul_forward_eigen(a, b, y, M, N, K);
}

#ifdef EDL_HAVE_OPENBLAS
inline void sgemm_openblas(const float* a, const float* b, float* y, int64_t M, int64_t N, int64_t K) {
  auto i = [](int64_t v) { return static_cast<blasint>(v); };
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, i(M), i(N), i(K), 1.0f, a, i(K), b, i(N), 0.0f, y, i(N));
}
#endif

#ifdef EDL_HAVE_DNNL
inline void sgemm_onednn(const float* a, const float* b, float* y, int64_t M, int64_t N, int64_t K) {
  // dnnl_sgemm is row-major (unlike the Fortran BLAS convention).
  dnnl_status_t status = dnnl_sgemm('N', 'N', M, N, K, 1.0f, a, K, b, N, 0.0f, y, N);
  if (status != dnnl_success) throw Error(fmt::format("dnnl_sgemm failed with status {}", static_cast<int>(status)));
}
#endif

inline const std::vector<Baseline>& baselines() {
  static const std::vector<Baseline> list = {
      {"Eigen", sgemm_eigen},
#ifdef EDL_HAVE_OPENBLAS
      {"OpenBLAS", sgemm_openblas},
#endif
#ifdef EDL_HAVE_DNNL
      {"oneDNN", sgemm_onednn},
#endif
  };
  return list;
}

// ---- inputs -----------------------------------------------------------------------------------

// The inputs of the last sample asked for, kept between calls: Google Benchmark calls an entry
// several times while it picks an iteration count, entries of the same shape follow each other,
// and filling a 300 MB operand with normal numbers takes longer than multiplying it.
inline const Tensors& cached_inputs(const Sample& s) {
  static std::string key;
  static Tensors value;
  std::string k = s.name;
  for (const InputSpec& spec : s.inputs) {
    k += ' ';
    k += shape_str(spec.shape);
  }
  if (k != key) {
    value.clear();  // free the old operands before making the new ones
    value = make_inputs(s, 1, DType::f32);
    key = k;
  }
  return value;
}

// Does the variant accept these input shapes? Asked on unfilled tensors (allocation without
// touching the pages costs nothing), so refused combinations are never registered.
inline bool variant_supports(const Variant& v, const Sample& s) {
  if (!v.supports) return true;
  Tensors in;
  for (const InputSpec& spec : s.inputs) in.push_back(Tensor::empty(spec.shape, spec.dtype));
  return v.supports(in, s.attrs);
}

// ---- GEMM entries -----------------------------------------------------------------------------

// Registers "<group>/<impl>/<label>/threads:<T>" for every matmul variant and every baseline.
// The reference (three plain loops) is the slow one: it gets a short minimum time, which for
// the big shapes means a single iteration.
inline void register_gemm(const std::string& group, const std::string& label, int64_t M, int64_t N, int64_t K) {
  const OpDef& matmul = op("matmul");
  const Sample sample{label, {{{M, K}}, {{K, N}}}, {}, false};
  const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);

  for (const Variant& v : matmul.variants) {
    if (!variant_supports(v, sample)) continue;
    for (int t : thread_counts()) {
      std::string name = group + "/matmul." + v.name + "/" + label + "/threads:" + std::to_string(t);
      const Variant* vp = &v;
      auto* b = benchmark::RegisterBenchmark(name.c_str(), [&matmul, vp, sample, t](benchmark::State& st) {
        ThreadScope threads(t);
        Tensors in = judge_inputs(vp->judge, cached_inputs(sample));
        NoGradGuard no_grad;
        for (auto _ : st) benchmark::DoNotOptimize(call(matmul, in, sample.attrs, vp->name));
        st.counters["FLOP/s"] = benchmark::Counter(matmul.flops(in, sample.attrs), benchmark::Counter::kIsIterationInvariantRate);
      });
      b->UseRealTime()->Unit(benchmark::kMillisecond);
      if (&v == &matmul.reference()) b->MinTime(0.1);
    }
  }

  for (const Baseline& lib : baselines())
    for (int t : thread_counts()) {
      std::string name = group + "/" + lib.name + "/" + label + "/threads:" + std::to_string(t);
      SgemmFn fn = lib.sgemm;
      benchmark::RegisterBenchmark(name.c_str(), [fn, sample, flops, M, N, K, t](benchmark::State& st) {
        ThreadScope threads(t);
        const Tensors& in = cached_inputs(sample);
        Tensor y = Tensor::empty({M, N});
        for (auto _ : st) {
          fn(in[0].data<float>(), in[1].data<float>(), y.data<float>(), M, N, K);
          benchmark::ClobberMemory();
        }
        st.counters["FLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
      })->UseRealTime()->Unit(benchmark::kMillisecond);
    }
}

}  // namespace edl::bench
