// summary.cpp — per-layer output shapes, parameters and MACs of a network, read from the
// autograd graph of one forward pass; see summary.h for the method and its one blind spot.
#include "models/summary.h"

#include <cxxabi.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <typeinfo>

#include "engine/autograd.h"
#include "models/init.h"

namespace edl {

// "edl::Conv2d" -> "Conv2d", from the dynamic type (GCC and Clang share this demangler).
static std::string type_name(const Module& m) {
  const char* mangled = typeid(m).name();
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> demangled(abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
  std::string name = status == 0 ? demangled.get() : mangled;
  return name.rfind("edl::", 0) == 0 ? name.substr(5) : name;
}

// Multiply-accumulates per image (the output is for batch 1).
static int64_t macs_of(Module& m, const Shape& out) {
  if (auto* conv = dynamic_cast<Conv2d*>(&m))  // OC*(C/groups)*KH*KW per output pixel
    return out.size() == 4 ? conv->weight.numel() * out[2] * out[3] : 0;
  if (auto* fc = dynamic_cast<Linear*>(&m)) return fc->weight.numel();  // in*out
  return 0;
}

namespace {

struct Tracer {
  // For every tensor an op of the graph read, the node of that op: a layer's weight leads
  // to the op that used it, and node->y is that op's output.
  std::map<const TensorImpl*, const Node*> reader;
  std::vector<LayerSummary> rows;

  explicit Tracer(const Tensor& y) {
    std::set<const Node*> seen;
    std::vector<const Node*> stack;
    if (y.grad_fn()) stack.push_back(y.grad_fn().get());
    while (!stack.empty()) {
      const Node* node = stack.back();
      stack.pop_back();
      if (!seen.insert(node).second) continue;
      for (const Tensor& in : node->inputs) {
        reader.emplace(in.impl(), node);
        if (in.grad_fn()) stack.push_back(in.grad_fn().get());
      }
    }
  }

  // Adds the rows of `m` and its descendants; returns m's output when it is known. `x` is
  // m's input when it is known (inside a Sequential), else undefined.
  Tensor visit(const std::string& name, Module& m, const Tensor& x) {
    auto child_name = [&](const std::string& c) { return name.empty() ? c : name + "." + c; };
    if (typeid(m) == typeid(Sequential)) {
      // A chain: each child's output is the next child's input. Empty: the identity.
      Tensor t = x;
      for (const auto& [c, child] : m.named_children()) t = visit(child_name(c), *child, t);
      return t;
    }
    if (!m.named_children().empty()) {
      // A block with a forward of its own: what flows between its children is not known
      // here, but its layers with parameters are found in the graph.
      for (const auto& [c, child] : m.named_children()) visit(child_name(c), *child, Tensor());
      return Tensor();
    }
    // A leaf.
    Tensor y;
    NamedTensors params = m.named_parameters();
    if (!params.empty()) {
      auto it = reader.find(params.front().second.impl());
      if (it != reader.end()) y = it->second->y;
    } else if (x.defined()) {
      NoGradGuard no_grad;
      y = m.forward(x);
    }
    LayerSummary row;
    row.name = name;
    row.type = type_name(m);
    if (y.defined()) row.output = y.shape();
    row.params = m.num_parameters();
    row.macs = macs_of(m, row.output);
    rows.push_back(row);
    return y;
  }
};

}  // namespace

ModelSummary summarize(Module& model, const Shape& input) {
  Shape in = input;
  if (in.size() == 3) in.insert(in.begin(), 1);
  EDL_CHECK(in.size() == 4 && in[0] == 1, "summarize: input shape {} must be one image (C,H,W), such as (3,32,32)",
            shape_str(input));
  EDL_CHECK(grad_enabled(),
            "summarize: called inside a NoGradGuard; it reads the layers' shapes from the autograd graph of a forward "
            "pass, so it needs gradients on");

  // Evaluation mode (no batch statistics, no dropout, running statistics untouched) for the
  // pass, and every module's own mode back afterwards, even on an error. Restoring parents
  // before children reproduces any mixture of modes.
  std::vector<std::pair<Module*, bool>> modes;
  for_each_module(model, [&](const std::string&, Module& m) { modes.emplace_back(&m, m.is_training()); });
  struct RestoreModes {
    std::vector<std::pair<Module*, bool>>& modes;
    ~RestoreModes() {
      for (auto& [m, training] : modes) m->train(training);
    }
  } restore{modes};
  model.eval();

  const std::vector<Tensor> params = model.parameters();
  Tensor x = Tensor::zeros(in, params.empty() ? DType::f32 : params.front().dtype());
  x.set_requires_grad(true);  // every op is recorded, even those of frozen layers
  Tensor y = model(x);

  Tracer tracer(y);
  tracer.visit("", model, x);

  ModelSummary s;
  s.input = in;
  s.output = y.shape();
  s.layers = std::move(tracer.rows);
  s.total_params = model.num_parameters();
  for (const LayerSummary& l : s.layers) s.total_macs += l.macs;
  return s;
}

// ---- the table ----------------------------------------------------------------------------------

static std::string with_commas(int64_t v) {
  std::string digits = std::to_string(v < 0 ? -v : v), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return v < 0 ? "-" + out : out;
}

// 40551040 -> "40.55 M", 556651520 -> "556.65 M", 5248934400 -> "5.25 G"
static std::string human(double v) {
  if (v >= 1e9) return fmt::format("{:.2f} G", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.2f} M", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.2f} k", v / 1e3);
  return fmt::format("{:.0f} ", v);
}

std::string format_summary(const ModelSummary& s) {
  // One row of strings per layer, then every column as wide as its widest cell.
  std::vector<std::vector<std::string>> cells{{"layer", "type", "output", "params", "MACs"}};
  bool unknown = false;
  for (const LayerSummary& l : s.layers) {
    cells.push_back({l.name, l.type, l.output.empty() ? "-" : shape_str(l.output), with_commas(l.params),
                     with_commas(l.macs)});
    unknown |= l.output.empty();
  }
  size_t width[5] = {0, 0, 0, 0, 0};
  for (const auto& row : cells)
    for (size_t c = 0; c < 5; ++c) width[c] = std::max(width[c], row[c].size());
  std::string out;
  for (const auto& row : cells)  // names, types and shapes to the left, numbers to the right
    out += fmt::format("{:<{}}  {:<{}}  {:<{}}  {:>{}}  {:>{}}\n", row[0], width[0], row[1], width[1], row[2],
                       width[2], row[3], width[3], row[4], width[4]);
  out += fmt::format("input {} -> output {}\n", shape_str(s.input), shape_str(s.output));
  out += fmt::format("total: {} parameters ({}B as f32), {} MACs ({}FLOP) per image\n", with_commas(s.total_params),
                     human(4.0 * static_cast<double>(s.total_params)), human(static_cast<double>(s.total_macs)),
                     human(2.0 * static_cast<double>(s.total_macs)));
  if (unknown)
    out += "-: a parameter-free layer called inside a block's forward; its output is not observable without a "
           "forward hook\n";
  return out;
}

}  // namespace edl
