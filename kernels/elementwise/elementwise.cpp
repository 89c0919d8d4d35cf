// elementwise.cpp — op definitions of add, sub, mul (broadcasting).
#include <algorithm>

#include "kernels/common/op_util.h"
#include "kernels/elementwise/elementwise_reference.h"

namespace edl {

// Shape rule of broadcasting: align trailing dimensions; each pair must be equal or contain 1.
static Broadcast make_broadcast(const std::string& op, const Shape& a, const Shape& b) {
  size_t nd = std::max(a.size(), b.size());
  Broadcast bc;
  bc.y_shape.assign(nd, 1);
  bc.a_stride.assign(nd, 0);
  bc.b_stride.assign(nd, 0);
  int64_t sa = 1, sb = 1;
  for (size_t k = 0; k < nd; ++k) {  // k counts from the last dimension
    size_t d = nd - 1 - k;
    int64_t da = k < a.size() ? a[a.size() - 1 - k] : 1;
    int64_t db = k < b.size() ? b[b.size() - 1 - k] : 1;
    EDL_CHECK(da == db || da == 1 || db == 1, "{}: shapes {} and {} cannot be broadcast (dimension {} is {} vs {})",
              op, shape_str(a), shape_str(b), d, da, db);
    bc.y_shape[d] = std::max(da, db);
    bc.a_stride[d] = da == 1 ? 0 : sa;
    bc.b_stride[d] = db == 1 ? 0 : sb;
    sa *= da;
    sb *= db;
  }
  bc.numel = numel_of(bc.y_shape);
  return bc;
}

static std::vector<Sample> binary_samples() {
  auto s = [](std::string name, Shape a, Shape b, bool grad = true) {
    return Sample{std::move(name), {{a}, {b}}, {}, grad};
  };
  return {
      s("same shape", {3, 5}, {3, 5}),
      s("scalar", {2, 3, 4}, {}),
      s("row broadcast", {4, 7}, {7}),
      s("per-channel (C,1,1)", {2, 3, 4, 5}, {3, 1, 1}),
      s("both broadcast", {4, 1, 3}, {1, 5, 1}),
      s("resnet20 residual 16x32x32", {32, 16, 32, 32}, {32, 16, 32, 32}, false),
      s("per-channel 64x8x8", {32, 64, 8, 8}, {64, 1, 1}, false),
  };
}

// add, sub and mul share everything but their kernels; Kind selects them.
enum class Kind { add, sub, mul };

static OpDef make_binary(const char* name, const char* summary, Kind kind) {
  OpDef op;
  op.name = name;
  op.summary = summary;
  op.min_inputs = op.max_inputs = 2;
  op.shape = [name = op.name](const Tensors& in, const Attrs&) {
    expect_same_floating(name, in);
    return make_broadcast(name, in[0].shape(), in[1].shape()).y_shape;
  };
  op.flops = [](const Tensors& in, const Attrs&) {
    return static_cast<double>(make_broadcast("", in[0].shape(), in[1].shape()).numel);
  };
  op.samples = binary_samples;

  Variant ref;
  ref.name = "reference";
  ref.forward = [kind, name = op.name](ForwardCtx& c) {
    const Tensor &a = c.inputs[0], &b = c.inputs[1];
    Broadcast bc = make_broadcast(name, a.shape(), b.shape());
    Tensor y = Tensor::empty(c.out_shape, a.dtype());
    with_floating(a.dtype(), name.c_str(), [&](auto t) {
      using T = decltype(t);
      if (kind == Kind::add) add_forward_reference(a.data<T>(), b.data<T>(), y.data<T>(), bc);
      if (kind == Kind::sub) sub_forward_reference(a.data<T>(), b.data<T>(), y.data<T>(), bc);
      if (kind == Kind::mul) mul_forward_reference(a.data<T>(), b.data<T>(), y.data<T>(), bc);
    });
    return y;
  };
  ref.backward = [kind, name = op.name](BackwardCtx& c) {
    const Tensor &a = c.inputs[0], &b = c.inputs[1];
    Broadcast bc = make_broadcast(name, a.shape(), b.shape());
    Tensor da = grad_buffer(c.needs_grad[0], a), db = grad_buffer(c.needs_grad[1], b);
    with_floating(a.dtype(), name.c_str(), [&](auto t) {
      using T = decltype(t);
      if (kind == Kind::mul)
        mul_backward_reference(a.data<T>(), b.data<T>(), c.dy.data<T>(), ptr_or_null<T>(da), ptr_or_null<T>(db), bc);
      else
        add_backward_reference(c.dy.data<T>(), ptr_or_null<T>(da), ptr_or_null<T>(db), T(kind == Kind::add ? 1 : -1), bc);
    });
    return Tensors{da, db};
  };
  op.variants = {ref};
  return op;
}

OpDef make_add() { return make_binary("add", "y = a + b, with broadcasting", Kind::add); }
OpDef make_sub() { return make_binary("sub", "y = a - b, with broadcasting", Kind::sub); }
OpDef make_mul() { return make_binary("mul", "y = a * b elementwise, with broadcasting", Kind::mul); }

}  // namespace edl
