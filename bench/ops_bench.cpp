// ops_bench.cpp — one Google Benchmark entry per op x variant x sample, generated from the op
// list, so a new op or variant is benchmarked without a line here.
//
// Entry names are "<op>/<variant>/<sample>[/backward]"; the FLOP/s counter comes from the op's
// FLOP count (backward is counted as twice the forward, the usual convention for products).
//
//   build/bench/edl_bench --benchmark_filter='^conv2d/'          all conv2d variants
//   build/bench/edl_bench --benchmark_filter='resnet20'           the CIFAR layer shapes
#include <benchmark/benchmark.h>

#include "engine/autograd.h"
#include "engine/ops.h"

using namespace edl;

namespace {

void run_forward(benchmark::State& state, const OpDef* op, const Variant* v, const Sample* s) {
  Tensors in = make_inputs(*s, 1, DType::f32);
  if (v->supports && !v->supports(in, s->attrs)) {
    state.SkipWithError("variant does not support this sample");
    return;
  }
  NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(call(*op, in, s->attrs, v->name));
  state.counters["FLOP/s"] = benchmark::Counter(op->flops(in, s->attrs), benchmark::Counter::kIsIterationInvariantRate);
}

void run_backward(benchmark::State& state, const OpDef* op, const Variant* v, const Sample* s) {
  Tensors in = make_inputs(*s, 1, DType::f32);
  if (v->supports && !v->supports(in, s->attrs)) {
    state.SkipWithError("variant does not support this sample");
    return;
  }
  std::vector<bool> needs(in.size());
  for (size_t i = 0; i < in.size(); ++i) needs[i] = op->is_differentiable(i) && is_floating(in[i].dtype());
  Tensors saved;
  Shape out_shape = op->shape(in, s->attrs);
  ForwardCtx fctx{in, s->attrs, out_shape, saved};
  Tensor y = v->forward(fctx);
  Tensor dy = Tensor::ones(y.shape(), y.dtype());
  const BackwardFn& bw = v->backward ? v->backward : op->reference().backward;
  const Tensors none(in.size());  // no gradient held to add into
  for (auto _ : state) {
    BackwardCtx bctx{in, s->attrs, y, saved, dy, needs, none};
    benchmark::DoNotOptimize(bw(bctx));
  }
  state.counters["FLOP/s"] =
      benchmark::Counter(2 * op->flops(in, s->attrs), benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

int main(int argc, char** argv) {
  // The registry outlives main's benchmarks, so pointers into it stay valid.
  static std::vector<std::vector<Sample>> samples;
  for (const OpDef& op : all_ops()) samples.push_back(op.samples());
  for (size_t k = 0; k < all_ops().size(); ++k) {
    const OpDef& op = all_ops()[k];
    for (const Variant& v : op.variants)
      for (const Sample& s : samples[k]) {
        std::string name = op.name + "/" + v.name + "/" + s.name;
        // Real (wall-clock) time: kernels run OpenMP threads, whose work the main thread's CPU
        // time would not count.
        benchmark::RegisterBenchmark(name.c_str(), run_forward, &op, &v, &s)->UseRealTime();
        benchmark::RegisterBenchmark((name + "/backward").c_str(), run_backward, &op, &v, &s)->UseRealTime();
      }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
