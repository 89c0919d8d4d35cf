// conv2d.cpp — op definition of conv2d: x (N,C,H,W), w (OC,C/groups,KH,KW), optional b (OC).
// Attributes: stride (1), padding (0), groups (1).
// Variants: reference (plain loops); winograd4 and winograd (3×3 stride-1 convolutions by
// Winograd's F(4×4, 3×3) and F(2×2, 3×3), 4× and 2.25× fewer multiply-adds; chosen for wide
// layers); implicit (implicit GEMM: the GEMM reads straight from the image, the default where
// it applies); dense (the convolution as one matrix product per pass, for maps about the size
// of the kernel); im2col (im2col + edl's GEMM, kept beside it so that the benchmark shows what
// skipping the column matrix buys); depthwise (direct loops for groups = C = OC, where there is
// no product for a GEMM). docs/convolution.md explains them.
#include "engine/autograd.h"
#include "kernels/common/gemm_ukernel.h"
#include "kernels/common/op_util.h"
#include "kernels/conv2d/conv2d_dense.h"
#include "kernels/conv2d/conv2d_depthwise.h"
#include "kernels/conv2d/conv2d_implicit.h"
#include "kernels/conv2d/conv2d_im2col.h"
#include "kernels/conv2d/conv2d_reference.h"
#include "kernels/conv2d/conv2d_winograd.h"

