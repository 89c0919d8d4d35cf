// nn.h — neural-network modules: layers that own their parameters and buffers, and compose.
//
// A Module is a forward function plus named state. Parameters are trained (they require grad),
// buffers are state that is not trained but must be saved (BatchNorm's running statistics).
// Modules nest: a ResNet holds layers that hold blocks that hold convolutions. The names are
// exactly those of PyTorch's state_dict for the same architecture — "layer1.0.conv1.weight",
// "bn1.running_var" — so that a checkpoint can move between edl and PyTorch and a student can
// compare the two side by side.
//
// All computation goes through the ops of ops.h, so every module gets its backward for free.
//
// Reproducible initialization: weights are drawn from one global generator (global_rng()),
// seeded with edl::manual_seed(seed) as in PyTorch. The same seed and the same order of
// module construction give the same weights on every platform (see random.h).
//
//   edl::manual_seed(0);
//   auto net = std::make_shared<edl::Sequential>(
//       std::make_shared<edl::Conv2d>(3, 16, 3, 1, 1), std::make_shared<edl::BatchNorm2d>(16),
//       std::make_shared<edl::ReLU>(), std::make_shared<edl::GlobalAvgPool2d>(),
//       std::make_shared<edl::Linear>(16, 10));
//   Tensor logits = (*net)(x);  // state_dict: 0.weight 0.bias 1.weight 1.bias 1.running_mean ...
//
// Tested by tests/test_nn.cpp and tests/test_train_small.cpp:  ctest --test-dir build -R '^(nn|train_small):'
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/ops.h"
#include "engine/random.h"

namespace edl {

// ---- seeding and initialization ---------------------------------------------------------------

// The generator every initializer below draws from. Not thread-safe: build models on one thread.
Rng& global_rng();
// Reseeds global_rng(), like torch.manual_seed. The program starts as if manual_seed(0) was called.
void manual_seed(uint64_t seed);

// In-place initializers (f32 or f64 tensors), drawing from global_rng().
void uniform_(Tensor& t, double lo, double hi);
void normal_(Tensor& t, double mean, double std);

// ---- Module -------------------------------------------------------------------------------------

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  // A module owns tensors and children by handle: a copy would silently share them. Hold
  // modules by std::shared_ptr instead.
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }

  // Registration. The returned Tensor is a handle to the same storage as the registered one,
  // so a layer keeps it as a member (`weight = register_parameter("weight", ...)`). Names must be
  // unique within the module and contain no '.', which separates the levels of the hierarchy.
  // register_parameter turns requires_grad on; the tensor must be floating.
  Tensor register_parameter(const std::string& name, Tensor t);
  Tensor register_buffer(const std::string& name, Tensor t);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

  // Recursive views of the state, with dotted names ("layer1.0.conv1.weight"). Order: a module's
  // own parameters (registration order), then each child's recursively (registration order) —
  // the order of PyTorch's named_parameters() and named_buffers().
  NamedTensors named_parameters() const;
  NamedTensors named_buffers() const;
  std::vector<Tensor> parameters() const;  // what an optimizer takes
  // Everything that defines the trained model, in PyTorch's state_dict order: for each module,
  // its own parameters, then its own buffers, then its children recursively. The entries alias
  // the module's tensors: writing into them writes into the model.
  NamedTensors state_dict() const;
  // Copies every entry of `dict` into the tensor of the same name (edl::load_state_dict of
  // checkpoint.h): names, shapes and dtypes are all checked first, one error lists every
  // mismatch, and nothing is loaded unless everything matches. strict: every module entry
  // must be present and every dict entry must be used.
  void load_state_dict(const NamedTensors& dict, bool strict = true);

  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& named_children() const { return children_; }

  // Training mode (batch statistics, dropout on) or evaluation mode, for this module and all
  // its descendants. Modules start in training mode, as in PyTorch.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  void zero_grad();                // drops every parameter's gradient
  int64_t num_parameters() const;  // total number of elements over all parameters

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  void check_new_name(const std::string& name) const;
  void collect(const std::string& prefix, bool params, bool buffers, bool recurse_children, NamedTensors& out) const;

  NamedTensors parameters_;
  NamedTensors buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// ---- layers -------------------------------------------------------------------------------------

// y = x Wᵀ + b;  x (N,in), weight (out,in), bias (out). PyTorch's init: weight and bias are
// U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform with a = sqrt(5) works out to that bound).
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;  // bias undefined when built without one
};

// x (N,C,H,W) -> (N,OC,OH,OW); weight (OC, C/groups, K, K), bias (OC). Init as PyTorch:
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = C/groups*K*K, for weight and bias.
class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride = 1, int64_t padding = 0,
         int64_t groups = 1, bool bias = true);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
  int64_t stride, padding, groups;
};

