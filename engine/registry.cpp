// registry.cpp — the op list, dispatch to variants, and the judges' input transforms.
#include "engine/registry.h"

#include <algorithm>
#include <cmath>

#include "engine/autograd.h"
#include "engine/profiler.h"
#include "engine/random.h"
#include "engine/threads.h"
#include "kernels/op_list.h"

namespace edl {

// Each op folder defines make_<name>(); op_list.h lists them once.
#define EDL_DECLARE_OP(name) OpDef make_##name();
EDL_OPS(EDL_DECLARE_OP)
#undef EDL_DECLARE_OP

const std::vector<OpDef>& all_ops() {
#define EDL_MAKE_OP(name) make_##name(),
  static const std::vector<OpDef> ops = {EDL_OPS(EDL_MAKE_OP)};
#undef EDL_MAKE_OP
  return ops;
}

const OpDef& op(const std::string& name) {
  for (const OpDef& o : all_ops())
    if (o.name == name) return o;
  std::vector<std::string> known;
  for (const OpDef& o : all_ops()) known.push_back(o.name);
  throw Error(fmt::format("unknown op '{}' (known: {})", name, join(known)));
}

const Variant& OpDef::variant(const std::string& v) const {
  for (const Variant& x : variants)
    if (x.name == v) return x;
  std::vector<std::string> known;
  for (const Variant& x : variants) known.push_back(x.name);
  throw Error(fmt::format("{}: unknown variant '{}' (known: {})", name, v, join(known)));
}

const char* judge_name(Judge j) {
  switch (j) {
    case Judge::reference: return "reference";
    case Judge::fake_quant: return "fake_quant";
    case Judge::sign: return "sign";
    case Judge::pruned: return "pruned";
  }
  return "?";
}

// ---- dispatch -----------------------------------------------------------------------------

static std::map<std::string, std::string>& forced() {
  static std::map<std::string, std::string> m;
  return m;
}

void force_variant(const std::string& op_name, const std::string& variant) {
  if (variant.empty()) {
    forced().erase(op_name);
    return;
  }
  op(op_name).variant(variant);  // validates both names
  forced()[op_name] = variant;
}

static bool all_floating_f32(const Tensors& inputs) {
  for (const Tensor& t : inputs)
    if (is_floating(t.dtype()) && t.dtype() != DType::f32) return false;
  return true;
}

const Variant& choose_variant(const OpDef& op, const Tensors& inputs, const Attrs& attrs, Pass pass) {
  if (auto it = forced().find(op.name); it != forced().end()) return op.variant(it->second);
  for (size_t i = 1; i < op.variants.size(); ++i) {
    const Variant& v = op.variants[i];
    if (!v.automatic || (!pass.forward() && !v.backward)) continue;
    bool ok = v.supports ? v.supports(inputs, attrs) : all_floating_f32(inputs);
    if (ok && (!v.chosen_when || v.chosen_when(inputs, attrs, pass))) return v;
  }
  return op.reference();
}

Tensor call(const OpDef& op, const Tensors& inputs, const Attrs& attrs, const std::string& variant) {
  init_threads_once();  // thread count, and subnormals flushed to zero in every thread (threads.h)
  int n = static_cast<int>(inputs.size());
  if (op.max_inputs < 0)
    EDL_CHECK(n >= op.min_inputs, "{}: expected at least {} inputs, got {}", op.name, op.min_inputs, n);
  else if (op.min_inputs == op.max_inputs)
    EDL_CHECK(n == op.min_inputs, "{}: expected {} inputs, got {}", op.name, op.min_inputs, n);
  else
    EDL_CHECK(n >= op.min_inputs && n <= op.max_inputs, "{}: expected {} to {} inputs, got {}", op.name,
              op.min_inputs, op.max_inputs, n);
  for (int i = 0; i < n; ++i) EDL_CHECK(inputs[i].defined(), "{}: input {} is an undefined tensor", op.name, i);

  const Shape out_shape = op.shape(inputs, attrs);
  const Variant& v = variant.empty() ? choose_variant(op, inputs, attrs) : op.variant(variant);
  Tensors saved;
  ForwardCtx ctx{inputs, attrs, out_shape, saved};
  Tensor y;
  {
    ProfileScope timed(op, v.name, "fwd", profiling() && op.flops ? op.flops(inputs, attrs) : 0.0, &inputs);
    y = v.forward(ctx);
  }
  EDL_CHECK(y.shape() == out_shape, "{}: variant '{}' returned shape {}, the shape rule says {} (a bug in the op)",
            op.name, v.name, shape_str(y.shape()), shape_str(out_shape));

  bool track = false;
  if (grad_enabled())
    for (int i = 0; i < n; ++i) track |= op.is_differentiable(static_cast<size_t>(i)) && inputs[i].requires_grad();
  if (track) {
    auto node = std::make_shared<Node>();
    node->op = &op;
    node->variant = &v;
    if (op.gradients_dispatched && variant.empty()) {
      node->grad_variants.assign(inputs.size(), nullptr);
      for (int i = 0; i < n; ++i)
        if (op.is_differentiable(static_cast<size_t>(i)) && inputs[i].requires_grad())
          node->grad_variants[i] = &choose_variant(op, inputs, attrs, Pass{i});
    }
    node->attrs = attrs;
    node->inputs = inputs;
    node->saved = std::move(saved);
    node->y = y.detach();
    y.set_grad_fn(std::move(node));
  }
  return y;
}

Tensor call(const std::string& op_name, const Tensors& inputs, const Attrs& attrs) {
  return call(op(op_name), inputs, attrs);
}

// ---- sample inputs ------------------------------------------------------------------------

Tensors make_inputs(const Sample& sample, uint64_t seed, DType floating) {
  Tensors out;
  Rng rng(seed);
  for (const InputSpec& spec : sample.inputs) {
    DType dt = spec.dtype == DType::f32 ? floating : spec.dtype;
    Tensor t = Tensor::empty(spec.shape, DType::f64);
    double* p = t.data<double>();
    int64_t n = t.numel();
    switch (spec.fill) {
      case Fill::normal:
        for (int64_t i = 0; i < n; ++i) p[i] = rng.normal();
        break;
      case Fill::positive:
        for (int64_t i = 0; i < n; ++i) p[i] = rng.uniform(0.5, 1.5);
        break;
      case Fill::labels:
        for (int64_t i = 0; i < n; ++i) p[i] = static_cast<double>(rng.integer(spec.classes));
        break;
      case Fill::probs: {
        int64_t k = spec.shape.back();
        for (int64_t r = 0; r < n / k; ++r) {
          double s = 0;
          for (int64_t j = 0; j < k; ++j) s += p[r * k + j] = rng.uniform(0.1, 1.0);
          for (int64_t j = 0; j < k; ++j) p[r * k + j] /= s;
        }
        break;
      }
    }
    out.push_back(dt == DType::f64 ? t : t.to(dt));
  }
  return out;
}

// ---- judges ---------------------------------------------------------------------------------

// Symmetric per-tensor int8: x -> round(x / s) * s with s = max|x| / 127. An int8 kernel fed
// these values computes exactly what the float reference computes on them.
static Tensor fake_quant(const Tensor& x) {
  Tensor y = x.to(DType::f64);
  double* p = y.data<double>();
  double amax = 0;
  for (int64_t i = 0; i < y.numel(); ++i) amax = std::max(amax, std::abs(p[i]));
  double s = amax > 0 ? amax / 127.0 : 1.0;
  for (int64_t i = 0; i < y.numel(); ++i) p[i] = std::nearbyint(p[i] / s) * s;
  return y.to(x.dtype());
}

static Tensor sign_of(const Tensor& x) {
  Tensor y = x.to(DType::f64);
  double* p = y.data<double>();
  for (int64_t i = 0; i < y.numel(); ++i) p[i] = p[i] >= 0 ? 1.0 : -1.0;
  return y.to(x.dtype());
}

// Zeroes the smaller-magnitude half of the weight, as magnitude pruning at 50% would.
static Tensor prune_half(const Tensor& w) {
  Tensor y = w.to(DType::f64);
  double* p = y.data<double>();
  std::vector<double> mags(p, p + y.numel());
  for (double& m : mags) m = std::abs(m);
  auto mid = mags.begin() + static_cast<long>(mags.size() / 2);
  std::nth_element(mags.begin(), mid, mags.end());
  for (int64_t i = 0; i < y.numel(); ++i)
    if (std::abs(p[i]) < *mid) p[i] = 0;
  return y.to(w.dtype());
}

Tensors judge_inputs(Judge j, const Tensors& inputs) {
  Tensors out = inputs;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!is_floating(out[i].dtype())) continue;
    switch (j) {
      case Judge::reference: break;
      case Judge::fake_quant: out[i] = fake_quant(out[i]); break;
      case Judge::sign: out[i] = sign_of(out[i]); break;
      case Judge::pruned:
        if (i == 1) out[i] = prune_half(out[i]);
        break;
    }
  }
  return out;
}

}  // namespace edl
