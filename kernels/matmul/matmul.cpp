// matmul.cpp — op definition of matmul: (M,K) x (K,N) -> (M,N).
// Variants: reference (plain loops), gemm (edl's blocked GEMM, the default), eigen (baseline
// and second oracle).
#include "kernels/common/gemm.h"
#include "kernels/common/op_util.h"
#include "kernels/matmul/matmul_eigen.h"
#include "kernels/matmul/matmul_reference.h"

namespace edl {

OpDef make_matmul() {
  OpDef op;
  op.name = "matmul";
  op.summary = "y = a · b for 2-d a (M,K) and b (K,N)";
  op.min_inputs = op.max_inputs = 2;
  op.shape = [](const Tensors& in, const Attrs&) {
    expect_same_floating("matmul", in);
    expect_ndim("matmul", "a", in[0], 2, "(M,K)");
    expect_ndim("matmul", "b", in[1], 2, "(K,N)");
    EDL_CHECK(in[0].dim(1) == in[1].dim(0), "matmul: a is {} and b is {}: inner dimensions {} and {} differ",
              shape_str(in[0].shape()), shape_str(in[1].shape()), in[0].dim(1), in[1].dim(0));
    return Shape{in[0].dim(0), in[1].dim(1)};
  };
  op.flops = [](const Tensors& in, const Attrs&) {
    return 2.0 * static_cast<double>(in[0].dim(0) * in[1].dim(1) * in[0].dim(1));
  };
  op.samples = [] {
    auto s = [](std::string name, int64_t M, int64_t N, int64_t K, bool grad = true) {
      return Sample{std::move(name), {{{M, K}}, {{K, N}}}, {}, grad};
    };
    return std::vector<Sample>{
        s("1x1x1", 1, 1, 1),         s("7x5x3", 7, 5, 3),      s("prime 13x17x11", 13, 17, 11),
        s("tall 33x4x9", 33, 4, 9),
        // Sizes around the GEMM's tiles (MR 6/8/12, NR 8/12/16/32) and blocks (KC 256, MC, NC 4096).
        s("tile edges 7x17x5", 7, 17, 5),   s("exact tile 6x16x8", 6, 16, 8),
        s("tile edges 13x33x257", 13, 33, 257, false), s("K blocks 5x9x513", 5, 9, 513, false),
        s("M blocks 241x20x7", 241, 20, 7, false),    s("N blocks 3x4097x5", 3, 4097, 5, false),
        s("256^3", 256, 256, 256, false),
        s("resnet20 layer3 im2col M=64 N=8192 K=576", 64, 8192, 576, false),
    };
  };

  auto dims = [](const Tensors& in) { return std::array<int64_t, 3>{in[0].dim(0), in[1].dim(1), in[0].dim(1)}; };

  Variant ref;
  ref.name = "reference";
  ref.forward = [dims](ForwardCtx& c) {
    auto [M, N, K] = dims(c.inputs);
    Tensor y = Tensor::empty(c.out_shape, c.inputs[0].dtype());
    with_floating(y.dtype(), "matmul", [&](auto t) {
      using T = decltype(t);
      matmul_forward_reference(c.inputs[0].data<T>(), c.inputs[1].data<T>(), y.data<T>(), M, N, K);
    });
    return y;
  };
  ref.backward = [dims](BackwardCtx& c) {
    auto [M, N, K] = dims(c.inputs);
    Tensor da = grad_buffer(c.needs_grad[0], c.inputs[0]), db = grad_buffer(c.needs_grad[1], c.inputs[1]);
    with_floating(c.dy.dtype(), "matmul", [&](auto t) {
      using T = decltype(t);
      matmul_backward_reference(c.inputs[0].data<T>(), c.inputs[1].data<T>(), c.dy.data<T>(), ptr_or_null<T>(da),
                                ptr_or_null<T>(db), M, N, K);
    });
    return Tensors{da, db};
  };

  // The three products as strided views for gemm_f32: y = a·b, da = dy·bᵀ, db = aᵀ·dy.
  Variant gemm;
  gemm.name = "gemm";
  gemm.forward = [dims](ForwardCtx& c) {
    auto [M, N, K] = dims(c.inputs);
    Tensor y = Tensor::empty(c.out_shape, DType::f32);
    gemm_f32(M, N, K, {c.inputs[0].data<float>(), K, 1}, {c.inputs[1].data<float>(), N, 1}, y.data<float>(), N);
    return y;
  };
  gemm.backward = [dims](BackwardCtx& c) {
    auto [M, N, K] = dims(c.inputs);
    Tensor da = grad_buffer(c.needs_grad[0], c.inputs[0]), db = grad_buffer(c.needs_grad[1], c.inputs[1]);
    const float *a = c.inputs[0].data<float>(), *b = c.inputs[1].data<float>(), *dy = c.dy.data<float>();
    if (da.defined()) gemm_f32(M, K, N, {dy, N, 1}, {b, 1, N}, da.data<float>(), K);
    if (db.defined()) gemm_f32(K, N, M, {a, 1, K}, {dy, N, 1}, db.data<float>(), N);
    return Tensors{da, db};
  };

  Variant eigen;
  eigen.name = "eigen";
  eigen.forward = [dims](ForwardCtx& c) {
    auto [M, N, K] = dims(c.inputs);
    Tensor y = Tensor::empty(c.out_shape, DType::f32);
    matmul_forward_eigen(c.inputs[0].data<float>(), c.inputs[1].data<float>(), y.data<float>(), M, N, K);
    return y;
  };
  eigen.backward = [dims](BackwardCtx& c) {
    auto [M, N, K] = dims(c.inputs);
    Tensor da = grad_buffer(c.needs_grad[0], c.inputs[0]), db = grad_buffer(c.needs_grad[1], c.inputs[1]);
    matmul_backward_eigen(c.inputs[0].data<float>(), c.inputs[1].data<float>(), c.dy.data<float>(),
                          ptr_or_null<float>(da), ptr_or_null<float>(db), M, N, K);
    return Tensors{da, db};
  };
  eigen.automatic = false;  // a baseline: edl's own kernels are the default

  op.variants = {ref, gemm, eigen};
  return op;
}

}  // namespace edl
