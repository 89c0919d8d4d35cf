// linear.cpp — op definition of linear: x (N,IN), w (OUT,IN), optional b (OUT) -> (N,OUT).
// Variants: reference (plain loops), gemm (edl's blocked GEMM, the default), eigen (baseline
// and second oracle).
#include "kernels/common/gemm.h"
#include "kernels/common/op_util.h"
#include "kernels/linear/linear_reference.h"
#include "kernels/matmul/matmul_eigen.h"

namespace edl {

OpDef make_linear() {
  OpDef op;
  op.name = "linear";
  op.summary = "y = x · wᵀ + b (fully connected layer)";
  op.min_inputs = 2;
  op.max_inputs = 3;
  op.shape = [](const Tensors& in, const Attrs&) {
    expect_same_floating("linear", in);
    expect_ndim("linear", "x", in[0], 2, "(N,IN)");
    expect_ndim("linear", "weight", in[1], 2, "(OUT,IN)");
    EDL_CHECK(in[0].dim(1) == in[1].dim(1), "linear: x is {} but weight is {}: expected weight (OUT, IN={})",
              shape_str(in[0].shape()), shape_str(in[1].shape()), in[0].dim(1));
    if (in.size() == 3) expect_shape("linear", "bias", in[2], {in[1].dim(0)});
    return Shape{in[0].dim(0), in[1].dim(0)};
  };
  op.flops = [](const Tensors& in, const Attrs&) {
    return 2.0 * static_cast<double>(in[0].dim(0) * in[0].dim(1) * in[1].dim(0));
  };
  op.samples = [] {
    auto s = [](std::string name, int64_t N, int64_t IN, int64_t OUT, bool bias, bool grad = true) {
      Sample smp{std::move(name), {{{N, IN}}, {{OUT, IN}}}, {}, grad};
      if (bias) smp.inputs.push_back({{OUT}});
      return smp;
    };
    return std::vector<Sample>{
        s("1x1->1", 1, 1, 1, true),          s("4x7->5 no bias", 4, 7, 5, false),
        s("prime 11x13->17", 11, 13, 17, true), s("cifar head 128x64->10", 128, 64, 10, true, false),
        s("resnet18 head 128x512->100", 128, 512, 100, true, false),
    };
  };

  Variant ref;
  ref.name = "reference";
  ref.forward = [](ForwardCtx& c) {
    const Tensor &x = c.inputs[0], &w = c.inputs[1];
    Tensor y = Tensor::empty(c.out_shape, x.dtype());
    with_floating(x.dtype(), "linear", [&](auto t) {
      using T = decltype(t);
      const T* b = c.inputs.size() == 3 ? c.inputs[2].data<T>() : nullptr;
      linear_forward_reference(x.data<T>(), w.data<T>(), b, y.data<T>(), x.dim(0), x.dim(1), w.dim(0));
    });
    return y;
  };
  ref.backward = [](BackwardCtx& c) {
    const Tensor &x = c.inputs[0], &w = c.inputs[1];
    Tensors g{grad_buffer(c.needs_grad[0], x), grad_buffer(c.needs_grad[1], w)};
    if (c.inputs.size() == 3) g.push_back(grad_buffer(c.needs_grad[2], c.inputs[2]));
    else g.emplace_back();
    with_floating(x.dtype(), "linear", [&](auto t) {
      using T = decltype(t);
      linear_backward_reference(x.data<T>(), w.data<T>(), c.dy.data<T>(), ptr_or_null<T>(g[0]), ptr_or_null<T>(g[1]),
                                ptr_or_null<T>(g[2]), x.dim(0), x.dim(1), w.dim(0));
    });
    g.resize(c.inputs.size());
    return g;
  };

  // y = x·wᵀ + b with the bias in the GEMM's epilogue; dx = dy·w; dw = dyᵀ·x. The transposes
  // are strided views: no copies.
  Variant gemm;
  gemm.name = "gemm";
  gemm.forward = [](ForwardCtx& c) {
    const Tensor &x = c.inputs[0], &w = c.inputs[1];
    const int64_t N = x.dim(0), IN = x.dim(1), OUT = w.dim(0);
    Tensor y = Tensor::empty(c.out_shape, DType::f32);
    GemmEpilogue ep;
    ep.bias_col = c.inputs.size() == 3 ? c.inputs[2].data<float>() : nullptr;
    gemm_f32(N, OUT, IN, {x.data<float>(), IN, 1}, {w.data<float>(), 1, IN}, y.data<float>(), OUT, ep);
    return y;
  };
  gemm.backward = [](BackwardCtx& c) {
    const Tensor &x = c.inputs[0], &w = c.inputs[1];
    const int64_t N = x.dim(0), IN = x.dim(1), OUT = w.dim(0);
    Tensors g{grad_buffer(c.needs_grad[0], x), grad_buffer(c.needs_grad[1], w)};
    const float* dy = c.dy.data<float>();
    if (g[0].defined()) gemm_f32(N, IN, OUT, {dy, OUT, 1}, {w.data<float>(), IN, 1}, g[0].data<float>(), IN);
    if (g[1].defined()) gemm_f32(OUT, IN, N, {dy, 1, OUT}, {x.data<float>(), IN, 1}, g[1].data<float>(), IN);
    if (c.inputs.size() == 3) {
      g.push_back(grad_buffer(c.needs_grad[2], c.inputs[2]));
      if (g[2].defined())
        for (int64_t n = 0; n < N; ++n)
          for (int64_t o = 0; o < OUT; ++o) g[2].data<float>()[o] += dy[n * OUT + o];
    }
    return g;
  };

  // x·wᵀ is a GEMM with b = wᵀ; Eigen takes the transpose as a free view.
  Variant eigen;
  eigen.name = "eigen";
  eigen.automatic = false;  // a baseline: edl's own kernels are the default
  eigen.forward = [](ForwardCtx& c) {
    const Tensor &x = c.inputs[0], &w = c.inputs[1];
    Tensor y = Tensor::empty(c.out_shape, DType::f32);
    EigenMap Y(y.data<float>(), x.dim(0), w.dim(0));
    Y.noalias() = EigenConstMap(x.data<float>(), x.dim(0), x.dim(1)) *
                  EigenConstMap(w.data<float>(), w.dim(0), w.dim(1)).transpose();
    if (c.inputs.size() == 3)
      Y.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(c.inputs[2].data<float>(), w.dim(0));
    return y;
  };
  eigen.backward = [](BackwardCtx& c) {
    const Tensor &x = c.inputs[0], &w = c.inputs[1];
    Tensors g{grad_buffer(c.needs_grad[0], x), grad_buffer(c.needs_grad[1], w)};
    EigenConstMap X(x.data<float>(), x.dim(0), x.dim(1)), W(w.data<float>(), w.dim(0), w.dim(1)),
        DY(c.dy.data<float>(), x.dim(0), w.dim(0));
    if (g[0].defined()) EigenMap(g[0].data<float>(), x.dim(0), x.dim(1)).noalias() = DY * W;
    if (g[1].defined()) EigenMap(g[1].data<float>(), w.dim(0), w.dim(1)).noalias() = DY.transpose() * X;
    if (c.inputs.size() == 3) {
      g.push_back(grad_buffer(c.needs_grad[2], c.inputs[2]));
      if (g[2].defined()) Eigen::Map<Eigen::RowVectorXf>(g[2].data<float>(), w.dim(0)) = DY.colwise().sum();
    }
    return g;
  };

  op.variants = {ref, gemm, eigen};
  return op;
}

}  // namespace edl