namespace edl {

static Conv2dShape conv2d_shape(const Tensors& in, const Attrs& a) {
  const Tensor &x = in[0], &w = in[1];
  expect_ndim("conv2d", "x", x, 4, "(N,C,H,W)");
  expect_ndim("conv2d", "weight", w, 4, "(OC,C/groups,KH,KW)");
  Conv2dShape s{};
  s.N = x.dim(0), s.C = x.dim(1), s.H = x.dim(2), s.W = x.dim(3);
  s.OC = w.dim(0), s.KH = w.dim(2), s.KW = w.dim(3);
  s.stride = a.i("stride", 1), s.padding = a.i("padding", 0), s.groups = a.i("groups", 1);
  EDL_CHECK(s.groups >= 1 && s.C % s.groups == 0 && s.OC % s.groups == 0,
            "conv2d: groups={} must divide both input channels C={} and output channels OC={}", s.groups, s.C, s.OC);
  EDL_CHECK(w.dim(1) == s.C / s.groups, "conv2d: weight has shape {}, expected (OC, C/groups={}, KH, KW) for x of shape {}",
            shape_str(w.shape()), s.C / s.groups, shape_str(x.shape()));
  if (in.size() == 3) expect_shape("conv2d", "bias", in[2], {s.OC});
  s.OH = window_out("conv2d", s.H, s.KH, s.stride, s.padding, "height");
  s.OW = window_out("conv2d", s.W, s.KW, s.stride, s.padding, "width");
  return s;
}

static bool all_f32(const Tensors& in) {
  for (const Tensor& t : in)
    if (t.dtype() != DType::f32) return false;
  return true;
}

// A float32 variant from its forward and backward kernels (same signatures as the reference's,
// in float; the backward writes dx and adds into dw and db, so dx needs no zeroed buffer: the
// convolutions' backward in a ResNet-20 training step ran 8-10% faster without it). For the
// GEMM variants: a GEMM per group needs a few input channels per group to pay off, so
// depthwise convolutions (one channel per group) go to the depthwise variant.
using Conv2dForwardF32 = void (*)(const float*, const float*, const float*, float*, const Conv2dShape&);
using Conv2dBackwardF32 = void (*)(const float*, const float*, const float*, float*, float*, float*, const Conv2dShape&);
// A backward that adds dx into the gradient the autograd holds for x (BackwardCtx::grad_into),
// on the shapes `applies` accepts (null: all): a ResNet block's input has the residual's
// gradient already.
struct Conv2dAddDx {
  Conv2dBackwardF32 backward = nullptr;
  bool (*applies)(const Conv2dShape&) = nullptr;
};
// A forward that also leaves the PlaneStats of y where its path allows (PlaneStatsOut::done).
using Conv2dForwardStatsF32 = void (*)(const float*, const float*, const float*, float*, const Conv2dShape&,
                                       PlaneStatsOut*);
static Variant f32_variant(const char* name, Conv2dForwardF32 forward, Conv2dBackwardF32 backward,
                           Conv2dAddDx add_dx = {}, Conv2dForwardStatsF32 forward_stats = nullptr) {
  Variant v;
  v.name = name;
  v.supports = [](const Tensors& in, const Attrs& a) {
    if (!all_f32(in)) return false;
    Conv2dShape s = conv2d_shape(in, a);
    return s.groups == 1 || s.C / s.groups >= 2;
  };
  v.forward = [forward, forward_stats](ForwardCtx& c) {
    Conv2dShape s = conv2d_shape(c.inputs, c.attrs);
    Tensor y = Tensor::empty(c.out_shape, DType::f32);
    const float* b = c.inputs.size() == 3 ? c.inputs[2].data<float>() : nullptr;
    // In training (the autograd records this call) a batch norm may read y next: variants that
    // can leave the statistics of y's planes for it (PlaneStats) do.
    if (forward_stats && grad_enabled() && (c.inputs[0].requires_grad() || c.inputs[1].requires_grad())) {
      auto stats = std::make_shared<PlaneStats>();
      stats->N = s.N, stats->C = s.OC, stats->HW = s.OH * s.OW;
      stats->mean.resize(static_cast<size_t>(s.N * s.OC));
      stats->m2.resize(static_cast<size_t>(s.N * s.OC));
      PlaneStatsOut out{stats->mean.data(), stats->m2.data()};
      forward_stats(c.inputs[0].data<float>(), c.inputs[1].data<float>(), b, y.data<float>(), s, &out);
      if (out.done && s.N > 0) y.set_plane_stats(std::move(stats));
      return y;
    }
    forward(c.inputs[0].data<float>(), c.inputs[1].data<float>(), b, y.data<float>(), s);
    return y;
  };
  v.backward = [backward, add_dx](BackwardCtx& c) {
    Conv2dShape s = conv2d_shape(c.inputs, c.attrs);
    const bool adds =
        c.needs_grad[0] && c.grad_into[0].defined() && add_dx.backward && (!add_dx.applies || add_dx.applies(s));
    Tensors g{!c.needs_grad[0] ? Tensor() : adds ? c.grad_into[0] : Tensor::empty(c.inputs[0].shape(), DType::f32)};
    for (size_t i = 1; i < c.inputs.size(); ++i) g.push_back(grad_buffer(c.needs_grad[i], c.inputs[i]));  // added into
    g.resize(3);
    (adds ? add_dx.backward : backward)(c.inputs[0].data<float>(), c.inputs[1].data<float>(), c.dy.data<float>(),
                                        ptr_or_null<float>(g[0]), ptr_or_null<float>(g[1]),
                                        ptr_or_null<float>(g[2]), s);
    g.resize(c.inputs.size());
    return g;
  };
  return v;
}

// dense's weight gradient holds dT (conv2d_dense.h) in memory: at most 64 MB of it.
constexpr double kDenseMatrixMax = 1 << 24;

OpDef make_conv2d() {
  OpDef op;
  op.name = "conv2d";
  op.summary = "2-d convolution with stride, zero padding and groups (depthwise when groups = C)";
  op.min_inputs = 2;
  op.max_inputs = 3;
  op.shape = [](const Tensors& in, const Attrs& a) {
    expect_same_floating("conv2d", in);
    Conv2dShape s = conv2d_shape(in, a);
    return Shape{s.N, s.OC, s.OH, s.OW};
  };
  // One multiply and one add per weight tap per output element (the bias add is not counted,
  // as in the usual convention).
  op.flops = [](const Tensors& in, const Attrs& a) {
    Conv2dShape s = conv2d_shape(in, a);
    return 2.0 * static_cast<double>(s.N * s.OC * s.OH * s.OW) * static_cast<double>(s.C / s.groups * s.KH * s.KW);
  };
  op.samples = [] {
    // x (N,C,H,W), OC, KH×KW, stride, padding, groups, bias, gradient-checked
    auto s2 = [](std::string name, Shape x, int64_t OC, int64_t KH, int64_t KW, int64_t stride, int64_t pad,
                 int64_t groups, bool bias, bool grad = true) {
      Sample smp{std::move(name), {{x}, {{OC, x[1] / groups, KH, KW}}}, {{"stride", stride}, {"padding", pad}, {"groups", groups}}, grad};
      if (bias) smp.inputs.push_back({{OC}});
      return smp;
    };
    auto s = [&](std::string name, Shape x, int64_t OC, int64_t K, int64_t stride, int64_t pad, int64_t groups,
                 bool bias, bool grad = true) { return s2(std::move(name), x, OC, K, K, stride, pad, groups, bias, grad); };
    return std::vector<Sample>{
        s("1x1", {2, 3, 4, 4}, 5, 1, 1, 0, 1, true),
        s("3x3 s1 p1", {2, 3, 5, 5}, 4, 3, 1, 1, 1, true),
        s("3x3 s2 p1 odd size", {1, 2, 7, 7}, 3, 3, 2, 1, 1, false),
        s("5x5 p2 no bias", {1, 2, 6, 5}, 2, 5, 1, 2, 1, false),
        s("3x3 no padding", {2, 2, 6, 6}, 3, 3, 1, 0, 1, true),
        s("groups=2", {2, 4, 5, 5}, 6, 3, 1, 1, 2, true),
        s("depthwise 3x3 s2", {2, 4, 6, 6}, 4, 3, 2, 1, 4, false),
        s("depthwise 3x3 s1 bias wide rows", {2, 3, 5, 19}, 3, 3, 1, 1, 3, true),
        // Rows of 35 and 18 pixels: whole vectors plus a remainder, for the kernels that
        // vectorize along output rows (conv2d_implicit.h); 5 and 3 output channels per group
        // leave a partial block of 4.
        s("3x3 s1 p1 wide rows", {2, 3, 7, 35}, 5, 3, 1, 1, 1, true),
        s("5x5 p2 groups=2 wide rows", {1, 4, 6, 18}, 6, 5, 1, 2, 2, false),
        // 4 groups of 2 output channels: the direct weight gradient's threads each take blocks
        // of more than one group.
        s("3x3 groups=4 wide rows", {2, 8, 4, 17}, 8, 3, 1, 1, 4, true),
        // Rows of whole vectors and whole blocks of output channels: the direct weight gradient
        // reads dy's planes in place (two groups of 8).
        s("3x3 groups=2 rows of 32", {2, 4, 3, 32}, 16, 3, 1, 1, 2, true),
        // Stride 2 on rows of 32 pixels and more: the data gradient is written phase by phase
        // (col2im_write_channel_s2), every parity of tap and column, an odd last column.
        s("3x3 s2 p1 rows of 33", {1, 2, 5, 33}, 3, 3, 2, 1, 1, true),
        s("2x2 s2 p0 rows of 32", {1, 2, 4, 32}, 3, 2, 2, 0, 1, false),
        s("1x1 s2 rows of 32", {2, 3, 3, 32}, 2, 1, 2, 0, 1, false),
        // The paths each fast variant chooses by shape (conv2d_implicit.cpp, conv2d_depthwise.cpp):
        s2("3x2 kernel wide rows", {2, 3, 6, 20}, 4, 3, 2, 1, 1, 1, true),  // KH != KW everywhere
        s("3x3 s2 p0", {1, 2, 7, 7}, 3, 3, 2, 0, 1, true),
        s("1x1 p1 (dx not a convolution)", {1, 2, 4, 4}, 3, 1, 1, 1, 1, false),
        s("4x4 p1 wide rows (taps 3 + 1)", {1, 2, 5, 20}, 3, 4, 1, 1, 1, false),
        s("depthwise 3x3 s2 p0 bias", {2, 3, 7, 7}, 3, 3, 2, 0, 3, true),
        // 32 channels × 9 taps = 288 rows of col: two blocks of K for the rows read in place.
        s("3x3 wide rows, 288 = 256 + 32 taps", {2, 32, 5, 34}, 8, 3, 1, 1, 1, false, false),
        // Rows one pixel short of a panel (15 with AVX2): read in place all the same (one
        // column of the panel computed and dropped), in the forward pass and in dx as a
        // convolution.
        s("3x3 rows one short of a panel", {2, 3, kGemmNR - 1, kGemmNR - 1}, 5, 3, 1, 1, 1, true),
        // im2col's backward multiplies several images at once on small maps (about 1024
        // columns, an even number of products): 69 images of 4×4 in products of 35 + 34, 5 of
        // 16×16 in 3 + 2 (one weight-gradient chunk of two products), 48 of 8×8 with groups in
        // 4 products of 12.
        s("4x4 maps, 69 images", {69, 2, 4, 4}, 3, 3, 1, 1, 1, true, false),
        s("16x16 maps, 5 images", {5, 2, 16, 16}, 3, 3, 1, 1, 1, false, false),
        s("8x8 maps, 48 images, groups=2", {48, 4, 8, 8}, 6, 3, 1, 1, 2, false, false),
        // implicit's packed panels run across images: 3 images of 7×7 are 147 pixels, panels
        // of NR that straddle two images and a short last one; 35 images of 3×3, panels over
        // two or three images, several periods of the panel plans (with groups too), a last
        // panel spanning images; 288 taps (two K blocks) on panels that span images; stride 2
        // on 5×5 outputs.
        s("7x7 maps, panels across images, bias", {3, 4, 7, 7}, 5, 3, 1, 1, 1, true, false),
        s("3x3 maps, 35 images", {35, 4, 3, 3}, 5, 3, 1, 1, 1, true, false),
        s("3x3 maps, 35 images, groups=2", {35, 4, 3, 3}, 6, 3, 1, 1, 2, true, false),
        s("7x7 maps, 288 taps, 20 images", {20, 32, 7, 7}, 8, 3, 1, 1, 1, false, false),
        s("3x3 s2 on 9x9, 20 images", {20, 4, 9, 9}, 5, 3, 2, 1, 1, false, false),
        // Stride 2 on even maps reads the phase planes in place (conv2d_implicit.cpp): 8×31
        // outputs, panels across output rows and a short last one; with groups, 288 taps per
        // group (two K blocks) and whole blocks of 8 output channels on 8×8 outputs, whose
        // weight gradient runs down the phase planes (the direct kernel).
        s("3x3 s2 p1 8x31 outputs (phase planes), bias", {2, 3, 16, 62}, 5, 3, 2, 1, 1, true, false),
        s("3x3 s2 p1 groups=2, 288 taps per group (phase planes)", {2, 64, 16, 16}, 16, 3, 2, 1, 2, true, false),
        // Wide layers take the weight gradient as one GEMM over the batch (128 output channels
        // and 1024 taps per group and up): pixels of several images in one block of its depth,
        // stride 2, groups.
        s("128->128 3x3 maps, 5 images (dw as one GEMM)", {5, 128, 3, 3}, 128, 3, 1, 1, 1, true, false),
        s("128->128 s2 on 5x5, 3 images (dw as one GEMM)", {3, 128, 5, 5}, 128, 3, 2, 1, 1, false, false),
        s("groups=2 256->256 on 4x4 (dw as one GEMM)", {2, 256, 4, 4}, 256, 3, 1, 1, 2, false, false),
        // 115 channels × 9 taps = 1035 columns, not whole panels; 300 pixels deep, so the second
        // block of depth starts in the middle of a row of the third image.
        s("115->128 on 10x10, 3 images (dw as one GEMM, two depth blocks)", {3, 115, 10, 10}, 128, 3, 1, 1, 1, false, false),
        // A row of tiles longer than a chunk of tiles (conv2d_winograd.cpp: at most 16 panels,
        // 256 tiles with AVX2, 512 with AVX-512): 550 tiles of 2×2, 275 of 4×4, split between
        // chunks.
        s("3x3 s1 p1 rows of 1100", {1, 2, 3, 1100}, 3, 3, 1, 1, 1, true, false),
        s("resnet20 stem 3->16 32x32", {16, 3, 32, 32}, 16, 3, 1, 1, 1, false, false),
        s("resnet20 layer1 16->16 32x32", {16, 16, 32, 32}, 16, 3, 1, 1, 1, false, false),
        s("resnet20 layer2 16->32 s2", {16, 16, 32, 32}, 32, 3, 2, 1, 1, false, false),
        s("resnet20 layer3 64->64 8x8", {16, 64, 8, 8}, 64, 3, 1, 1, 1, false, false),
        s("mobilenetv2 pointwise 96->24 16x16", {16, 96, 16, 16}, 24, 1, 1, 0, 1, false, false),
        s("mobilenetv2 depthwise 96 16x16", {16, 96, 16, 16}, 96, 3, 1, 1, 96, false, false),
    };
  };

  Variant ref;
  ref.name = "reference";
  ref.forward = [](ForwardCtx& c) {
    Conv2dShape s = conv2d_shape(c.inputs, c.attrs);
    Tensor y = Tensor::empty(c.out_shape, c.inputs[0].dtype());
    with_floating(y.dtype(), "conv2d", [&](auto t) {
      using T = decltype(t);
      const T* b = c.inputs.size() == 3 ? c.inputs[2].data<T>() : nullptr;
      conv2d_forward_reference(c.inputs[0].data<T>(), c.inputs[1].data<T>(), b, y.data<T>(), s);
    });
    return y;
  };
  ref.backward = [](BackwardCtx& c) {
    Conv2dShape s = conv2d_shape(c.inputs, c.attrs);
    Tensors g;
    for (size_t i = 0; i < c.inputs.size(); ++i) g.push_back(grad_buffer(c.needs_grad[i], c.inputs[i]));
    g.resize(3);
    with_floating(c.dy.dtype(), "conv2d", [&](auto t) {
      using T = decltype(t);
      conv2d_backward_reference(c.inputs[0].data<T>(), c.inputs[1].data<T>(), c.dy.data<T>(), ptr_or_null<T>(g[0]),
                                ptr_or_null<T>(g[1]), ptr_or_null<T>(g[2]), s);
    });
    g.resize(c.inputs.size());
    return g;
  };
  Variant depthwise = f32_variant("depthwise", conv2d_forward_depthwise, conv2d_backward_depthwise);
  depthwise.supports = [](const Tensors& in, const Attrs& a) {
    return all_f32(in) && conv2d_is_depthwise(conv2d_shape(in, a));
  };
  Variant winograd = f32_variant("winograd", conv2d_forward_winograd, conv2d_backward_winograd,
                                 {conv2d_backward_winograd_add_dx, conv2d_winograd_applies},
                                 conv2d_forward_winograd_stats);
  winograd.supports = [](const Tensors& in, const Attrs& a) {
    return all_f32(in) && conv2d_winograd_applies(conv2d_shape(in, a));
  };
  // Where the fewer multiply-adds outrun the transforms (conv2d_winograd.h), per pass. Measured
  // with edl_bench layers/conv2d (batch 128, 2 threads, medians of 3 rounds, 270ccb6; forward /
  // dx / dw, ms):
  //   winograd4 (F(4×4)) on maps of 7×7 and up: ResNet-18's 64 → 64 on 32×32 41 / 40 / 49
  //     against implicit's 80 / 83 / 110; airbench's 24 → 64 on 31×31 20 / 21 / 24 against
  //     30 / 33 / 39, its 256 → 256 on 7×7 39 / 43 / 46 against 71 / 73 / 82 (F(2×2): 43 /
  //     44 / 52); ResNet-20's 32 → 32 on 16×16 5.3 / 5.6 / 6.6 against 5.6 / 6.1 / 15.8 (dw
  //     since implicit's direct kernel was rewritten: a tie, 6.7 against 6.7). With 16
  //     channels the transforms cost about what the products save: ResNet-20's 16 → 16 on
  //     32×32 6.4 / 7.0 against 6.1 / 6.5, and in dw 8.3 against implicit's direct kernel's
  //     6.5 (1 thread 14.5 against 10.3; medians of 5 rounds). On 4×4 and 3×3 maps most of a
  //     4×4 tile is edge.
  //   winograd (F(2×2)) on smaller maps: ResNet-18's 512 → 512 on 4×4 54 / 56 / 53 against
  //     implicit's 94 / 105 / 100 and winograd4's 63 / 65 / 78; on 3×3 maps a tie (airbench's
  //     256 → 256: 16 / 19 / 17 against 17 / 16 / 17), left to implicit.
  // (dx is the convolution of dy from OC to C channels, conv2d_winograd.cpp: the rules below ask
  // for as many channels on both sides, so they read the same for it.) So: winograd4 on maps
  // of 7×7 and up from 24 channels in and out, and for dw from 16 where implicit's weight
  // gradient would be a GEMM (conv2d_implicit_wgrad_is_direct false: rows under NR pixels, say);
  // winograd for 64 → 64 channels and more on maps of 4×4 and up (below 7×7, in effect);
  // implicit elsewhere. The bias's gradient comes with dw's.
  winograd.chosen_when = [](const Tensors& in, const Attrs& a, Pass) {
    const Conv2dShape s = conv2d_shape(in, a);
    return s.C >= 64 && s.OC >= 64 && s.H >= 4 && s.W >= 4;
  };
  Variant winograd4 = f32_variant("winograd4", conv2d_forward_winograd4, conv2d_backward_winograd4,
                                  {conv2d_backward_winograd4_add_dx, conv2d_winograd_applies},
                                  conv2d_forward_winograd4_stats);
  winograd4.supports = winograd.supports;
  winograd4.chosen_when = [](const Tensors& in, const Attrs& a, Pass pass) {
    const Conv2dShape s = conv2d_shape(in, a);
    const int64_t channels = pass.grad_of >= 1 && !conv2d_implicit_wgrad_is_direct(s) ? 16 : 24;
    return s.C >= channels && s.OC >= channels && s.H >= 7 && s.W >= 7;
  };
  Variant dense = f32_variant("dense", conv2d_forward_dense, conv2d_backward_dense);
  dense.supports = [](const Tensors& in, const Attrs& a) {
    if (!all_f32(in)) return false;
    const Conv2dShape s = conv2d_shape(in, a);
    return s.groups == 1 && conv2d_dense_matrix_size(s) <= kDenseMatrixMax;
  };
  // On maps no larger than the kernel, where T has no more entries than the convolution counts
  // multiply-adds (conv2d_dense.h), from 32 channels in and out. Measured on airbench's
  // 256 → 256 on 3×3 maps: in its training steps (batch 1024, 2 threads, edl train --profile,
  // two alternating runs) forward 1.35× and backward 1.5× faster than implicit; edl_bench
  // layers/conv2d at batch 128 (medians of 3 interleaved rounds, forward / dx / dw): 1 thread
  // 1.28× / 1.12× / 1.33× implicit's speed, 2 threads 1.07× / 0.92× / 1.27×.
  dense.chosen_when = [](const Tensors& in, const Attrs& a, Pass) {
    const Conv2dShape s = conv2d_shape(in, a);
    return s.H * s.W <= s.KH * s.KW && s.C >= 32 && s.OC >= 32;
  };
  op.variants = {ref,
                 depthwise,
                 dense,
                 winograd4,
                 winograd,
                 f32_variant("implicit", conv2d_forward_implicit, conv2d_backward_implicit,
                             {conv2d_backward_implicit_add_dx}, conv2d_forward_implicit_stats),
                 f32_variant("im2col", conv2d_forward_im2col, conv2d_backward_im2col, {conv2d_backward_im2col_add_dx})};
  op.gradients_dispatched = true;
  return op;
}

}  // namespace edl
