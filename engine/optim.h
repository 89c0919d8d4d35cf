// optim.h — optimizers (SGD with momentum, AdamW) and learning-rate schedules.
//
// Each optimizer reproduces its PyTorch counterpart update for update (torch.optim.SGD with
// dampening 0, torch.optim.AdamW without amsgrad), so a training recipe carries over with the
// same hyper-parameters and a student can check a step by hand against the formulas below.
// An optimizer holds handles to the parameters (Module::parameters()) and writes into their
// storage; parameters whose gradient is undefined (not reached by backward) are skipped.
//
//   SGD opt(model.parameters(), 0.1, 0.9, /*nesterov=*/true, 5e-4);
//   LrSchedule sched({.kind = LrKind::cosine, .base_lr = 0.1, .total_steps = 1000, .warmup_steps = 50});
//   for (int64_t s = 0; s < 1000; ++s) {
//     opt.set_lr(sched.lr(s));
//     opt.zero_grad();
//     cross_entropy(model(x), labels).backward();
//     opt.step();
//   }
//
// Tested by tests/test_optim.cpp:  ctest --test-dir build -R '^optim:'
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace edl {

class Optimizer {
 public:
  // params: f32 or f64 tensors, typically Module::parameters(); lr >= 0.
  Optimizer(std::vector<Tensor> params, double lr);
  virtual ~Optimizer() = default;

  // One update of every parameter that has a gradient, under NoGradGuard.
  virtual void step() = 0;
  void zero_grad();  // drops every parameter's gradient (PyTorch's set_to_none=True)

  void set_lr(double lr);
  double lr() const { return lr_; }
  // Per-parameter multipliers of the learning rate and of the weight decay (both 1 by default),
  // what PyTorch expresses with parameter groups. airbench trains the BatchNorm biases at 64
  // times the learning rate with 1/64 of the weight decay, so that their decay per step (lr *
  // weight_decay) stays that of the other parameters.
  void set_scales(size_t i, double lr_scale, double weight_decay_scale = 1);
  double lr_scale(size_t i) const { return lr_scale_[i]; }
  double weight_decay_scale(size_t i) const { return wd_scale_[i]; }
  const std::vector<Tensor>& params() const { return params_; }

  // The per-parameter state (momentum, moments, step counts), for a resumable checkpoint.
  // Names follow PyTorch's optimizer.state_dict()["state"]: "<parameter index>.<key>", e.g.
  // "3.momentum_buffer", "3.exp_avg", "3.exp_avg_sq", "3.step". Entries alias the optimizer's
  // tensors. load_state replaces the whole state; a name, shape or dtype that does not fit the
  // parameters is an edl::Error.
  virtual std::vector<std::pair<std::string, Tensor>> state() const = 0;
  virtual void load_state(const std::vector<std::pair<std::string, Tensor>>& state) = 0;

 protected:
  // The gradient of params_[i], checked against the parameter's shape and dtype; undefined
  // when backward did not reach the parameter.
  Tensor grad_of(size_t i, const char* who) const;

  std::vector<Tensor> params_;
  double lr_;
  std::vector<double> lr_scale_, wd_scale_;  // one per parameter
};

// torch.optim.SGD (dampening 0). With g the gradient and p the parameter:
//   g   = grad + weight_decay * p                         (L2 penalty folded into the gradient)
//   buf = g on the first step, else momentum * buf + g    (only when momentum != 0)
//   u   = nesterov ? g + momentum * buf : buf             (u = g without momentum)
//   p   = p - lr * u
// (lr and weight_decay times the parameter's scales, see set_scales.)
class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, double lr, double momentum = 0, bool nesterov = false, double weight_decay = 0);
  void step() override;
  std::vector<std::pair<std::string, Tensor>> state() const override;
  void load_state(const std::vector<std::pair<std::string, Tensor>>& state) override;

  double momentum, weight_decay;
  bool nesterov;

 private:
  std::vector<Tensor> buf_;  // momentum buffers, undefined until a parameter's first step
};

