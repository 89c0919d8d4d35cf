// batch_norm2d.cpp — op definition of batch_norm2d.
// Inputs: x (N,C,H,W), weight (C), bias (C), running_mean (C), running_var (C), and optionally
// residual (N,C,H,W), added to the normalized x (the end of a residual block).
// Attributes: training (1: batch statistics, and the running averages are updated in place;
// 0: running statistics), momentum (0.1), eps (1e-5) — PyTorch's defaults; relu (0; 1: the
// output is max(y, 0), a BatchNorm and the ReLU after it in one op).
// So y = relu?(bn(x) + residual?): ResNet's `relu(bn2(conv2(.)) + shortcut(x))` is one op.
// Variants: reference, simd (f32: per-plane loops on SIMD registers, threads over channels).
#include <cmath>

#include "kernels/activation/activation_reference.h"
#include "kernels/batch_norm2d/batch_norm2d_reference.h"
#include "kernels/batch_norm2d/batch_norm2d_simd.h"
#include "kernels/common/op_util.h"

namespace edl {

OpDef make_batch_norm2d() {
  OpDef op;
  op.name = "batch_norm2d";
  op.summary = "batch normalization per channel; training mode updates the running statistics";
  op.min_inputs = 5;
  op.max_inputs = 6;
  op.differentiable = {true, true, true, false, false, true};
  op.shape = [](const Tensors& in, const Attrs& a) {
    expect_same_floating("batch_norm2d", in);
    expect_ndim("batch_norm2d", "x", in[0], 4, "(N,C,H,W)");
    const Shape c{in[0].dim(1)};
    expect_shape("batch_norm2d", "weight", in[1], c);
    expect_shape("batch_norm2d", "bias", in[2], c);
    expect_shape("batch_norm2d", "running_mean", in[3], c);
    expect_shape("batch_norm2d", "running_var", in[4], c);
    if (in.size() > 5) expect_shape("batch_norm2d", "residual", in[5], in[0].shape());
    EDL_CHECK(a.i("training", 1) == 0 || in[0].numel() / in[0].dim(1) > 1,
              "batch_norm2d: training needs more than one value per channel, got x of shape {}",
              shape_str(in[0].shape()));
    return in[0].shape();
  };
  // normalize (2 flops: subtract/scale folded to one fma) + statistics (3 per element)
  // + the residual's add + the ReLU
  op.flops = [](const Tensors& in, const Attrs& a) {
    return static_cast<double>(in[0].numel()) *
           ((a.i("training", 1) ? 5.0 : 2.0) + (in.size() > 5 ? 1.0 : 0.0) + (a.i("relu", 0) ? 1.0 : 0.0));
  };
  op.samples = [] {
    auto s = [](std::string name, Shape x, int64_t training, bool grad = true, int64_t relu = 0,
                bool residual = false) {
      int64_t C = x[1];
      Sample sample{std::move(name),
                    {{x}, {{C}}, {{C}}, {{C}}, {{C}, DType::f32, Fill::positive}},
                    {{"training", training}, {"momentum", 0.1}, {"eps", 1e-5}, {"relu", relu}},
                    grad};
      if (residual) sample.inputs.push_back({x});
      return sample;
    };
    return std::vector<Sample>{
        s("train 2x3x4x4", {2, 3, 4, 4}, 1),       s("train 1x1x3x1", {1, 1, 3, 1}, 1),
        s("eval 2x3x4x4", {2, 3, 4, 4}, 0),        s("train 5x2x3x3", {5, 2, 3, 3}, 1),
        // planes of 1, 7, 8, 9, 17 and 37 values straddle the register widths (4 and 8 floats)
        s("train 4x2x1x1", {4, 2, 1, 1}, 1),       s("train 2x2x1x7", {2, 2, 1, 7}, 1),
        s("train 2x2x2x4", {2, 2, 2, 4}, 1),       s("train 2x3x3x3", {2, 3, 3, 3}, 1),
        s("train 2x2x1x17", {2, 2, 1, 17}, 1),     s("eval 2x2x1x17", {2, 2, 1, 17}, 0),
        s("train 1x2x1x37", {1, 2, 1, 37}, 1),
        s("resnet20 layer1 train 16x16x32x32", {16, 16, 32, 32}, 1, false),
        s("resnet20 layer3 eval 16x64x8x8", {16, 64, 8, 8}, 0, false),
        // fused with a ReLU: about half the outputs are clamped, on full registers and tails
        s("relu train 2x3x4x4", {2, 3, 4, 4}, 1, true, 1),       s("relu eval 2x3x4x4", {2, 3, 4, 4}, 0, true, 1),
        s("relu train 2x2x1x17", {2, 2, 1, 17}, 1, true, 1),     s("relu train 1x2x1x37", {1, 2, 1, 37}, 1, true, 1),
        s("relu resnet20 layer1 train 16x16x32x32", {16, 16, 32, 32}, 1, false, 1),
        // with a residual added (before the ReLU, when there is one)
        s("residual relu train 2x3x4x4", {2, 3, 4, 4}, 1, true, 1, true),
        s("residual relu eval 2x3x4x4", {2, 3, 4, 4}, 0, true, 1, true),
        s("residual relu train 2x2x1x17", {2, 2, 1, 17}, 1, true, 1, true),
        s("residual train 1x2x1x37", {1, 2, 1, 37}, 1, true, 0, true),
        s("residual relu resnet20 layer1 train 16x16x32x32", {16, 16, 32, 32}, 1, false, 1, true),
    };
  };

  Variant ref;
  ref.name = "reference";
  ref.forward = [](ForwardCtx& c) {
    Tensor x = c.inputs[0], rm = c.inputs[3], rv = c.inputs[4];
    const int64_t N = x.dim(0), C = x.dim(1), HW = x.dim(2) * x.dim(3);
    const bool training = c.attrs.i("training", 1) != 0;
    const double eps = c.attrs.f("eps", 1e-5);
    Tensor mean = Tensor::empty({C}, x.dtype()), invstd = Tensor::empty({C}, x.dtype());
    Tensor y = Tensor::empty(c.out_shape, x.dtype());
    with_floating(x.dtype(), "batch_norm2d", [&](auto t) {
      using T = decltype(t);
      if (training) {
        batch_norm2d_stats_reference(x.data<T>(), mean.data<T>(), invstd.data<T>(), rm.data<T>(), rv.data<T>(), N, C, HW,
                                     c.attrs.f("momentum", 0.1), eps);
      } else {
        for (int64_t k = 0; k < C; ++k) {
          mean.data<T>()[k] = rm.data<T>()[k];
          invstd.data<T>()[k] = static_cast<T>(1.0 / std::sqrt(static_cast<double>(rv.data<T>()[k]) + eps));
        }
      }
      batch_norm2d_forward_reference(x.data<T>(), c.inputs[1].data<T>(), c.inputs[2].data<T>(), mean.data<T>(),
                                     invstd.data<T>(), y.data<T>(), N, C, HW,
                                     c.inputs.size() > 5 ? c.inputs[5].data<T>() : nullptr);
      if (c.attrs.i("relu", 0)) relu_forward_reference(y.data<T>(), y.data<T>(), y.numel());  // in place
    });
    c.saved = {mean, invstd};
    return y;
  };
  ref.backward = [](BackwardCtx& c) {
    const Tensor& x = c.inputs[0];
    Tensors g{grad_buffer(c.needs_grad[0], x), grad_buffer(c.needs_grad[1], c.inputs[1]),
              grad_buffer(c.needs_grad[2], c.inputs[2]), Tensor(), Tensor()};
    if (c.inputs.size() > 5) g.push_back(grad_buffer(c.needs_grad[5], c.inputs[5]));
    with_floating(x.dtype(), "batch_norm2d", [&](auto t) {
      using T = decltype(t);
      Tensor dy = c.dy;
      if (c.attrs.i("relu", 0)) {  // the ReLU's backward first, then the norm's on its result
        // relu(v) > 0 exactly where v > 0, so the ReLU's output y serves as its input here.
        dy = Tensor::zeros(c.dy.shape(), c.dy.dtype());  // the reference kernel accumulates
        relu_backward_reference(c.y.data<T>(), c.y.data<T>(), c.dy.data<T>(), dy.data<T>(), dy.numel());
      }
      // The residual was added: its gradient is the (masked) dy itself.
      if (g.size() > 5 && g[5].defined()) {
        T* dr = g[5].data<T>();
        const T* d = dy.data<T>();
        for (int64_t i = 0; i < dy.numel(); ++i) dr[i] += d[i];
      }
      batch_norm2d_backward_reference(x.data<T>(), c.inputs[1].data<T>(), c.saved[0].data<T>(), c.saved[1].data<T>(),
                                      dy.data<T>(), ptr_or_null<T>(g[0]), ptr_or_null<T>(g[1]), ptr_or_null<T>(g[2]),
                                      x.dim(0), x.dim(1), x.dim(2) * x.dim(3), c.attrs.i("training", 1) != 0);
    });
    return g;
  };

  // The same computation in f32 on SIMD registers; the default `supports` (f32) fits.
  Variant simd;
  simd.name = "simd";
  simd.forward = [](ForwardCtx& c) {
    Tensor x = c.inputs[0], rm = c.inputs[3], rv = c.inputs[4];
    const int64_t N = x.dim(0), C = x.dim(1), HW = x.dim(2) * x.dim(3);
    const bool training = c.attrs.i("training", 1) != 0;
    const double eps = c.attrs.f("eps", 1e-5);
    Tensor mean = Tensor::empty({C}), invstd = Tensor::empty({C});
    Tensor y = Tensor::empty(c.out_shape);
    // In training, from the statistics of x's planes where the kernel that wrote x left them
    // (PlaneStats: conv2d's fast variants, each image's while it was in cache), else from x,
    // one pass over memory more. ResNet-20 (edl train --profile-shapes, 39 steps, three
    // alternating pairs, ms): this forward 358-381 -> 284-288 on 16 channels, 136-142 -> 110-115
    // on 32, 92-93 -> 68-70 on 64, the convolutions before it 0-31 ms longer; time in ops
    // 6775-6950 -> 6736-6800, 706-724 -> 722-729 training images/s.
    const PlaneStats* planes = training ? x.plane_stats() : nullptr;
    if (planes) {
      batch_norm2d_stats_from_planes(planes->mean.data(), planes->m2.data(), mean.data<float>(), invstd.data<float>(),
                                     rm.data<float>(), rv.data<float>(), N, C, HW, c.attrs.f("momentum", 0.1), eps);
    } else if (training) {
      batch_norm2d_stats_simd(x.data<float>(), mean.data<float>(), invstd.data<float>(), rm.data<float>(),
                              rv.data<float>(), N, C, HW, c.attrs.f("momentum", 0.1), eps);
    } else {
      for (int64_t k = 0; k < C; ++k) {
        mean.data<float>()[k] = rm.data<float>()[k];
        invstd.data<float>()[k] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(rv.data<float>()[k]) + eps));
      }
    }
    batch_norm2d_forward_simd(x.data<float>(), c.inputs[1].data<float>(), c.inputs[2].data<float>(),
                              mean.data<float>(), invstd.data<float>(), y.data<float>(), N, C, HW,
                              c.attrs.i("relu", 0) != 0, c.inputs.size() > 5 ? c.inputs[5].data<float>() : nullptr);
    c.saved = {mean, invstd};
    return y;
  };
  simd.backward = [](BackwardCtx& c) {
    const Tensor& x = c.inputs[0];
    const bool relu = c.attrs.i("relu", 0) != 0, residual = c.inputs.size() > 5;
    // dx is written whole by the kernel: no zeroed buffer. Where dy may be overwritten
    // (dy_writable) and is not passed on as the residual's gradient, dx goes into dy: its dx
    // pass reads each value of dy (in cache: its sums' pass read the channel just before) and
    // writes dx in its place. ResNet-20 (edl train --profile-shapes, 39 steps, three alternating
    // pairs, ms): batch norm's backward on 16 channels 602-638 -> 478-487, 32 channels 199-222
    // -> 160-166, 64 channels 146-155 -> 124-131; time in ops 6933-7182 -> 6802-6875.
    const bool dx_in_dy = c.dy_writable && !residual;
    Tensors g{!c.needs_grad[0] ? Tensor() : dx_in_dy ? c.dy : Tensor::empty(x.shape(), x.dtype()),
              grad_buffer(c.needs_grad[1], c.inputs[1]), grad_buffer(c.needs_grad[2], c.inputs[2]), Tensor(), Tensor()};
    // The residual's gradient is dy where the ReLU passed it (written by the kernel: into dy
    // itself where dy may be overwritten, as for dx above), or dy itself without a ReLU (passed
    // on without a copy, as add's backward does).
    // With a ReLU and no residual the kernel finds where the ReLU passed from x (relu_beta),
    // which it reads anyway; after a residual's add only y tells.
    if (residual) {
      const bool fresh = relu && !c.dy_writable;  // else dy itself
      g.push_back(!c.needs_grad[5] ? Tensor() : fresh ? Tensor::empty(x.shape(), x.dtype()) : c.dy);
    }
    batch_norm2d_backward_simd(x.data<float>(), c.inputs[1].data<float>(), c.saved[0].data<float>(),
                               c.saved[1].data<float>(), c.dy.data<float>(), ptr_or_null<float>(g[0]),
                               ptr_or_null<float>(g[1]), ptr_or_null<float>(g[2]), x.dim(0), x.dim(1),
                               x.dim(2) * x.dim(3), c.attrs.i("training", 1) != 0,
                               relu && residual ? c.y.data<float>() : nullptr,
                               relu && residual ? ptr_or_null<float>(g[5]) : nullptr,
                               relu && !residual ? c.inputs[2].data<float>() : nullptr);
    return g;
  };
  op.variants = {ref, simd};
  return op;
}

}  // namespace edl
