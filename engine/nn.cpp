// nn.cpp — the Module bookkeeping (names, recursion, state_dict) and the layers of nn.h.
//
// The layers themselves are a few lines each: they hold their tensors and call an op. What is
// worth reading here is the naming: how the recursive, dotted names of PyTorch's state_dict
// come out of one depth-first walk.
#include "engine/nn.h"

#include "engine/checkpoint.h"

#include <cmath>
#include <map>
#include <set>

#include "engine/autograd.h"

namespace edl {

// ---- seeding and initialization -----------------------------------------------------------------

Rng& global_rng() {
  static Rng rng(0);
  return rng;
}

void manual_seed(uint64_t seed) { global_rng().reseed(seed); }

void uniform_(Tensor& t, double lo, double hi) {
  Rng& rng = global_rng();
  with_floating(t.dtype(), "uniform_", [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(rng.uniform(lo, hi));
  });
}

void normal_(Tensor& t, double mean, double std) {
  Rng& rng = global_rng();
  with_floating(t.dtype(), "normal_", [&](auto tag) {
    using T = decltype(tag);
    T* p = t.data<T>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(mean + std * rng.normal());
  });
}

// U(-bound, bound) with bound = 1/sqrt(fan_in): PyTorch's default for Linear and Conv2d.
// Its weights use kaiming_uniform_(a = sqrt(5)), whose bound gain * sqrt(3 / fan_in) with
// gain = sqrt(2 / (1 + a^2)) = sqrt(1/3) is again 1/sqrt(fan_in); its biases use the same bound.
static Tensor fan_in_uniform(const Shape& shape, int64_t fan_in) {
  Tensor t = Tensor::empty(shape);
  double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  uniform_(t, -bound, bound);
  return t;
}

// ---- Module -------------------------------------------------------------------------------------

void Module::check_new_name(const std::string& name) const {
  EDL_CHECK(!name.empty() && name.find('.') == std::string::npos,
            "Module: name '{}' must be non-empty and contain no '.' (the dot separates nested modules)", name);
  auto taken = [&](const auto& list) {
    for (const auto& entry : list)
      if (entry.first == name) return true;
    return false;
  };
  EDL_CHECK(!taken(parameters_) && !taken(buffers_) && !taken(children_),
            "Module: name '{}' is already registered in this module", name);
}

Tensor Module::register_parameter(const std::string& name, Tensor t) {
  check_new_name(name);
  EDL_CHECK(t.defined(), "register_parameter: '{}' is an undefined tensor", name);
  EDL_CHECK(is_floating(t.dtype()), "register_parameter: '{}' has dtype {}; parameters must be f32 or f64", name,
            dtype_name(t.dtype()));
  t.set_requires_grad(true);
  parameters_.emplace_back(name, t);
  return t;
}

Tensor Module::register_buffer(const std::string& name, Tensor t) {
  check_new_name(name);
  EDL_CHECK(t.defined(), "register_buffer: '{}' is an undefined tensor", name);
  buffers_.emplace_back(name, t);
  return t;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_new_name(name);
  EDL_CHECK(module != nullptr, "register_module: '{}' is a null module", name);
  EDL_CHECK(module.get() != this, "register_module: a module cannot be its own child ('{}')", name);
  children_.emplace_back(name, std::move(module));
}

// One depth-first walk produces every listing. `prefix` is the dotted path of this module
// ("layer1.0."), empty at the root. PyTorch's state_dict visits own parameters, own buffers,
// then children; named_parameters() is the same walk with buffers switched off.
void Module::collect(const std::string& prefix, bool params, bool buffers, bool recurse_children,
                     NamedTensors& out) const {
  if (params)
    for (const auto& [name, t] : parameters_) out.emplace_back(prefix + name, t);
  if (buffers)
    for (const auto& [name, t] : buffers_) out.emplace_back(prefix + name, t);
  if (recurse_children)
    for (const auto& [name, child] : children_) child->collect(prefix + name + ".", params, buffers, true, out);
}

// A tensor registered twice (a layer shared by two parents: weight tying) is listed once, under
// its first name, as PyTorch does; otherwise an optimizer would update it twice per step.
// state_dict() keeps every name, as PyTorch's does.
static NamedTensors without_duplicates(const NamedTensors& all) {
  NamedTensors out;
  std::set<const TensorImpl*> seen;
  for (const auto& [name, t] : all)
    if (seen.insert(t.impl()).second) out.emplace_back(name, t);
  return out;
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", true, false, true, out);
  return without_duplicates(out);
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", false, true, true, out);
  return without_duplicates(out);
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

NamedTensors Module::state_dict() const {
  NamedTensors out;
  collect("", true, true, true, out);
  return out;
}

void Module::load_state_dict(const NamedTensors& dict, bool strict) {
  // The checks and the copy live in one place (checkpoint.cpp); state_dict() entries alias
  // this module's tensors, so copying into them loads the model.
  NamedTensors own = state_dict();
  edl::load_state_dict(own, dict, strict);
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::zero_grad() {
  for (auto& [name, p] : named_parameters()) p.zero_grad();
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const auto& [name, p] : named_parameters()) n += p.numel();
  return n;
}

// ---- layers -------------------------------------------------------------------------------------

Linear::Linear(int64_t in_features, int64_t out_features, bool has_bias) {
  EDL_CHECK(in_features > 0 && out_features > 0, "Linear: in_features={} and out_features={} must be positive",
            in_features, out_features);
  weight = register_parameter("weight", fan_in_uniform({out_features, in_features}, in_features));
  if (has_bias) bias = register_parameter("bias", fan_in_uniform({out_features}, in_features));
}

Tensor Linear::forward(const Tensor& x) { return linear(x, weight, bias); }

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride_, int64_t padding_,
               int64_t groups_, bool has_bias)
    : stride(stride_), padding(padding_), groups(groups_) {
  EDL_CHECK(in_channels > 0 && out_channels > 0 && kernel_size > 0,
            "Conv2d: in_channels={}, out_channels={} and kernel_size={} must be positive", in_channels, out_channels,
            kernel_size);
  EDL_CHECK(groups >= 1 && in_channels % groups == 0 && out_channels % groups == 0,
            "Conv2d: groups={} must divide both in_channels={} and out_channels={}", groups, in_channels, out_channels);
  EDL_CHECK(stride >= 1 && padding >= 0, "Conv2d: stride={} must be at least 1 and padding={} non-negative", stride,
            padding);
  const int64_t fan_in = in_channels / groups * kernel_size * kernel_size;
  weight = register_parameter("weight", fan_in_uniform({out_channels, in_channels / groups, kernel_size, kernel_size},
                                                       fan_in));
  if (has_bias) bias = register_parameter("bias", fan_in_uniform({out_channels}, fan_in));
}

Tensor Conv2d::forward(const Tensor& x) { return conv2d(x, weight, bias, stride, padding, groups); }

BatchNorm2d::BatchNorm2d(int64_t num_features, double eps_, double momentum_) : eps(eps_), momentum(momentum_) {
  EDL_CHECK(num_features > 0, "BatchNorm2d: num_features={} must be positive", num_features);
  EDL_CHECK(momentum >= 0 && momentum <= 1, "BatchNorm2d: momentum={} must be in [0, 1]", momentum);
  EDL_CHECK(eps > 0, "BatchNorm2d: eps={} must be positive", eps);
  weight = register_parameter("weight", Tensor::ones({num_features}));
  bias = register_parameter("bias", Tensor::zeros({num_features}));
  running_mean = register_buffer("running_mean", Tensor::zeros({num_features}));
  running_var = register_buffer("running_var", Tensor::ones({num_features}));
  // A 0-d s64 tensor, as in PyTorch, so that the state_dict entry has the same shape there.
  num_batches_tracked = register_buffer("num_batches_tracked", Tensor::zeros({}, DType::s64));
}

Tensor BatchNorm2d::normalize(const Tensor& x, bool relu, const Tensor& residual) {
  // The op updates running_mean and running_var itself when training (they are buffers, not
  // differentiable inputs); the batch counter is ours. PyTorch uses it only when momentum is
  // None (a cumulative average), which edl does not offer, but keeps it in the state_dict.
  Tensor y = batch_norm2d(x, weight, bias, running_mean, running_var, is_training(), momentum, eps, relu, residual);
  if (is_training()) num_batches_tracked.data<int64_t>()[0] += 1;
  return y;
}

Tensor BatchNorm2d::forward(const Tensor& x) { return normalize(x, /*relu=*/false, Tensor()); }
Tensor BatchNorm2d::forward_relu(const Tensor& x) { return normalize(x, /*relu=*/true, Tensor()); }
Tensor BatchNorm2d::forward_add_relu(const Tensor& x, const Tensor& residual) {
  return normalize(x, /*relu=*/true, residual);
}

Dropout::Dropout(double p_) : p(p_), rng_(global_rng().next()) {
  EDL_CHECK(p >= 0 && p < 1, "Dropout: p={} must be in [0, 1)", p);
}

Tensor Dropout::forward(const Tensor& x) {
  if (!is_training() || p == 0) return x;  // the identity: no copy, and gradients pass straight through
  return dropout(x, p, true, rng_.next());
}

Sequential& Sequential::add(std::shared_ptr<Module> module) {
  register_module(std::to_string(size()), std::move(module));
  return *this;
}

const std::shared_ptr<Module>& Sequential::operator[](size_t i) const {
  EDL_CHECK(i < size(), "Sequential: index {} is out of range for {} modules", i, size());
  return named_children()[i].second;
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  const auto& children = named_children();
  for (size_t i = 0; i < children.size(); ++i) {
    // A BatchNorm2d followed by a ReLU (VGG's features) runs as one op, batch_norm2d's fused
    // ReLU: the same values, one pass over memory fewer each way. The modules stay as they are,
    // so the state_dict and the summary do not change.
    auto* bn = dynamic_cast<BatchNorm2d*>(children[i].second.get());
    if (bn && i + 1 < children.size() && dynamic_cast<ReLU*>(children[i + 1].second.get())) {
      y = bn->forward_relu(y);
      ++i;
      continue;
    }
    y = children[i].second->forward(y);
  }
  return y;
}

BasicBlock::BasicBlock(int64_t in_planes, int64_t planes, int64_t stride) {
  conv1 = register_module("conv1", std::make_shared<Conv2d>(in_planes, planes, 3, stride, 1, 1, false));
  bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(planes));
  conv2 = register_module("conv2", std::make_shared<Conv2d>(planes, planes, 3, 1, 1, 1, false));
  bn2 = register_module("bn2", std::make_shared<BatchNorm2d>(planes));
  shortcut = register_module("shortcut", std::make_shared<Sequential>());
  if (stride != 1 || in_planes != planes) {
    shortcut->add(std::make_shared<Conv2d>(in_planes, planes, 1, stride, 0, 1, false));
    shortcut->add(std::make_shared<BatchNorm2d>(planes));
  }
}

Tensor BasicBlock::forward(const Tensor& x) {
  Tensor out = bn1->forward_relu((*conv1)(x));
  out = (*conv2)(out);
  return bn2->forward_add_relu(out, (*shortcut)(x));  // relu(bn2(out) + shortcut(x)), one op
}

}  // namespace edl
