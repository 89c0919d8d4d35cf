// pool.cpp — op definitions of max_pool2d, avg_pool2d (attributes kernel_size, stride
// (default kernel_size), padding (0)) and global_avg_pool2d ((N,C,H,W) -> (N,C)).
// Variants: reference, simd (f32; max/avg for stride <= max(kernel_size, 2), any padding).
#include "kernels/common/op_util.h"
#include "kernels/pool/pool_reference.h"
#include "kernels/pool/pool_simd.h"

namespace edl {

static Pool2dShape pool_shape(const std::string& op, const Tensor& x, const Attrs& a) {
  expect_ndim(op, "x", x, 4, "(N,C,H,W)");
  Pool2dShape s{};
  s.P = x.dim(0) * x.dim(1), s.H = x.dim(2), s.W = x.dim(3);
  s.K = a.i("kernel_size");
  s.stride = a.i("stride", s.K), s.padding = a.i("padding", 0);
  EDL_CHECK(2 * s.padding <= s.K, "{}: padding {} must be at most half the kernel size {}", op, s.padding, s.K);
  s.OH = window_out(op, s.H, s.K, s.stride, s.padding, "height");
  s.OW = window_out(op, s.W, s.K, s.stride, s.padding, "width");
  return s;
}

static std::vector<Sample> pool_samples() {
  auto s = [](std::string name, Shape x, int64_t k, int64_t stride, int64_t pad, bool grad = true) {
    return Sample{std::move(name), {{x}}, {{"kernel_size", k}, {"stride", stride}, {"padding", pad}}, grad};
  };
  return {s("2x2 s2", {2, 3, 4, 4}, 2, 2, 0),          s("3x3 s2 p1 odd", {1, 2, 7, 5}, 3, 2, 1),
          s("3x3 s1 p1", {2, 2, 5, 5}, 3, 1, 1),       s("2x2 s2 odd size", {1, 1, 5, 5}, 2, 2, 0),
          // rows of 7, 8, 9, 17 and 37 windows straddle the register widths (4 and 8 floats)
          s("2x2 s2 7 wide", {1, 2, 4, 15}, 2, 2, 0),  s("2x2 s2 17 wide", {1, 2, 4, 34}, 2, 2, 0),
          s("3x3 s1 p1 8 wide", {1, 1, 4, 8}, 3, 1, 1), s("3x3 s1 p1 9 wide", {1, 2, 3, 9}, 3, 1, 1),
          s("3x3 s2 p1 19 wide", {1, 1, 5, 37}, 3, 2, 1), s("3x3 s1 37 wide", {1, 1, 3, 39}, 3, 1, 0),
          s("2x2 s1 17 wide", {1, 1, 3, 18}, 2, 1, 0),
          // windows apart: ResNet-20's option-A shortcut (x[:, :, ::2, ::2]) on rows of 9, 18, 34
          s("1x1 s2 (shortcut)", {2, 3, 6, 6}, 1, 2, 0),  s("1x1 s2 9 wide", {1, 2, 5, 18}, 1, 2, 0),
          s("1x1 s2 17 wide", {1, 1, 4, 34}, 1, 2, 0),    s("1x1 s2 16x16x32x32", {16, 16, 32, 32}, 1, 2, 0, false),
          s("vgg 2x2 16x64x32x32", {16, 64, 32, 32}, 2, 2, 0, false),
          s("3x3 s2 p1 16x64x32x32", {16, 64, 32, 32}, 3, 2, 1, false)};
}

static OpDef make_pool(const char* name, const char* summary, bool is_max) {
  OpDef op;
  op.name = name;
  op.summary = summary;
  op.shape = [name = op.name](const Tensors& in, const Attrs& a) {
    expect_floating(name, "x", in[0]);
    Pool2dShape s = pool_shape(name, in[0], a);
    return Shape{in[0].dim(0), in[0].dim(1), s.OH, s.OW};
  };
  op.flops = [name = op.name](const Tensors& in, const Attrs& a) {
    Pool2dShape s = pool_shape(name, in[0], a);
    return static_cast<double>(s.P * s.OH * s.OW * s.K * s.K);
  };
  op.samples = pool_samples;

  Variant ref;
  ref.name = "reference";
  ref.forward = [is_max, name = op.name](ForwardCtx& c) {
    const Tensor& x = c.inputs[0];
    Pool2dShape s = pool_shape(name, x, c.attrs);
    Tensor y = Tensor::empty(c.out_shape, x.dtype());
    Tensor argmax = is_max ? Tensor::empty(c.out_shape, DType::s32) : Tensor();
    with_floating(x.dtype(), name.c_str(), [&](auto t) {
      using T = decltype(t);
      if (is_max) max_pool2d_forward_reference(x.data<T>(), y.data<T>(), argmax.data<int32_t>(), s);
      else avg_pool2d_forward_reference(x.data<T>(), y.data<T>(), s);
    });
    if (is_max) c.saved = {argmax};
    return y;
  };
  ref.backward = [is_max, name = op.name](BackwardCtx& c) {
    const Tensor& x = c.inputs[0];
    Pool2dShape s = pool_shape(name, x, c.attrs);
    Tensor dx = Tensor::zeros(x.shape(), x.dtype());
    with_floating(x.dtype(), name.c_str(), [&](auto t) {
      using T = decltype(t);
      if (is_max) max_pool2d_backward_reference(c.saved[0].data<int32_t>(), c.dy.data<T>(), dx.data<T>(), s);
      else avg_pool2d_backward_reference(c.dy.data<T>(), dx.data<T>(), s);
    });
    return Tensors{dx};
  };

  // The SIMD kernels evaluate a window at every column of an output row and keep every
  // stride-th. That wastes work when windows are far apart, but up to stride 2 it is still much
  // faster than one window at a time — ResNet-20's option-A shortcut, avg_pool2d(k=1, s=2),
  // took 2% of a training step on the reference kernel — and past it the reference is used.
  Variant simd;
  simd.name = "simd";
  simd.supports = [](const Tensors& in, const Attrs& a) {
    const int64_t K = a.i("kernel_size");
    return in[0].dtype() == DType::f32 && a.i("stride", K) <= std::max<int64_t>(K, 2);
  };
  simd.forward = [is_max, name = op.name](ForwardCtx& c) {
    const Tensor& x = c.inputs[0];
    Pool2dShape s = pool_shape(name, x, c.attrs);
    Tensor y = Tensor::empty(c.out_shape, x.dtype());
    if (is_max) {
      Tensor argmax = Tensor::empty(c.out_shape, DType::s32);
      max_pool2d_forward_simd(x.data<float>(), y.data<float>(), argmax.data<int32_t>(), s);
      c.saved = {argmax};
    } else if (avg_pool2d_is_subsample(s)) {
      avg_pool2d_subsample_forward(x.data<float>(), y.data<float>(), s);
    } else {
      avg_pool2d_forward_simd(x.data<float>(), y.data<float>(), s);
    }
    return y;
  };
  simd.backward = [is_max, name = op.name](BackwardCtx& c) {
    const Tensor& x = c.inputs[0];
    Pool2dShape s = pool_shape(name, x, c.attrs);
    if (!is_max && avg_pool2d_is_subsample(s)) {  // writes every value: no zeroed tensor needed
      Tensor dx = Tensor::empty(x.shape(), x.dtype());
      avg_pool2d_subsample_backward(c.dy.data<float>(), dx.data<float>(), s);
      return Tensors{dx};
    }
    Tensor dx = Tensor::zeros(x.shape(), x.dtype());
    if (is_max) max_pool2d_backward_simd(c.saved[0].data<int32_t>(), c.dy.data<float>(), dx.data<float>(), s);
    else avg_pool2d_backward_simd(c.dy.data<float>(), dx.data<float>(), s);
    return Tensors{dx};
  };
  op.variants = {ref, simd};
  return op;
}

OpDef make_max_pool2d() { return make_pool("max_pool2d", "maximum over K x K windows", true); }
OpDef make_avg_pool2d() { return make_pool("avg_pool2d", "average over K x K windows (padding counts as 0)", false); }

OpDef make_global_avg_pool2d() {
  OpDef op;
  op.name = "global_avg_pool2d";
  op.summary = "mean over each H x W plane: (N,C,H,W) -> (N,C)";
  op.shape = [](const Tensors& in, const Attrs&) {
    expect_floating("global_avg_pool2d", "x", in[0]);
    expect_ndim("global_avg_pool2d", "x", in[0], 4, "(N,C,H,W)");
    return Shape{in[0].dim(0), in[0].dim(1)};
  };
  op.flops = [](const Tensors& in, const Attrs&) { return static_cast<double>(in[0].numel()); };
  op.samples = [] {
    return std::vector<Sample>{{"2x3x4x4", {{{2, 3, 4, 4}}}, {}, true},
                               {"1x1x1x1", {{{1, 1, 1, 1}}}, {}, true},
                               // planes of 7, 8, 9, 17 values straddle the register widths
                               {"2x2x1x7", {{{2, 2, 1, 7}}}, {}, true},
                               {"1x2x2x4", {{{1, 2, 2, 4}}}, {}, true},
                               {"2x1x3x3", {{{2, 1, 3, 3}}}, {}, true},
                               {"1x3x1x17", {{{1, 3, 1, 17}}}, {}, true},
                               {"resnet20 head 128x64x8x8", {{{128, 64, 8, 8}}}, {}, false}};
  };
  Variant ref;
  ref.name = "reference";
  ref.forward = [](ForwardCtx& c) {
    const Tensor& x = c.inputs[0];
    Tensor y = Tensor::empty(c.out_shape, x.dtype());
    with_floating(x.dtype(), "global_avg_pool2d", [&](auto t) {
      using T = decltype(t);
      global_avg_pool2d_forward_reference(x.data<T>(), y.data<T>(), x.dim(0) * x.dim(1), x.dim(2) * x.dim(3));
    });
    return y;
  };
  ref.backward = [](BackwardCtx& c) {
    const Tensor& x = c.inputs[0];
    Tensor dx = Tensor::zeros(x.shape(), x.dtype());
    with_floating(x.dtype(), "global_avg_pool2d", [&](auto t) {
      using T = decltype(t);
      global_avg_pool2d_backward_reference(c.dy.data<T>(), dx.data<T>(), x.dim(0) * x.dim(1), x.dim(2) * x.dim(3));
    });
    return Tensors{dx};
  };
  Variant simd;  // the default `supports` (f32) fits
  simd.name = "simd";
  simd.forward = [](ForwardCtx& c) {
    const Tensor& x = c.inputs[0];
    Tensor y = Tensor::empty(c.out_shape);
    global_avg_pool2d_forward_simd(x.data<float>(), y.data<float>(), x.dim(0) * x.dim(1), x.dim(2) * x.dim(3));
    return y;
  };
  simd.backward = [](BackwardCtx& c) {
    const Tensor& x = c.inputs[0];
    Tensor dx = Tensor::zeros(x.shape());
    global_avg_pool2d_backward_simd(c.dy.data<float>(), dx.data<float>(), x.dim(0) * x.dim(1), x.dim(2) * x.dim(3));
    return Tensors{dx};
  };
  op.variants = {ref, simd};
  return op;
}

}  // namespace edl