// torch.optim.AdamW (Loshchilov & Hutter 2019, https://arxiv.org/abs/1711.05101): Adam with the
// weight decay applied to the parameter directly instead of through the gradient. Per
// parameter, with t its own step count (1, 2, ...):
//   p = p * (1 - lr * weight_decay)                       (decoupled decay)
//   m = beta1 * m + (1 - beta1) * g,    v = beta2 * v + (1 - beta2) * g^2
//   p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
class AdamW : public Optimizer {
 public:
  AdamW(std::vector<Tensor> params, double lr, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
        double weight_decay = 0.01);
  void step() override;
  std::vector<std::pair<std::string, Tensor>> state() const override;
  void load_state(const std::vector<std::pair<std::string, Tensor>>& state) override;

  double beta1, beta2, eps, weight_decay;

 private:
  std::vector<Tensor> m_, v_;   // first and second moments, undefined until the first step
  std::vector<int64_t> steps_;  // per parameter, as PyTorch: a skipped parameter does not count
};

// ---- learning-rate schedules ------------------------------------------------------------------

enum class LrKind {
  constant,  // base_lr
  step,      // base_lr * gamma^(number of milestones passed)   (torch MultiStepLR)
  cosine,    // base_lr * (1 + cos(pi * t / T)) / 2            (torch CosineAnnealingLR, eta_min 0)
  onecycle,  // torch OneCycleLR, anneal_strategy 'cos', two phases
  linear,    // base_lr * (1 - t / T); with a warm-up, a triangle (airbench's goes 0.2 -> 1 -> 0.07)
};
const char* lr_kind_name(LrKind kind);  // "cosine", ...
// Parses "constant", "step", "cosine", "onecycle" or "linear"; an unknown name is an error listing them.
LrKind lr_kind_from_name(const std::string& name);

struct LrScheduleOptions {
  LrKind kind = LrKind::constant;
  double base_lr = 0.1;  // the peak: max_lr for onecycle
  int64_t total_steps = 1;
  // Linear warm-up: lr(s) = base_lr * (s + 1) / warmup_steps for s < warmup_steps, then the
  // schedule runs over the remaining steps (t = s - warmup_steps, T = total_steps -
  // warmup_steps). Not for onecycle, which has its own warm-up phase.
  int64_t warmup_steps = 0;
  // step: strictly increasing, counted in steps after the warm-up (t), like MultiStepLR after
  // a warm-up in torch's SequentialLR.
  std::vector<int64_t> milestones = {};
  double gamma = 0.1;
  // onecycle: the rise takes the first pct_start of the steps, from base_lr / div_factor to
  // base_lr; the fall ends at base_lr / div_factor / final_div_factor. PyTorch's defaults.
  double pct_start = 0.3;
  double div_factor = 25;
  double final_div_factor = 1e4;
};

// The learning rate of each optimizer step, a pure function of the step (no hidden state, so
// a resumed run only needs the step number). The options are checked once, at construction.
class LrSchedule {
 public:
  explicit LrSchedule(LrScheduleOptions options);
  double lr(int64_t step) const;  // step in [0, total_steps)
  const LrScheduleOptions& options() const { return o_; }

 private:
  double onecycle(int64_t step) const;
  LrScheduleOptions o_;
};

// ---- Lookahead ------------------------------------------------------------------------------------

// Lookahead (Zhang et al. 2019, https://arxiv.org/abs/1907.08610) as airbench94 runs it: a slow
// copy of the model's floating state — parameters and BatchNorm running statistics — that
// every few steps moves towards the fast weights the optimizer trains, after which the fast
// weights restart from it:
//   slow = decay * slow + (1 - decay) * fast;   fast = slow
// With decay 0 the slow copy becomes the model; with decay 1 the model is reset to the slow
// copy. airbench raises the decay over training (0.95^5 * progress^3 every 5 steps, from 30% of
// the run): early on the model moves freely; at the end, with 0.77 per update, the slow weights
// average over the last few updates (a time constant of about 4 updates, 20 steps).
//
//   Lookahead la(model.state_dict());
//   ... at the first update:  la.update(0.0);   (the slow copy starts as the model)
//   ... every 5 steps after:  la.update(std::pow(0.95, 5) * std::pow(progress, 3));
class Lookahead {
 public:
  // `state`: entries alias the model's tensors (Module::state_dict()); integer entries such
  // as num_batches_tracked are left alone.
  explicit Lookahead(const NamedTensors& state);
  void update(double decay);
  // The slow copies under their model names, for a resumable checkpoint; load_state checks
  // every name, shape and dtype.
  const NamedTensors& state() const { return slow_; }
  void load_state(const NamedTensors& state);

 private:
  NamedTensors fast_, slow_;
};

}  // namespace edl
