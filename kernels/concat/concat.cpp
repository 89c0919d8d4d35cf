// concat.cpp — op definition of concat: any number of tensors joined along `dim` (default 1,
// the channels of NCHW, as DenseNet needs). All other dimensions must agree.
// Variants: reference, copy (concat_copy.h).
#include "kernels/common/op_util.h"
#include "kernels/concat/concat_copy.h"
#include "kernels/concat/concat_reference.h"

namespace edl {

struct ConcatDims {
  int64_t dim, outer, inner;
  std::vector<int64_t> lens;
};

static ConcatDims concat_dims(const Tensors& in, const Attrs& a) {
  const Shape& s0 = in[0].shape();
  const int64_t nd = static_cast<int64_t>(s0.size());
  int64_t dim = a.i("dim", 1);
  if (dim < 0) dim += nd;
  EDL_CHECK(dim >= 0 && dim < nd, "concat: dim {} out of range for {}-d inputs", a.i("dim", 1), nd);
  ConcatDims d{dim, 1, 1, {}};
  for (int64_t k = 0; k < dim; ++k) d.outer *= s0[k];
  for (int64_t k = dim + 1; k < nd; ++k) d.inner *= s0[k];
  for (size_t i = 0; i < in.size(); ++i) {
    Shape si = in[i].shape();
    bool ok = static_cast<int64_t>(si.size()) == nd;
    for (int64_t k = 0; ok && k < nd; ++k) ok = k == dim || si[k] == s0[k];
    EDL_CHECK(ok, "concat: input {} has shape {}, input 0 has {}: all dimensions but {} must match", i, shape_str(si),
              shape_str(s0), dim);
    d.lens.push_back(si[dim]);
  }
  return d;
}

// y from the inputs by `kernel(xs, lens, y, outer, inner)` (a forward kernel of either variant).
template <class Kernel>
static Tensor concat_forward(ForwardCtx& c, Kernel kernel) {
  ConcatDims d = concat_dims(c.inputs, c.attrs);
  Tensor y = Tensor::empty(c.out_shape, c.inputs[0].dtype());
  with_floating(y.dtype(), "concat", [&](auto t) {
    using T = decltype(t);
    std::vector<const T*> xs;
    for (const Tensor& x : c.inputs) xs.push_back(x.data<T>());
    kernel(xs, d.lens, y.data<T>(), d.outer, d.inner);
  });
  return y;
}

OpDef make_concat() {
  OpDef op;
  op.name = "concat";
  op.summary = "join tensors along a dimension (channels by default)";
  op.min_inputs = 1;
  op.max_inputs = -1;
  op.shape = [](const Tensors& in, const Attrs& a) {
    expect_same_floating("concat", in);
    ConcatDims d = concat_dims(in, a);
    Shape y = in[0].shape();
    y[d.dim] = 0;
    for (int64_t len : d.lens) y[d.dim] += len;
    return y;
  };
  op.flops = [](const Tensors&, const Attrs&) { return 0.0; };
  op.samples = [] {
    return std::vector<Sample>{
        {"channels 2+3", {{{2, 2, 3, 3}}, {{2, 3, 3, 3}}}, {}, true},
        {"three inputs", {{{1, 1, 2, 2}}, {{1, 4, 2, 2}}, {{1, 2, 2, 2}}}, {}, true},
        {"dim 0", {{{2, 3}}, {{4, 3}}}, {{"dim", 0}}, true},
        {"densenet 16x(64+32)x16x16", {{{16, 64, 16, 16}}, {{16, 32, 16, 16}}}, {}, false},
    };
  };
  Variant ref;
  ref.name = "reference";
  ref.forward = [](ForwardCtx& c) {
    return concat_forward(c, [](const auto& xs, const auto& lens, auto* y, int64_t outer, int64_t inner) {
      concat_forward_reference(xs, lens, y, outer, inner);
    });
  };
  ref.backward = [](BackwardCtx& c) {
    ConcatDims d = concat_dims(c.inputs, c.attrs);
    Tensors g;
    for (size_t i = 0; i < c.inputs.size(); ++i) g.push_back(grad_buffer(c.needs_grad[i], c.inputs[i]));
    with_floating(c.dy.dtype(), "concat", [&](auto t) {
      using T = decltype(t);
      std::vector<T*> dxs;
      for (Tensor& dx : g) dxs.push_back(ptr_or_null<T>(dx));
      concat_backward_reference(c.dy.data<T>(), dxs, d.lens, d.outer, d.inner);
    });
    return g;
  };
  // Block copies in parallel; the backward writes fresh gradients (no zeroed buffer) or adds
  // into those already held (BackwardCtx::grad_into).
  Variant copy;
  copy.name = "copy";
  copy.supports = [](const Tensors&, const Attrs&) { return true; };  // any floating type
  copy.forward = [](ForwardCtx& c) {
    return concat_forward(c, [](const auto& xs, const auto& lens, auto* y, int64_t outer, int64_t inner) {
      concat_forward_copy(xs, lens, y, outer, inner);
    });
  };
  copy.backward = [](BackwardCtx& c) {
    ConcatDims d = concat_dims(c.inputs, c.attrs);
    Tensors g;
    std::vector<bool> add;
    for (size_t i = 0; i < c.inputs.size(); ++i) {
      add.push_back(c.needs_grad[i] && c.grad_into[i].defined());
      const Tensor& x = c.inputs[i];
      g.push_back(!c.needs_grad[i] ? Tensor() : add.back() ? c.grad_into[i] : Tensor::empty(x.shape(), x.dtype()));
    }
    with_floating(c.dy.dtype(), "concat", [&](auto t) {
      using T = decltype(t);
      std::vector<T*> dxs;
      for (Tensor& dx : g) dxs.push_back(ptr_or_null<T>(dx));
      concat_backward_copy(c.dy.data<T>(), dxs, add, d.lens, d.outer, d.inner);
    });
    return g;
  };
  op.variants = {ref, copy};
  return op;
}

}  // namespace edl
