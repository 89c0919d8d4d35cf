// registry.h — the one operator registry: every op declared once, everything else generated.
//
// An OpDef says, in one place:
//   - how many tensors the op takes and the shape rule of its output (which also validates
//     the inputs and names the problem when they are wrong);
//   - its FLOP count (for benchmarks and for scoring models);
//   - sample inputs: small edge shapes (gradient-checked in double) and real CIFAR layer
//     shapes (variant checks and benchmarks);
//   - its variants: the reference (plain loops, forward and backward side by side) first,
//     then faster or compressed ones, each saying how it is judged against the reference.
//
// From the list of OpDefs (kernels/op_list.h) the test binary generates, per op, a gradient
// test (reference backward against central finite differences in f64) and a variant test
// (every variant against its oracle on every sample), and the benchmark binary generates one
// entry per op x variant x sample with FLOP/s. Adding an op adds all of them.
//
// How a call flows:  conv2d(x, w) -> call("conv2d", {x, w}, attrs) -> shape rule (throws on
// bad input) -> choose a variant -> variant.forward(ctx) -> record an autograd Node if any
// input requires grad. Backward later calls the same variant's backward (or the reference's),
// or, for an op with gradients_dispatched, the variants chosen for each input's gradient.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/attrs.h"
#include "engine/tensor.h"

namespace edl {

using Tensors = std::vector<Tensor>;

// What a forward kernel sees. out_shape comes from the op's shape rule; forward allocates its
// output (usually Tensor::empty(ctx.out_shape, x.dtype())) and may keep tensors for backward
// in `saved` (batch statistics, dropout masks, argmax indices).
struct ForwardCtx {
  const Tensors& inputs;
  const Attrs& attrs;
  const Shape& out_shape;
  Tensors& saved;
};

// What a backward kernel sees: everything forward had, its output, and dy. It returns one
// gradient per input (an undefined Tensor where needs_grad[i] is false or the input is not
// differentiable). Gradients are fresh tensors; autograd accumulates them across uses.
//
// grad_into[i], where defined, is the gradient the autograd already holds for input i (from
// its other uses), a tensor nothing else shares. A backward may add input i's gradient into it
// and return that very tensor — the autograd then has nothing left to sum — or ignore it and
// return a fresh gradient. Adding in the kernel that computes the gradient saves a pass over
// memory both ways (a ResNet block's input: the first convolution's dx and the residual's).
//
// dy_writable says that dy is this backward's to overwrite: nothing else holds its buffer and
// no later call reads it (the autograd drops it next). A backward may then write a gradient of
// dy's shape into dy itself and return dy as that gradient: the lines it writes are those it
// has just read, in cache, where a fresh buffer's would first be read in from memory (batch
// norm's dx).
struct BackwardCtx {
  const Tensors& inputs;
  const Attrs& attrs;
  const Tensor& y;
  const Tensors& saved;
  const Tensor& dy;
  const std::vector<bool>& needs_grad;
  const Tensors& grad_into;
  bool dy_writable = false;
};

using ForwardFn = std::function<Tensor(ForwardCtx&)>;
using BackwardFn = std::function<Tensors(BackwardCtx&)>;
using ShapeFn = std::function<Shape(const Tensors&, const Attrs&)>;
using FlopsFn = std::function<double(const Tensors&, const Attrs&)>;
using SupportsFn = std::function<bool(const Tensors&, const Attrs&)>;

// What dispatch chooses a variant for: the forward pass (grad_of < 0) or, in the backward pass,
// the gradient of input grad_of. The backward normally runs the forward's variant; an op with
// OpDef::gradients_dispatched has each input's gradient chosen on its own (conv2d: on some
// layers one algorithm computes dx fastest and another dw).
struct Pass {
  int grad_of = -1;
  bool forward() const { return grad_of < 0; }
};
using ChosenFn = std::function<bool(const Tensors&, const Attrs&, Pass)>;

// How a variant's output is judged. The transform is applied to the sample inputs before both
// the variant and the reference run, so the comparison is exact up to float rounding:
//   reference   — same inputs (fast fp32 kernels)
//   fake_quant  — inputs rounded to int8 grids first (int8 kernels)
//   sign        — inputs replaced by sign(x) in {-1, +1} (binary kernels)
//   pruned      — the weight (input 1) has its smallest-magnitude half set to zero (sparse kernels)
enum class Judge { reference, fake_quant, sign, pruned };
const char* judge_name(Judge j);
Tensors judge_inputs(Judge j, const Tensors& inputs);  // the transform above

struct Variant {
  std::string name;           // "reference", "im2col", "int8", ...
  ForwardFn forward;
  BackwardFn backward;        // may be empty: the reference backward is used
  SupportsFn supports;        // may be empty: supports every f32 call
  Judge judge = Judge::reference;
  double tolerance = 1e-4;    // relative to the largest magnitude of the reference output
  // Chosen by dispatch when it supports the call. Variants that change the arithmetic
  // (int8, binary) are false: a quantized layer asks for them by name.
  bool automatic = true;
  // May be empty: dispatch then chooses an automatic variant for every call it supports.
  // Otherwise dispatch chooses it only where this says it pays (a measured rule, e.g. enough
  // channels), for the pass it is asked about, while tests and benchmarks still run it on
  // every call it supports, so that the benchmark shows where it loses too.
  ChosenFn chosen_when;
};

// How a sample input is filled.
enum class Fill {
  normal,    // N(0, 1)
  positive,  // U(0.5, 1.5), for divisors and variances
  labels,    // integers in [0, classes)    (s32)
  probs,     // rows of the last dim summing to 1
};

struct InputSpec {
  Shape shape;
  DType dtype = DType::f32;
  Fill fill = Fill::normal;
  int64_t classes = 0;  // for Fill::labels
};

struct Sample {
  std::string name;             // "3x3 s2 p1", "resnet20 layer2 3x3"
  std::vector<InputSpec> inputs;
  Attrs attrs;
  bool gradcheck = true;        // small enough for finite differences; false for CIFAR shapes
};

struct OpDef {
  std::string name;             // PyTorch's name: "conv2d", "batch_norm2d"
  std::string summary;          // one line for listings
  int min_inputs = 1;
  int max_inputs = 1;           // -1: any number (concat)
  std::vector<bool> differentiable;  // per input; missing entries (variadic tails) are true
  ShapeFn shape;
  FlopsFn flops;
  std::function<std::vector<Sample>()> samples;
  std::vector<Variant> variants;  // variants[0] is the reference
  // Dispatch chooses the variant of each input's gradient on its own (Pass), instead of running
  // the forward's variant. Only for ops whose variants' backward kernels read nothing but the
  // inputs, attributes and dy (not `saved` nor the layout of their own y) and compute any
  // subset of the gradients that needs_grad asks for.
  bool gradients_dispatched = false;

