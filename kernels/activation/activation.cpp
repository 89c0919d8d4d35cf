// activation.cpp — op definitions of relu, relu6, hardswish, sigmoid, gelu (pointwise, any shape).
// Variants: reference, simd (f32: SIMD registers via xsimd, threads on large tensors).
#include "kernels/activation/activation_reference.h"
#include "kernels/activation/activation_simd.h"
#include "kernels/common/op_util.h"

namespace edl {

static std::vector<Sample> unary_samples() {
  auto s = [](std::string name, Shape x, bool grad = true) { return Sample{std::move(name), {{x}}, {}, grad}; };
  // 7, 8, 9, 17 straddle the register widths (4 and 8 floats): tails of every length.
  return {s("one", {1}),         s("seven", {7}),          s("eight", {8}),    s("nine", {9}),
          s("seventeen", {17}),  s("2x3x4x5", {2, 3, 4, 5}), s("prime 37", {37}),
          s("resnet20 layer1 16x16x32x32", {16, 16, 32, 32}, false)};
}

// The kernels of one activation, for both element types: a pointwise op is fully described by
// its forward and backward loops; everything else is shared.
struct UnaryKernels {
  void (*forward_f32)(const float*, float*, int64_t);
  void (*forward_f64)(const double*, double*, int64_t);
  void (*backward_f32)(const float*, const float*, const float*, float*, int64_t);
  void (*backward_f64)(const double*, const double*, const double*, double*, int64_t);
  void (*forward_simd)(const float*, float*, int64_t);
  void (*backward_simd)(const float*, const float*, const float*, float*, int64_t);
};

static OpDef make_unary(const char* name, const char* summary, double flops_per_element, UnaryKernels k) {
  OpDef op;
  op.name = name;
  op.summary = summary;
  op.shape = [name = op.name](const Tensors& in, const Attrs&) {
    expect_floating(name, "x", in[0]);
    return in[0].shape();
  };
  op.flops = [flops_per_element](const Tensors& in, const Attrs&) {
    return flops_per_element * static_cast<double>(in[0].numel());
  };
  op.samples = unary_samples;

  Variant ref;
  ref.name = "reference";
  ref.forward = [k](ForwardCtx& c) {
    const Tensor& x = c.inputs[0];
    Tensor y = Tensor::empty(c.out_shape, x.dtype());
    if (x.dtype() == DType::f32) k.forward_f32(x.data<float>(), y.data<float>(), x.numel());
    else k.forward_f64(x.data<double>(), y.data<double>(), x.numel());
    return y;
  };
  ref.backward = [k](BackwardCtx& c) {
    const Tensor& x = c.inputs[0];
    Tensor dx = Tensor::zeros(x.shape(), x.dtype());
    if (x.dtype() == DType::f32)
      k.backward_f32(x.data<float>(), c.y.data<float>(), c.dy.data<float>(), dx.data<float>(), x.numel());
    else
      k.backward_f64(x.data<double>(), c.y.data<double>(), c.dy.data<double>(), dx.data<double>(), x.numel());
    return Tensors{dx};
  };

  // The default `supports` (every f32 call) is what this variant handles.
  Variant simd;
  simd.name = "simd";
  simd.forward = [k](ForwardCtx& c) {
    const Tensor& x = c.inputs[0];
    Tensor y = Tensor::empty(c.out_shape, x.dtype());
    k.forward_simd(x.data<float>(), y.data<float>(), x.numel());
    return y;
  };
  simd.backward = [k](BackwardCtx& c) {
    const Tensor& x = c.inputs[0];
    Tensor dx = Tensor::empty(x.shape(), x.dtype());  // the simd kernels write every value
    k.backward_simd(x.data<float>(), c.y.data<float>(), c.dy.data<float>(), dx.data<float>(), x.numel());
    return Tensors{dx};
  };
  op.variants = {ref, simd};
  return op;
}

#define EDL_UNARY_KERNELS(op)                                                                      \
  UnaryKernels {                                                                                   \
    op##_forward_reference<float>, op##_forward_reference<double>, op##_backward_reference<float>, \
        op##_backward_reference<double>, op##_forward_simd, op##_backward_simd                     \
  }

OpDef make_relu() { return make_unary("relu", "max(x, 0)", 1, EDL_UNARY_KERNELS(relu)); }
OpDef make_relu6() { return make_unary("relu6", "min(max(x, 0), 6)", 2, EDL_UNARY_KERNELS(relu6)); }
OpDef make_hardswish() { return make_unary("hardswish", "x * relu6(x + 3) / 6", 5, EDL_UNARY_KERNELS(hardswish)); }
OpDef make_sigmoid() { return make_unary("sigmoid", "1 / (1 + exp(-x))", 4, EDL_UNARY_KERNELS(sigmoid)); }
// FLOPs: the scale, the erf (counted as one, like exp in sigmoid), the add and two products.
OpDef make_gelu() { return make_unary("gelu", "x * (1 + erf(x / sqrt(2))) / 2", 5, EDL_UNARY_KERNELS(gelu)); }

}  // namespace edl
