// test_threads.cpp — engine/threads.h: the thread count follows set_num_threads, every thread
// that computes flushes subnormal floats to zero, and the vectorized kernels give the same
// result whatever the thread count.
//
// Run: build/tests/edl_tests '[threads]'
#include <catch2/catch.hpp>

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/ops.h"
#include "engine/threads.h"

using namespace edl;

namespace {

// Compared as bits: with denormals-are-zero on, a subnormal float compares equal to 0.0f, so a
// value comparison could not tell a flushed result from a subnormal one.
constexpr bool is_subnormal(float v) {
  const uint32_t bits = std::bit_cast<uint32_t>(v);
  return (bits & 0x7f800000u) == 0 && (bits & 0x007fffffu) != 0;
}
constexpr bool is_zero(float v) { return (std::bit_cast<uint32_t>(v) & 0x7fffffffu) == 0; }  // +0 or -0

constexpr float kSubnormal = 1e-39f;  // below FLT_MIN = 1.18e-38
static_assert(is_subnormal(kSubnormal));

// n copies of v, written as bits (no arithmetic that a flushing thread could change).
Tensor filled(int64_t n, float v) {
  Tensor t = Tensor::empty({n});
  std::fill_n(t.data<float>(), n, v);
  return t;
}

int64_t count_nonzero(const Tensor& t) {
  const float* p = t.data<float>();
  return std::count_if(p, p + t.numel(), [](float v) { return !is_zero(v); });
}

// Sets the thread count for one scope and puts back the default (OMP_NUM_THREADS or all cores).
struct ThreadCount {
  explicit ThreadCount(int n) { set_num_threads(n); }
  ~ThreadCount() { set_num_threads(0); }
};

}  // namespace

TEST_CASE("threads: the thread count follows set_num_threads and OMP_NUM_THREADS", "[threads]") {
  for (int n : {1, 3, 2}) {
    ThreadCount scope(n);
    CHECK(num_threads() == n);
    int team = 0;
#pragma omp parallel
#pragma omp single
    team = omp_get_num_threads();
    CHECK(team == n);
  }
  const char* saved = std::getenv("OMP_NUM_THREADS");
  const std::string previous = saved ? saved : "";
  setenv("OMP_NUM_THREADS", "3", 1);
  set_num_threads(0);
  CHECK(num_threads() == 3);
  unsetenv("OMP_NUM_THREADS");
  set_num_threads(0);
  CHECK(num_threads() == omp_get_num_procs());
  if (saved) setenv("OMP_NUM_THREADS", previous.c_str(), 1);
  set_num_threads(0);
}

#if defined(__SSE__) || defined(__x86_64__) || defined(__aarch64__)

TEST_CASE("threads: after any op, every OpenMP thread flushes subnormals to zero", "[threads]") {
  relu(Tensor::zeros({1}));  // the first op sets the threads up
  CHECK(denormals_flushed_in_this_thread());
  ThreadCount scope(3);  // more threads than the machine may have cores: each must be set
  int flushed = 0;
#pragma omp parallel reduction(+ : flushed)
  flushed += denormals_flushed_in_this_thread() ? 1 : 0;
  CHECK(flushed == 3);
}

TEST_CASE("threads: subnormal inputs give exactly 0 through mul and relu, in every variant", "[threads]") {
  relu(Tensor::zeros({1}));
  ThreadCount scope(2);
  // 1 and 17 values run on the calling thread; 100003 values (above kParallelMin) are split
  // across both threads, so each thread's mode is exercised.
  for (int64_t n : {int64_t{1}, int64_t{17}, int64_t{100003}}) {
    const Tensor x = filled(n, kSubnormal), half = Tensor::scalar(0.5);
    REQUIRE(is_subnormal(x.data<float>()[n - 1]));
    for (const Variant& v : op("mul").variants) {
      if (v.supports && !v.supports({x, half}, {})) continue;
      INFO("mul, variant " << v.name << ", " << n << " values of 1e-39 times 0.5");
      CHECK(count_nonzero(call(op("mul"), {x, half}, {}, v.name)) == 0);
    }
    for (const Variant& v : op("relu").variants) {
      INFO("relu, variant " << v.name << ", " << n << " values of 1e-39");
      CHECK(count_nonzero(call(op("relu"), {x}, {}, v.name)) == 0);
    }
  }
}

#else

TEST_CASE("threads: no flush-to-zero switch on this architecture", "[threads]") {
  CHECK_FALSE(denormals_flushed_in_this_thread());  // subnormals stay: exact, and slower
}

#endif

// The vectorized kernels split work by planes, channels, rows or fixed blocks, never by thread,
// and add partial sums in a fixed order: forward and backward are bit-identical with 1 and 3
// threads on the CIFAR-sized samples (which are large enough to run in parallel).
TEST_CASE("threads: results do not depend on the thread count", "[threads]") {
  for (const char* name : {"add", "mul", "relu", "sigmoid", "batch_norm2d", "max_pool2d", "avg_pool2d",
                           "global_avg_pool2d", "sum", "mean", "softmax", "log_softmax"}) {
    const OpDef& o = op(name);
    for (const Sample& sample : o.samples()) {
      if (sample.gradcheck) continue;  // the small samples run on one thread anyway
      auto run = [&](int threads) {
        ThreadCount scope(threads);
        Tensors in = make_inputs(sample, 11);  // fresh: batch_norm2d updates its running stats
        for (size_t i = 0; i < in.size(); ++i)
          if (o.is_differentiable(i) && is_floating(in[i].dtype())) in[i].set_requires_grad(true);
        Tensor y = call(o, in, sample.attrs);
        y.backward(make_inputs(Sample{"dy", {{y.shape()}}, {}, false}, 12)[0]);
        std::vector<std::vector<double>> out{y.to_vector()};
        for (const Tensor& t : in)
          if (t.requires_grad()) out.push_back(t.grad().to_vector());
        return out;
      };
      INFO(name << " [" << sample.name << "]");
      CHECK(run(1) == run(3));
    }
  }
}
