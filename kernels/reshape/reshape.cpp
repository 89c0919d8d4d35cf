// reshape.cpp — op definition of reshape: the same elements under a new shape.
//
// Attribute: shape (list of ints; one may be -1 and is inferred). Storage is always
// contiguous, so forward returns a view that shares x's storage (no copy), and backward
// reshapes dy back to x's shape. flatten is reshape to (N, -1).
// Variants: reference.
#include "kernels/common/op_util.h"

namespace edl {

OpDef make_reshape() {
  OpDef op;
  op.name = "reshape";
  op.summary = "view of x with a new shape (one dimension may be -1)";
  op.shape = [](const Tensors& in, const Attrs& a) {
    EDL_CHECK(a.has("shape"), "reshape: missing attribute 'shape'");
    try {
      return in[0].view(a.ints("shape")).shape();
    } catch (const Error& e) {
      throw Error(fmt::format("reshape: cannot reshape {} to {}: {}", shape_str(in[0].shape()),
                              shape_str(a.ints("shape")), e.what()));
    }
  };
  op.flops = [](const Tensors&, const Attrs&) { return 0.0; };
  op.samples = [] {
    auto s = [](std::string name, Shape x, std::vector<int64_t> shape) {
      return Sample{std::move(name), {{x}}, {{"shape", shape}}, true};
    };
    return std::vector<Sample>{s("flatten", {2, 3, 4, 4}, {2, -1}), s("to 1-d", {3, 5}, {15}),
                               s("split a dim", {6, 4}, {2, 3, 4})};
  };
  Variant ref;
  ref.name = "reference";
  ref.forward = [](ForwardCtx& c) { return c.inputs[0].view(c.out_shape); };
  // A fresh copy: gradients handed to autograd must not alias each other.
  ref.backward = [](BackwardCtx& c) { return Tensors{c.dy.clone().view(c.inputs[0].shape())}; };
  op.variants = {ref};
  return op;
}

}  // namespace edl
