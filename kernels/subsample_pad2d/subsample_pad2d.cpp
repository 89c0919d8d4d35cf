// subsample_pad2d.cpp — op definition of subsample_pad2d: x[:, :, ::stride, ::stride] with `pad`
// zero channels added on each side (attributes stride, default 2, and pad, default 0): the
// option-A shortcut of the CIFAR ResNets in one op.
// Variants: reference, parallel (subsample_pad2d_parallel.h).
#include "kernels/common/op_util.h"
#include "kernels/subsample_pad2d/subsample_pad2d_parallel.h"
#include "kernels/subsample_pad2d/subsample_pad2d_reference.h"

namespace edl {

static SubsamplePad2dShape subsample_pad2d_shape(const Tensor& x, const Attrs& a) {
  expect_ndim("subsample_pad2d", "x", x, 4, "(N,C,H,W)");
  SubsamplePad2dShape s{x.dim(0), x.dim(1), x.dim(2), x.dim(3), a.i("stride", 2), a.i("pad", 0), 0, 0};
  EDL_CHECK(s.stride >= 1, "subsample_pad2d: stride must be at least 1, got {}", s.stride);
  EDL_CHECK(s.pad >= 0, "subsample_pad2d: pad (zero channels on each side) must not be negative, got {}", s.pad);
  s.OH = (s.H + s.stride - 1) / s.stride, s.OW = (s.W + s.stride - 1) / s.stride;
  return s;
}

// The forward or backward of a variant from its kernels, in any floating type.
template <class Forward>
static Tensor subsample_pad2d_forward(ForwardCtx& c, Forward kernel) {
  const SubsamplePad2dShape s = subsample_pad2d_shape(c.inputs[0], c.attrs);
  Tensor y = Tensor::empty(c.out_shape, c.inputs[0].dtype());
  with_floating(y.dtype(), "subsample_pad2d", [&](auto t) {
    using T = decltype(t);
    kernel(c.inputs[0].data<T>(), y.data<T>(), s);
  });
  return y;
}

OpDef make_subsample_pad2d() {
  OpDef op;
  op.name = "subsample_pad2d";
  op.summary = "every stride-th pixel, with pad zero channels on each side (the option-A ResNet shortcut)";
  op.shape = [](const Tensors& in, const Attrs& a) {
    expect_floating("subsample_pad2d", "x", in[0]);
    const SubsamplePad2dShape s = subsample_pad2d_shape(in[0], a);
    return Shape{s.N, s.out_channels(), s.OH, s.OW};
  };
  op.flops = [](const Tensors&, const Attrs&) { return 0.0; };
  op.samples = [] {
    auto s = [](std::string name, Shape x, int64_t stride, int64_t pad, bool grad = true) {
      return Sample{std::move(name), {{x}}, {{"stride", stride}, {"pad", pad}}, grad};
    };
    return std::vector<Sample>{
        s("stride 2, pad 1", {2, 2, 4, 6}, 2, 1),
        s("odd size, no pad", {1, 3, 5, 7}, 2, 0),
        s("stride 3, pad 2", {2, 1, 7, 6}, 3, 2),
        s("stride 1 (padding only)", {1, 2, 3, 3}, 1, 1),
        // ResNet-20's two shortcuts at batch 16: 16 -> 32 channels on 32×32, 32 -> 64 on 16×16
        s("resnet20 layer2 16x16x32x32", {16, 16, 32, 32}, 2, 8, false),
        s("resnet20 layer3 16x32x16x16", {16, 32, 16, 16}, 2, 16, false),
    };
  };

  Variant ref;
  ref.name = "reference";
  ref.forward = [](ForwardCtx& c) {
    return subsample_pad2d_forward(c, [](const auto* x, auto* y, const SubsamplePad2dShape& s) {
      subsample_pad2d_forward_reference(x, y, s);
    });
  };
  ref.backward = [](BackwardCtx& c) {
    const SubsamplePad2dShape s = subsample_pad2d_shape(c.inputs[0], c.attrs);
    Tensor dx = grad_buffer(c.needs_grad[0], c.inputs[0]);
    with_floating(c.dy.dtype(), "subsample_pad2d", [&](auto t) {
      using T = decltype(t);
      subsample_pad2d_backward_reference(c.dy.data<T>(), dx.data<T>(), s);
    });
    return Tensors{dx};
  };

  // Row copies in parallel; the backward writes dx whole (no zeroed buffer) or adds into the
  // gradient already held for x (BackwardCtx::grad_into: the block's first convolution's dx).
  Variant parallel;
  parallel.name = "parallel";
  parallel.supports = [](const Tensors&, const Attrs&) { return true; };  // any floating type
  parallel.forward = [](ForwardCtx& c) {
    return subsample_pad2d_forward(c, [](const auto* x, auto* y, const SubsamplePad2dShape& s) {
      subsample_pad2d_forward_parallel(x, y, s);
    });
  };
  parallel.backward = [](BackwardCtx& c) {
    const SubsamplePad2dShape s = subsample_pad2d_shape(c.inputs[0], c.attrs);
    const bool add = c.grad_into[0].defined();
    Tensor dx = add ? c.grad_into[0] : Tensor::empty(c.inputs[0].shape(), c.inputs[0].dtype());
    with_floating(c.dy.dtype(), "subsample_pad2d", [&](auto t) {
      using T = decltype(t);
      subsample_pad2d_backward_parallel(c.dy.data<T>(), dx.data<T>(), s, add);
    });
    return Tensors{dx};
  };
  op.variants = {ref, parallel};
  return op;
}

}  // namespace edl
