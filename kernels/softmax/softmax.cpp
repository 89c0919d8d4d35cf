// softmax.cpp — op definitions of softmax, log_softmax (over the last dimension) and
// cross_entropy (logits (N,K) with labels (N, s32) or probabilities (N,K); attribute
// label_smoothing (0); the batch-mean loss, a scalar).
// Variants: reference; softmax and log_softmax also simd (f32, kernels/softmax/softmax_simd.h).
// cross_entropy has only the reference: its cost is one log_softmax of the logits, small next
// to the network that produced them.
#include "kernels/common/op_util.h"
#include "kernels/softmax/softmax_reference.h"
#include "kernels/softmax/softmax_simd.h"

namespace edl {

static std::vector<Sample> softmax_samples() {
  auto s = [](std::string name, Shape x, bool grad = true) { return Sample{std::move(name), {{x}}, {}, grad}; };
  // rows of 7, 8, 9, 17 and 37 values straddle the register widths (4 and 8 floats)
  return {s("4x10", {4, 10}),        s("one class", {3, 1}),   s("3-d 2x3x5", {2, 3, 5}),
          s("rows of 7", {3, 7}),    s("rows of 8", {2, 8}),   s("rows of 9", {2, 9}),
          s("rows of 17", {2, 17}),  s("rows of 37", {2, 37}), s("cifar100 128x100", {128, 100}, false)};
}

static OpDef make_softmax_like(const char* name, const char* summary, bool log) {
  OpDef op;
  op.name = name;
  op.summary = summary;
  op.shape = [name = op.name](const Tensors& in, const Attrs&) {
    expect_floating(name, "x", in[0]);
    EDL_CHECK(in[0].ndim() >= 1, "{}: x must have at least one dimension, got a scalar", name);
    return in[0].shape();
  };
  op.flops = [](const Tensors& in, const Attrs&) { return 4.0 * static_cast<double>(in[0].numel()); };
  op.samples = softmax_samples;
  Variant ref;
  ref.name = "reference";
  ref.forward = [log, name = op.name](ForwardCtx& c) {
    const Tensor& x = c.inputs[0];
    const int64_t K = x.dim(-1), R = x.numel() / std::max<int64_t>(K, 1);
    Tensor y = Tensor::empty(c.out_shape, x.dtype());
    with_floating(x.dtype(), name.c_str(), [&](auto t) {
      using T = decltype(t);
      if (log) log_softmax_forward_reference(x.data<T>(), y.data<T>(), R, K);
      else softmax_forward_reference(x.data<T>(), y.data<T>(), R, K);
    });
    return y;
  };
  ref.backward = [log, name = op.name](BackwardCtx& c) {
    const int64_t K = c.y.dim(-1), R = c.y.numel() / std::max<int64_t>(K, 1);
    Tensor dx = Tensor::zeros(c.y.shape(), c.y.dtype());
    with_floating(dx.dtype(), name.c_str(), [&](auto t) {
      using T = decltype(t);
      if (log) log_softmax_backward_reference(c.y.data<T>(), c.dy.data<T>(), dx.data<T>(), R, K);
      else softmax_backward_reference(c.y.data<T>(), c.dy.data<T>(), dx.data<T>(), R, K);
    });
    return Tensors{dx};
  };
  Variant simd;  // the default `supports` (f32) fits
  simd.name = "simd";
  simd.forward = [log](ForwardCtx& c) {
    const Tensor& x = c.inputs[0];
    const int64_t K = x.dim(-1), R = x.numel() / std::max<int64_t>(K, 1);
    Tensor y = Tensor::empty(c.out_shape);
    if (log) log_softmax_forward_simd(x.data<float>(), y.data<float>(), R, K);
    else softmax_forward_simd(x.data<float>(), y.data<float>(), R, K);
    return y;
  };
  simd.backward = [log](BackwardCtx& c) {
    const int64_t K = c.y.dim(-1), R = c.y.numel() / std::max<int64_t>(K, 1);
    Tensor dx = Tensor::zeros(c.y.shape());
    if (log) log_softmax_backward_simd(c.y.data<float>(), c.dy.data<float>(), dx.data<float>(), R, K);
    else softmax_backward_simd(c.y.data<float>(), c.dy.data<float>(), dx.data<float>(), R, K);
    return Tensors{dx};
  };
  op.variants = {ref, simd};
  return op;
}

OpDef make_softmax() { return make_softmax_like("softmax", "exp(x) / sum exp(x) over the last dimension", false); }
OpDef make_log_softmax() { return make_softmax_like("log_softmax", "x - log sum exp(x) over the last dimension", true); }

OpDef make_cross_entropy() {
  OpDef op;
  op.name = "cross_entropy";
  op.summary = "mean cross-entropy of logits against labels or probabilities, with label smoothing";
  op.min_inputs = op.max_inputs = 2;
  op.shape = [](const Tensors& in, const Attrs& a) {
    const Tensor &x = in[0], &t = in[1];
    expect_floating("cross_entropy", "logits", x);
    expect_ndim("cross_entropy", "logits", x, 2, "(N,K)");
    if (t.dtype() == DType::s32) {
      expect_shape("cross_entropy", "labels", t, {x.dim(0)});
    } else {
      EDL_CHECK(t.dtype() == x.dtype(), "cross_entropy: target must be s32 labels (N) or {} probabilities (N,K), got {}",
                dtype_name(x.dtype()), dtype_name(t.dtype()));
      expect_shape("cross_entropy", "target probabilities", t, x.shape());
    }
    double e = a.f("label_smoothing", 0.0);
    EDL_CHECK(e >= 0 && e <= 1, "cross_entropy: label_smoothing must be in [0, 1], got {}", e);
    EDL_CHECK(x.dim(0) > 0, "cross_entropy: empty batch");
    return Shape{};
  };
  op.flops = [](const Tensors& in, const Attrs&) { return 6.0 * static_cast<double>(in[0].numel()); };
  op.samples = [] {
    auto labels = [](std::string name, int64_t N, int64_t K, double e, bool grad = true) {
      return Sample{std::move(name), {{{N, K}}, {{N}, DType::s32, Fill::labels, K}}, {{"label_smoothing", e}}, grad};
    };
    auto soft = [](std::string name, int64_t N, int64_t K, double e) {
      return Sample{std::move(name), {{{N, K}}, {{N, K}, DType::f32, Fill::probs}}, {{"label_smoothing", e}}, true};
    };
    return std::vector<Sample>{labels("labels 4x10", 4, 10, 0.0), labels("labels smoothing 0.1", 5, 7, 0.1),
                               soft("soft targets", 3, 6, 0.0),   soft("soft targets smoothing 0.2", 2, 5, 0.2),
                               labels("cifar100 batch 128x100", 128, 100, 0.1, false)};
  };
  Variant ref;
  ref.name = "reference";
  ref.forward = [](ForwardCtx& c) {
    const Tensor &x = c.inputs[0], &t = c.inputs[1];
    const int64_t N = x.dim(0), K = x.dim(1);
    const bool hard = t.dtype() == DType::s32;
    if (hard)
      for (int64_t n = 0; n < N; ++n) {
        int32_t l = t.data<int32_t>()[n];
        EDL_CHECK(l >= 0 && l < K, "cross_entropy: label {} at row {} is out of range for {} classes", l, n, K);
      }
    Tensor logp = Tensor::empty(x.shape(), x.dtype());
    Tensor y = Tensor::empty({}, x.dtype());
    with_floating(x.dtype(), "cross_entropy", [&](auto tag) {
      using T = decltype(tag);
      y.data<T>()[0] = cross_entropy_forward_reference(x.data<T>(), hard ? t.data<int32_t>() : nullptr,
                                                       hard ? nullptr : t.data<T>(), logp.data<T>(), N, K,
                                                       c.attrs.f("label_smoothing", 0.0));
    });
    c.saved = {logp};
    return y;
  };
  ref.backward = [](BackwardCtx& c) {
    const Tensor &x = c.inputs[0], &t = c.inputs[1];
    const bool hard = t.dtype() == DType::s32;
    Tensor dx = grad_buffer(c.needs_grad[0], x), dt = grad_buffer(!hard && c.needs_grad[1], t);
    with_floating(x.dtype(), "cross_entropy", [&](auto tag) {
      using T = decltype(tag);
      cross_entropy_backward_reference(c.saved[0].data<T>(), hard ? t.data<int32_t>() : nullptr,
                                       hard ? nullptr : t.data<T>(), c.dy.data<T>()[0], ptr_or_null<T>(dx),
                                       ptr_or_null<T>(dt), x.dim(0), x.dim(1), c.attrs.f("label_smoothing", 0.0));
    });
    return Tensors{dx, dt};
  };
  op.variants = {ref};
  return op;
}

}  // namespace edl