  const Variant& reference() const { return variants.front(); }
  const Variant& variant(const std::string& name) const;  // throws naming the known variants
  bool is_differentiable(size_t input) const {
    return input >= differentiable.size() || differentiable[input];
  }
};

// ---- the registry -----------------------------------------------------------------------------

const std::vector<OpDef>& all_ops();            // in op_list.h order
const OpDef& op(const std::string& name);       // throws on an unknown op, listing known ones

// Runs an op: validates inputs with the shape rule, dispatches to a variant, records autograd.
// variant == "" lets dispatch choose (see choose_variant).
Tensor call(const OpDef& op, const Tensors& inputs, const Attrs& attrs = {}, const std::string& variant = "");
Tensor call(const std::string& op_name, const Tensors& inputs, const Attrs& attrs = {});

// The variant dispatch would use for a pass: a forced one (force_variant), else the first
// automatic variant after the reference whose `supports` (and `chosen_when`, if any) accepts
// the call — for a gradient, only among variants with a backward of their own — else the
// reference.
const Variant& choose_variant(const OpDef& op, const Tensors& inputs, const Attrs& attrs, Pass pass = {});

// Forces every call of `op_name` to use `variant` (benchmarks, debugging); "" clears it.
void force_variant(const std::string& op_name, const std::string& variant);

// The inputs of a sample, filled from a seeded generator, in dtype `floating` for f32 specs.
Tensors make_inputs(const Sample& sample, uint64_t seed, DType floating = DType::f32);

// Calls `fn` with a value of type float or double according to a floating dtype; reference
// kernels are templates on the element type so the same loops run in f32 and f64.
template <typename Fn>
decltype(auto) with_floating(DType t, const char* op_name, Fn&& fn) {
  if (t == DType::f32) return fn(float{});
  if (t == DType::f64) return fn(double{});
  throw Error(fmt::format("{}: dtype {} is not supported (expected f32 or f64)", op_name, dtype_name(t)));
}

}  // namespace edl
