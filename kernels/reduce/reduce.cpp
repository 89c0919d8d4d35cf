// reduce.cpp — op definitions of sum and mean over all elements (a scalar result).
//   sum:  y = sum_i x_i        dx_i += dy
//   mean: y = (1/n) sum_i x_i  dx_i += dy / n
// The reference kernels are three lines each and live here rather than in a header of their own.
// Variants: reference, simd (f32: registers, blocked sums in threads; kernels/reduce/reduce_simd.h).
#include "kernels/common/op_util.h"
#include "kernels/reduce/reduce_simd.h"

namespace edl {

template <typename T>
T sum_forward_reference(const T* x, int64_t n) {
  double acc = 0;  // double: a sum of a million floats loses digits in float
  for (int64_t i = 0; i < n; ++i) acc += x[i];
  return static_cast<T>(acc);
}

template <typename T>
void sum_backward_reference(T dy, T* dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] += dy;
}

static OpDef make_reduction(const char* name, const char* summary, bool mean) {
  OpDef op;
  op.name = name;
  op.summary = summary;
  op.shape = [name = op.name](const Tensors& in, const Attrs&) {
    expect_floating(name, "x", in[0]);
    EDL_CHECK(name != "mean" || in[0].numel() > 0, "mean: x is empty");
    return Shape{};
  };
  op.flops = [](const Tensors& in, const Attrs&) { return static_cast<double>(in[0].numel()); };
  op.samples = [] {
    return std::vector<Sample>{{"one", {{{1}}}, {}, true}, {"3x4", {{{3, 4}}}, {}, true},
                               // 7, 8, 9, 17, 37 straddle the register widths (4 and 8 floats)
                               {"7", {{{7}}}, {}, true}, {"8", {{{8}}}, {}, true}, {"9", {{{9}}}, {}, true},
                               {"17", {{{17}}}, {}, true}, {"prime 37", {{{37}}}, {}, true},
                               {"2x3x4x5", {{{2, 3, 4, 5}}}, {}, true},
                               {"16x16x32x32", {{{16, 16, 32, 32}}}, {}, false}};
  };
  Variant ref;
  ref.name = "reference";
  ref.forward = [mean, name = op.name](ForwardCtx& c) {
    const Tensor& x = c.inputs[0];
    Tensor y = Tensor::empty({}, x.dtype());
    with_floating(x.dtype(), name.c_str(), [&](auto t) {
      using T = decltype(t);
      T s = sum_forward_reference(x.data<T>(), x.numel());
      y.data<T>()[0] = mean ? s / static_cast<T>(x.numel()) : s;
    });
    return y;
  };
  ref.backward = [mean, name = op.name](BackwardCtx& c) {
    const Tensor& x = c.inputs[0];
    Tensor dx = Tensor::zeros(x.shape(), x.dtype());
    with_floating(x.dtype(), name.c_str(), [&](auto t) {
      using T = decltype(t);
      T g = c.dy.data<T>()[0];
      sum_backward_reference(mean ? g / static_cast<T>(x.numel()) : g, dx.data<T>(), x.numel());
    });
    return Tensors{dx};
  };
  Variant simd;  // the default `supports` (f32) fits
  simd.name = "simd";
  simd.forward = [mean](ForwardCtx& c) {
    const Tensor& x = c.inputs[0];
    Tensor y = Tensor::empty({});
    const double s = sum_forward_simd(x.data<float>(), x.numel());
    y.data<float>()[0] = static_cast<float>(mean ? s / static_cast<double>(x.numel()) : s);
    return y;
  };
  simd.backward = [mean](BackwardCtx& c) {
    const Tensor& x = c.inputs[0];
    Tensor dx = Tensor::zeros(x.shape());
    const float g = c.dy.data<float>()[0];
    sum_backward_simd(mean ? g / static_cast<float>(x.numel()) : g, dx.data<float>(), x.numel());
    return Tensors{dx};
  };
  op.variants = {ref, simd};
  return op;
}

OpDef make_sum() { return make_reduction("sum", "sum of all elements", false); }
OpDef make_mean() { return make_reduction("mean", "mean of all elements", true); }

}  // namespace edl
