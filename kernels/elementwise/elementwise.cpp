// elementwise.cpp — op definitions of add, sub, mul (broadcasting).
// Variants: reference (any broadcast, f32 and f64), simd (f32; b the same shape as a, or b
// broadcast along one dimension of a: per channel, per row, or a scalar).
#include <algorithm>
#include <optional>

#include "kernels/common/op_util.h"
#include "kernels/elementwise/elementwise_reference.h"
#include "kernels/elementwise/elementwise_simd.h"

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

// How a call looks to the simd kernels, when they handle it: y has a's shape and b is either
// a's shape or one value per index of a single dimension d of a (C = a's size along d). A scalar
// b is C = 1 over planes of a's last two dimensions, so that the forward loop has planes to
// split across threads and db is summed plane by plane.
static std::optional<BinaryLayout> simd_layout(const Tensor& a, const Tensor& b) {
  if (a.dtype() != DType::f32 || b.dtype() != DType::f32 || a.numel() == 0) return std::nullopt;
  const int64_t n = a.numel();
  if (a.shape() == b.shape()) return BinaryLayout{1, 1, n, true};
  if (b.ndim() > a.ndim()) return std::nullopt;  // y would have more dimensions than a
  if (b.numel() == 1) {
    const int64_t inner = a.ndim() >= 2 ? a.dim(-2) * a.dim(-1) : n;
    return BinaryLayout{n / inner, 1, inner, false};
  }
  const int64_t lead = a.ndim() - b.ndim();  // b's dimension j lines up with a's lead + j
  int64_t d = -1;
  for (int64_t j = 0; j < b.ndim(); ++j) {
    if (b.dim(j) == 1) continue;
    if (d >= 0 || b.dim(j) != a.dim(lead + j)) return std::nullopt;  // two dimensions, or b broadcasts a
    d = lead + j;
  }
  int64_t outer = 1, inner = 1;
  for (int64_t k = 0; k < d; ++k) outer *= a.dim(k);
  for (int64_t k = d + 1; k < a.ndim(); ++k) inner *= a.dim(k);
  return BinaryLayout{outer, a.dim(d), inner, false};
}

static std::vector<Sample> binary_samples() {
  auto s = [](std::string name, Shape a, Shape b, bool grad = true) {
    return Sample{std::move(name), {{a}, {b}}, {}, grad};
  };
  return {
      s("same shape", {3, 5}, {3, 5}),
      // 1, 7, 8, 9, 17 straddle the register widths (4 and 8 floats) of the simd variant.
      s("same shape 1", {1}, {1}),
      s("same shape 7", {7}, {7}),
      s("same shape 8", {8}, {8}),
      s("same shape 9", {9}, {9}),
      s("same shape 17", {17}, {17}),
      s("scalar", {2, 3, 4}, {}),
      s("scalar 1-d prime 37", {37}, {1}),
      s("row broadcast", {4, 7}, {7}),
      s("per-channel (C,1,1)", {2, 3, 4, 5}, {3, 1, 1}),
      s("per-channel plane 7", {2, 3, 1, 7}, {1, 3, 1, 1}),
      s("per-channel plane 9", {2, 2, 3, 3}, {2, 1, 1}),
      s("per-channel plane 17", {3, 2, 1, 17}, {2, 1, 1}),
      s("both broadcast", {4, 1, 3}, {1, 5, 1}),
      s("resnet20 residual 16x32x32", {32, 16, 32, 32}, {32, 16, 32, 32}, false),
      s("per-channel 64x8x8", {32, 64, 8, 8}, {64, 1, 1}, false),
      s("scale by scalar 4x16x32x32", {4, 16, 32, 32}, {}, false),
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

  Variant simd;
  simd.name = "simd";
  simd.supports = [](const Tensors& in, const Attrs&) { return simd_layout(in[0], in[1]).has_value(); };
  simd.forward = [kind](ForwardCtx& c) {
    const Tensor &a = c.inputs[0], &b = c.inputs[1];
    const BinaryLayout s = *simd_layout(a, b);
    Tensor y = Tensor::empty(c.out_shape, a.dtype());
    if (kind == Kind::add) add_forward_simd(a.data<float>(), b.data<float>(), y.data<float>(), s);
    if (kind == Kind::sub) sub_forward_simd(a.data<float>(), b.data<float>(), y.data<float>(), s);
    if (kind == Kind::mul) mul_forward_simd(a.data<float>(), b.data<float>(), y.data<float>(), s);
    return y;
  };
  simd.backward = [kind](BackwardCtx& c) {
    const Tensor &a = c.inputs[0], &b = c.inputs[1];
    const BinaryLayout s = *simd_layout(a, b);
    if (kind == Kind::add && s.same_shape) {
      // A residual connection: both gradients are dy itself. No copies: the second is a view of
      // dy's storage, and autograd sums into a gradient whose storage is shared out of place
      // (autograd.cpp), so neither is ever changed under the other. (Copying dy into two fresh
      // buffers took 2% of a ResNet-20 training step.)
      return Tensors{c.needs_grad[0] ? c.dy : Tensor(), c.needs_grad[1] ? c.dy.view(c.dy.shape()) : Tensor()};
    }
    if (kind == Kind::sub && s.same_shape) {  // da = dy, db = -dy: no zeroed buffers needed
      Tensor da = c.needs_grad[0] ? Tensor::empty(a.shape(), a.dtype()) : Tensor();
      Tensor db = c.needs_grad[1] ? Tensor::empty(b.shape(), b.dtype()) : Tensor();
      add_backward_same_shape_write_simd(c.dy.data<float>(), ptr_or_null<float>(da), ptr_or_null<float>(db), -1.0f,
                                         a.numel());
      return Tensors{da, db};
    }
    Tensor da = grad_buffer(c.needs_grad[0], a), db = grad_buffer(c.needs_grad[1], b);
    if (kind == Kind::mul)
      mul_backward_simd(a.data<float>(), b.data<float>(), c.dy.data<float>(), ptr_or_null<float>(da),
                        ptr_or_null<float>(db), s);
    else
      add_backward_simd(c.dy.data<float>(), ptr_or_null<float>(da), ptr_or_null<float>(db),
                        kind == Kind::add ? 1.0f : -1.0f, s);
    return Tensors{da, db};
  };
  op.variants = {ref, simd};
  return op;
}

OpDef make_add() { return make_binary("add", "y = a + b, with broadcasting", Kind::add); }
OpDef make_sub() { return make_binary("sub", "y = a - b, with broadcasting", Kind::sub); }
OpDef make_mul() { return make_binary("mul", "y = a * b elementwise, with broadcasting", Kind::mul); }

}  // namespace edl
