// layers_bench.cpp — the convolution layers of real CIFAR networks, at training batch size:
// what a variant buys where the time actually goes.
//
//   layers/conv2d.<variant>/<layer>/forward/threads:T    every conv2d variant of the registry
//   layers/conv2d.<variant>/<layer>/dx/threads:T         the backward pass, one gradient at a
//   layers/conv2d.<variant>/<layer>/dw/threads:T         time, through the variant's backward
//                                                        (or the reference's)
//   im2col/<impl>/<layer> M=.. K=.. N=../threads:T       the same layer as the GEMM im2col
//                                                        lowers it to, for every matmul variant
//                                                        and baseline library (gemm_bench.h)
//
// Layers: the distinct convolutions of ResNet-20 (He et al. 2016, CIFAR version: 3 stages of
// 16/32/64 channels, identity shortcuts padded with zeros, so no 1x1 convs) and of ResNet-18
// (CIFAR variant of github.com/kuangliu/pytorch-cifar: 3x3 stem, stages of 64..512 channels,
// 1x1 stride-2 convs on the shortcuts that change shape). Each is named as in PyTorch's
// state_dict ("layer2.0.conv1"); "layer2" stands for the other, identical convs of that stage.
// 3x3 convs have padding 1, 1x1 convs padding 0; no bias (batch norm follows); batch 128.
//
// im2col: the conv y = w * x becomes one matrix product W (OC, C·KH·KW) x col (C·KH·KW, N·OH·OW),
// so M = OC, K = C·KH·KW, N = batch·OH·OW. That entry times the product alone, without building
// the col matrix: the best a GEMM-based conv could do on that layer.
//
// FLOPs come from the op's flops() (2 per multiply-add), the same for dx and dw: the data
// gradient and the weight gradient are each a product as large as the forward. They are timed
// apart because dispatch chooses a variant for each of them (registry.h, Pass): on some layers
// one algorithm computes dx best and another dw.
//
// The reference conv2d is plain loops (a few GFLOP/s): at batch 128 one backward of a big
// ResNet-18 layer takes seconds. It therefore runs a single iteration (MinTime 0.1 s) and, on
// the ResNet-18 layers, only when EDL_BENCH_REFERENCE=all is set in the environment:
//   EDL_BENCH_REFERENCE=all build/bench/edl_bench --benchmark_filter='^layers/conv2d.reference'
//
//   build/bench/edl_bench --benchmark_filter='^layers/' --benchmark_min_time=0.05
//   EDL_BENCH_COLD=1 build/bench/edl_bench --benchmark_filter='^layers/.*resnet20'   (caches
//     flushed before every iteration, as training sees a layer: flush_caches_if_cold)
//   build/bench/edl_bench --benchmark_filter='^im2col/.*resnet20'
//
// Registered by a static initializer, as in peak_bench.cpp (ops_bench.cpp owns main()).
#include <cstdlib>
#include <cstring>

#include "bench/gemm_bench.h"

