// dropout.cpp — op definition of dropout. Attributes: p (0.5), seed, training (1).
// In evaluation (training = 0) or with p = 0 it is the identity.
// Variants: reference.
#include "kernels/common/op_util.h"
#include "kernels/dropout/dropout_reference.h"

namespace edl {

static bool dropout_active(const Attrs& a) { return a.i("training", 1) != 0 && a.f("p", 0.5) > 0; }

OpDef make_dropout() {
  OpDef op;
  op.name = "dropout";
  op.summary = "zero each element with probability p in training, scale the rest by 1/(1-p)";
  op.shape = [](const Tensors& in, const Attrs& a) {
    expect_floating("dropout", "x", in[0]);
    double p = a.f("p", 0.5);
    EDL_CHECK(p >= 0 && p < 1, "dropout: p must be in [0, 1), got {}", p);
    return in[0].shape();
  };
  op.flops = [](const Tensors& in, const Attrs&) { return static_cast<double>(in[0].numel()); };
  op.samples = [] {
    auto s = [](std::string name, Shape x, double p, int64_t training, bool grad = true) {
      return Sample{std::move(name), {{x}}, {{"p", p}, {"seed", 7}, {"training", training}}, grad};
    };
    return std::vector<Sample>{s("p=0.5", {4, 5}, 0.5, 1), s("p=0.1 4-d", {2, 3, 2, 2}, 0.1, 1),
                               s("eval", {3, 4}, 0.5, 0), s("vgg head 128x512", {128, 512}, 0.5, 1, false)};
  };
  Variant ref;
  ref.name = "reference";
  ref.forward = [](ForwardCtx& c) {
    const Tensor& x = c.inputs[0];
    if (!dropout_active(c.attrs)) return x.clone();
    Tensor y = Tensor::empty(c.out_shape, x.dtype());
    with_floating(x.dtype(), "dropout", [&](auto t) {
      using T = decltype(t);
      dropout_forward_reference(x.data<T>(), y.data<T>(), x.numel(), c.attrs.f("p", 0.5),
                                static_cast<uint64_t>(c.attrs.i("seed", 0)));
    });
    return y;
  };
  ref.backward = [](BackwardCtx& c) {
    if (!dropout_active(c.attrs)) return Tensors{c.dy.clone()};
    Tensor dx = Tensor::zeros(c.dy.shape(), c.dy.dtype());
    with_floating(dx.dtype(), "dropout", [&](auto t) {
      using T = decltype(t);
      dropout_backward_reference(c.dy.data<T>(), dx.data<T>(), dx.numel(), c.attrs.f("p", 0.5),
                                 static_cast<uint64_t>(c.attrs.i("seed", 0)));
    });
    return Tensors{dx};
  };
  op.variants = {ref};
  return op;
}

}  // namespace edl