// Per-channel normalization of (N,C,H,W). Parameters weight (ones) and bias (zeros); buffers
// running_mean (zeros), running_var (ones) and num_batches_tracked (s64, shape {}), in
// PyTorch's order. Training: batch statistics, the running averages move by `momentum`, and
// num_batches_tracked counts the batches. Evaluation: the running statistics.
class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t num_features, double eps = 1e-5, double momentum = 0.1);
  Tensor forward(const Tensor& x) override;
  Tensor forward_relu(const Tensor& x);  // relu(forward(x)) as one op (see batch_norm2d in ops.h)
  // relu(forward(x) + residual) as one op: the end of a residual block.
  Tensor forward_add_relu(const Tensor& x, const Tensor& residual);
  Tensor weight, bias, running_mean, running_var, num_batches_tracked;
  double eps, momentum;

 private:
  // The op batch_norm2d on x (with its ReLU, with the residual added when it is defined) and,
  // when training, one more batch counted: the three forwards above.
  Tensor normalize(const Tensor& x, bool relu, const Tensor& residual);
};

class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return relu(x); }
};
class ReLU6 : public Module {
 public:
  Tensor forward(const Tensor& x) override { return relu6(x); }
};
class Hardswish : public Module {
 public:
  Tensor forward(const Tensor& x) override { return hardswish(x); }
};
class Sigmoid : public Module {
 public:
  Tensor forward(const Tensor& x) override { return sigmoid(x); }
};
class GELU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return gelu(x); }
};

// stride < 0 means stride = kernel_size, PyTorch's default.
class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(int64_t kernel_size, int64_t stride = -1, int64_t padding = 0)
      : kernel_size(kernel_size), stride(stride), padding(padding) {}
  Tensor forward(const Tensor& x) override { return max_pool2d(x, kernel_size, stride, padding); }
  int64_t kernel_size, stride, padding;
};
class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(int64_t kernel_size, int64_t stride = -1, int64_t padding = 0)
      : kernel_size(kernel_size), stride(stride), padding(padding) {}
  Tensor forward(const Tensor& x) override { return avg_pool2d(x, kernel_size, stride, padding); }
  int64_t kernel_size, stride, padding;
};

// (N,C,H,W) -> (N,C): PyTorch writes this as AdaptiveAvgPool2d(1) followed by a flatten.
class GlobalAvgPool2d : public Module {
 public:
  Tensor forward(const Tensor& x) override { return global_avg_pool2d(x); }
};

// (N, ...) -> (N, -1)
class Flatten : public Module {
 public:
  Tensor forward(const Tensor& x) override { return flatten(x); }
};

// Inverted dropout: in training each element is zeroed with probability p and the rest are
// scaled by 1/(1-p); in evaluation it is the identity. The mask of edl::dropout is a function
// of a seed. Each training forward takes a fresh seed from the module's own generator, which
// is seeded once, at construction, from global_rng(): after manual_seed(s) a run draws the
// same masks again, and two Dropout layers never share masks.
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5);
  Tensor forward(const Tensor& x) override;
  double p;

 private:
  Rng rng_;
};

// Runs its children in order; they are named "0", "1", ... as in PyTorch. An empty Sequential
// is the identity (the shortcut of a ResNet block that keeps its shape). A BatchNorm2d directly
// followed by a ReLU runs as one fused op (BatchNorm2d::forward_relu).
class Sequential : public Module {
 public:
  Sequential() = default;
  template <typename... Ms>
  explicit Sequential(std::shared_ptr<Ms>... modules) {
    (add(std::move(modules)), ...);
  }
  Sequential& add(std::shared_ptr<Module> module);
  size_t size() const { return named_children().size(); }
  const std::shared_ptr<Module>& operator[](size_t i) const;
  Tensor forward(const Tensor& x) override;
};

// The basic residual block of ResNet (He et al. 2016, https://arxiv.org/abs/1512.03385), as in
// kuangliu/pytorch-cifar (models/resnet.py), so its state_dict names match that code:
//   y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))
// conv1 is 3x3 with `stride`, conv2 3x3 with stride 1, both padding 1 and no bias (the
// BatchNorm after them has one). The shortcut is a 1x1 convolution with `stride` and a
// BatchNorm when the shape changes (stride != 1 or in != out), else the identity.
class BasicBlock : public Module {
 public:
  BasicBlock(int64_t in_planes, int64_t planes, int64_t stride = 1);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Conv2d> conv1, conv2;
  std::shared_ptr<BatchNorm2d> bn1, bn2;
  std::shared_ptr<Sequential> shortcut;
};

}  // namespace edl