namespace edl::bench {
namespace {

constexpr int64_t kBatch = 128;

struct ConvLayer {
  const char* net;
  const char* module;  // PyTorch state_dict name of the module
  int64_t C, HW;       // input channels, input height = width
  int64_t OC, K;       // output channels, kernel height = width
  int64_t stride;      // padding is K/2: "same" for stride 1
};

const ConvLayer kLayers[] = {
    {"resnet20", "conv1", 3, 32, 16, 3, 1},
    {"resnet20", "layer1", 16, 32, 16, 3, 1},
    {"resnet20", "layer2.0.conv1", 16, 32, 32, 3, 2},
    {"resnet20", "layer2", 32, 16, 32, 3, 1},
    {"resnet20", "layer3.0.conv1", 32, 16, 64, 3, 2},
    {"resnet20", "layer3", 64, 8, 64, 3, 1},
    {"resnet18", "conv1", 3, 32, 64, 3, 1},
    {"resnet18", "layer1", 64, 32, 64, 3, 1},
    {"resnet18", "layer2.0.conv1", 64, 32, 128, 3, 2},
    {"resnet18", "layer2.0.shortcut.0", 64, 32, 128, 1, 2},
    {"resnet18", "layer2", 128, 16, 128, 3, 1},
    {"resnet18", "layer3.0.conv1", 128, 16, 256, 3, 2},
    {"resnet18", "layer3.0.shortcut.0", 128, 16, 256, 1, 2},
    {"resnet18", "layer3", 256, 8, 256, 3, 1},
    {"resnet18", "layer4.0.conv1", 256, 8, 512, 3, 2},
    {"resnet18", "layer4.0.shortcut.0", 256, 8, 512, 1, 2},
    {"resnet18", "layer4", 512, 4, 512, 3, 1},
    // models/fast_cifar.h (its 2x2 stem, 0.2% of the work, is left out); block3.conv1 has
    // block2.conv2's shape.
    {"fast_cifar", "block1.conv1", 24, 31, 64, 3, 1},
    {"fast_cifar", "block1.conv2", 64, 15, 64, 3, 1},
    {"fast_cifar", "block2.conv1", 64, 15, 256, 3, 1},
    {"fast_cifar", "block2.conv2", 256, 7, 256, 3, 1},
    {"fast_cifar", "block3.conv2", 256, 3, 256, 3, 1},
};

// "resnet18 layer2.0.shortcut.0 1x1 64->128 32x32 s2"
std::string label(const ConvLayer& l) {
  return fmt::format("{} {} {}{}->{} {}x{}{}", l.net, l.module, l.K == 1 ? "1x1 " : "", l.C, l.OC, l.HW, l.HW,
                     l.stride == 1 ? "" : fmt::format(" s{}", l.stride));
}

Sample conv_sample(const ConvLayer& l) {
  return Sample{label(l),
                {{{kBatch, l.C, l.HW, l.HW}}, {{l.OC, l.C, l.K, l.K}}},
                {{"stride", l.stride}, {"padding", l.K / 2}, {"groups", 1}},
                false};
}

bool reference_everywhere() {
  const char* v = std::getenv("EDL_BENCH_REFERENCE");
  return v && std::strcmp(v, "all") == 0;
}

// With EDL_BENCH_COLD set, every iteration starts with caches that hold none of its operands,
// as in training, where a layer's input was written by the ops before it and its backward
// reads activations saved long ago: a write over a buffer larger than the last-level cache,
// outside the timed region. Warm (the default) measures the kernel; cold, the kernel plus the
// memory traffic it cannot hide. bench/README.md compares the two with a training profile.
void flush_caches_if_cold(benchmark::State& st) {
  static const bool cold = std::getenv("EDL_BENCH_COLD") != nullptr;
  if (!cold) return;
  st.PauseTiming();
  static std::vector<float> junk(size_t{64} << 20, 1.0f);  // 256 MB
#pragma omp parallel for
  for (size_t i = 0; i < junk.size(); ++i) junk[i] += 1.0f;
  st.ResumeTiming();
}

// The label "dispatch" marks the variant edl::call chooses for the layer (the report stars it).
void conv_forward(benchmark::State& st, const OpDef* conv, const Variant* v, const Sample& s, int threads,
                  bool chosen) {
  ThreadScope scope(threads);
  if (chosen) st.SetLabel("dispatch");
  Tensors in = judge_inputs(v->judge, cached_inputs(s));
  NoGradGuard no_grad;
  for (auto _ : st) {
    flush_caches_if_cold(st);
    benchmark::DoNotOptimize(call(*conv, in, s.attrs, v->name));
  }
  st.counters["FLOP/s"] = benchmark::Counter(conv->flops(in, s.attrs), benchmark::Counter::kIsIterationInvariantRate);
}

// As in ops_bench.cpp: one forward outside the loop, then the variant's backward function
// (the reference's if it has none) through a BackwardCtx, asking for the gradient of one input
// (0: dx, 1: dw).
void conv_backward(benchmark::State& st, const OpDef* conv, const Variant* v, const Sample& s, int threads,
                   bool chosen, int input) {
  ThreadScope scope(threads);
  if (chosen) st.SetLabel("dispatch");
  Tensors in = judge_inputs(v->judge, cached_inputs(s));
  std::vector<bool> needs(in.size(), false);
  needs[static_cast<size_t>(input)] = true;
  Tensors saved;
  Shape out_shape = conv->shape(in, s.attrs);
  ForwardCtx fctx{in, s.attrs, out_shape, saved};
  Tensor y = v->forward(fctx);
  Tensor dy = Tensor::ones(y.shape(), y.dtype());
  const BackwardFn& bw = v->backward ? v->backward : conv->reference().backward;
  const Tensors none(in.size());  // no gradient held to add into
  for (auto _ : st) {
    flush_caches_if_cold(st);
    BackwardCtx bctx{in, s.attrs, y, saved, dy, needs, none};
    benchmark::DoNotOptimize(bw(bctx));
  }
  st.counters["FLOP/s"] = benchmark::Counter(conv->flops(in, s.attrs), benchmark::Counter::kIsIterationInvariantRate);
}

const bool registered = [] {
  const OpDef* conv = &op("conv2d");
  for (const ConvLayer& l : kLayers) {
    const Sample s = conv_sample(l);
    Tensors shapes_only;  // what dispatch looks at: shapes and dtypes
    for (const InputSpec& spec : s.inputs) shapes_only.push_back(Tensor::empty(spec.shape, spec.dtype));
    // The variant dispatch chooses for each pass: -1 the forward, 0 dx, 1 dw.
    auto chosen = [&](int pass) { return &choose_variant(*conv, shapes_only, s.attrs, Pass{pass}); };
    for (const Variant& v : conv->variants) {
      const bool reference = &v == &conv->reference();
      if (reference && std::strcmp(l.net, "resnet20") != 0 && !reference_everywhere()) continue;
      if (!variant_supports(v, s)) continue;
      for (int pass : {-1, 0, 1})
        for (int t : thread_counts()) {
          const char* dir = pass < 0 ? "forward" : pass == 0 ? "dx" : "dw";
          std::string name = fmt::format("layers/conv2d.{}/{}/{}/threads:{}", v.name, s.name, dir, t);
          benchmark::internal::Benchmark* b =
              pass < 0 ? benchmark::RegisterBenchmark(name.c_str(), conv_forward, conv, &v, s, t, &v == chosen(pass))
                       : benchmark::RegisterBenchmark(name.c_str(), conv_backward, conv, &v, s, t, &v == chosen(pass), pass);
          b->UseRealTime()->Unit(benchmark::kMillisecond);
          if (reference) b->MinTime(0.1);
        }
    }
  }
  for (const ConvLayer& l : kLayers) {
    const int64_t OH = (l.HW + 2 * (l.K / 2) - l.K) / l.stride + 1;
    const int64_t M = l.OC, K = l.C * l.K * l.K, N = kBatch * OH * OH;
    register_gemm("im2col", fmt::format("{} M={} K={} N={}", label(l), M, K, N), M, N, K);
  }
  return true;
}();

}  // namespace
}  // namespace edl::bench
