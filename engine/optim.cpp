// optim.cpp — the update loops of SGD and AdamW, and the learning-rate schedules.
//
// The updates are plain loops over the elements of each parameter, written in the element
// type T of the parameter (f32 or f64) with the scalar arithmetic in double. They run under
// NoGradGuard: an optimizer step is not part of the model and must not be recorded.
#include "engine/optim.h"

#include <cctype>
#include <cmath>

#include "engine/autograd.h"
#include "engine/registry.h"
#include "engine/threads.h"

namespace edl {

// ---- Optimizer ----------------------------------------------------------------------------------

Optimizer::Optimizer(std::vector<Tensor> params, double lr)
    : params_(std::move(params)), lr_(lr), lr_scale_(params_.size(), 1.0), wd_scale_(params_.size(), 1.0) {
  EDL_CHECK(lr >= 0, "optimizer: learning rate must be non-negative, got {}", lr);
  for (size_t i = 0; i < params_.size(); ++i) {
    EDL_CHECK(params_[i].defined(), "optimizer: parameter {} is an undefined tensor", i);
    EDL_CHECK(is_floating(params_[i].dtype()), "optimizer: parameter {} has dtype {}; only f32 and f64 can be trained",
              i, dtype_name(params_[i].dtype()));
    EDL_CHECK(params_[i].is_leaf(),
              "optimizer: parameter {} is the output of an op, not a leaf; optimize the tensors the model owns", i);
  }
}

void Optimizer::zero_grad() {
  for (Tensor& p : params_) p.zero_grad();
}

void Optimizer::set_lr(double lr) {
  EDL_CHECK(lr >= 0, "optimizer: learning rate must be non-negative, got {}", lr);
  lr_ = lr;
}

void Optimizer::set_scales(size_t i, double lr_scale, double weight_decay_scale) {
  EDL_CHECK(i < params_.size(), "optimizer: set_scales of parameter {}, but there are {} parameters", i, params_.size());
  EDL_CHECK(lr_scale >= 0 && weight_decay_scale >= 0, "optimizer: scales must be non-negative, got {} and {}", lr_scale,
            weight_decay_scale);
  lr_scale_[i] = lr_scale;
  wd_scale_[i] = weight_decay_scale;
}

Tensor Optimizer::grad_of(size_t i, const char* who) const {
  Tensor g = params_[i].grad();
  if (g.defined())
    EDL_CHECK(g.shape() == params_[i].shape() && g.dtype() == params_[i].dtype(),
              "{}: gradient of parameter {} is {} {} but the parameter is {} {}", who, i, shape_str(g.shape()),
              dtype_name(g.dtype()), shape_str(params_[i].shape()), dtype_name(params_[i].dtype()));
  return g;
}

// ---- SGD ----------------------------------------------------------------------------------------

SGD::SGD(std::vector<Tensor> params, double lr, double momentum_, bool nesterov_, double weight_decay_)
    : Optimizer(std::move(params), lr), momentum(momentum_), weight_decay(weight_decay_), nesterov(nesterov_) {
  EDL_CHECK(momentum >= 0, "SGD: momentum must be non-negative, got {}", momentum);
  EDL_CHECK(weight_decay >= 0, "SGD: weight_decay must be non-negative, got {}", weight_decay);
  // As in PyTorch: Nesterov's look-ahead is defined in terms of the momentum buffer.
  EDL_CHECK(!nesterov || momentum > 0, "SGD: Nesterov momentum needs momentum > 0");
  buf_.resize(params_.size());
}

void SGD::step() {
  NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor grad = grad_of(i, "SGD");
    if (!grad.defined()) continue;
    Tensor& p = params_[i];
    const double lr = lr_ * lr_scale_[i], weight_decay_i = weight_decay * wd_scale_[i];
    const bool first = !buf_[i].defined();
    if (momentum != 0 && first) buf_[i] = Tensor::empty(p.shape(), p.dtype());
    with_floating(p.dtype(), "SGD", [&](auto tag) {
      using T = decltype(tag);
      T* w = p.data<T>();
      const T* dw = grad.data<T>();
      T* buf = momentum != 0 ? buf_[i].data<T>() : nullptr;
      const int64_t n = p.numel();
      // Element by element, on every thread for big tensors (ResNet-18's SGD step took 48 ms on
      // one). The choices (a momentum buffer, Nesterov, the first step) are template arguments,
      // not tests in the loop, so that the compiler vectorizes it: ResNet-20's step (65 tensors,
      // all under the threads' threshold) 51 / 50 -> 23 / 21 ms over 39 steps (edl train
      // --profile, two alternating pairs), the trained weights identical bit for bit.
      const auto update = [&]<bool kBuf, bool kNesterov, bool kFirst>() {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
        for (int64_t k = 0; k < n; ++k) {
          const double g = dw[k] + weight_decay_i * w[k];
          double u = g;
          if constexpr (kBuf) {
            // The first step starts the buffer at g (not at momentum * 0 + g: the same value,
            // but PyTorch writes it this way and so do we).
            const double b = kFirst ? g : momentum * buf[k] + g;
            buf[k] = static_cast<T>(b);
            u = kNesterov ? g + momentum * b : b;
          }
          w[k] = static_cast<T>(w[k] - lr * u);
        }
      };
      if (!buf) update.template operator()<false, false, false>();
      else if (nesterov && first) update.template operator()<true, true, true>();
      else if (nesterov) update.template operator()<true, true, false>();
      else if (first) update.template operator()<true, false, true>();
      else update.template operator()<true, false, false>();
    });
  }
}

// Splits "<index>.<key>" and checks the index against the parameters.
static std::pair<size_t, std::string> parse_state_name(const std::string& name, size_t num_params, const char* who) {
  const size_t dot = name.find('.');
  size_t i = 0;
  bool ok = dot != std::string::npos && dot > 0;
  for (size_t k = 0; ok && k < dot; ++k) ok = std::isdigit(static_cast<unsigned char>(name[k])) != 0;
  if (ok) i = std::stoul(name.substr(0, dot));
  EDL_CHECK(ok && i < num_params, "{}: optimizer state entry '{}' does not name one of the {} parameters", who, name,
            num_params);
  return {i, name.substr(dot + 1)};
}

// A copy of a state tensor after checking it fits parameter i.
static Tensor checked_state(const Tensor& t, const Tensor& param, const std::string& name, const char* who) {
  EDL_CHECK(t.shape() == param.shape() && t.dtype() == param.dtype(),
            "{}: optimizer state '{}' is {} {}, its parameter is {} {}", who, name, shape_str(t.shape()),
            dtype_name(t.dtype()), shape_str(param.shape()), dtype_name(param.dtype()));
  return t.clone();
}

std::vector<std::pair<std::string, Tensor>> SGD::state() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (size_t i = 0; i < buf_.size(); ++i)
    if (buf_[i].defined()) out.emplace_back(std::to_string(i) + ".momentum_buffer", buf_[i]);
  return out;
}

void SGD::load_state(const std::vector<std::pair<std::string, Tensor>>& state) {
  std::vector<Tensor> buf(params_.size());
  for (const auto& [name, t] : state) {
    auto [i, key] = parse_state_name(name, params_.size(), "SGD");
    EDL_CHECK(key == "momentum_buffer", "SGD: unknown optimizer state '{}' (expected <index>.momentum_buffer)", name);
    buf[i] = checked_state(t, params_[i], name, "SGD");
  }
  buf_ = std::move(buf);
}

// ---- AdamW --------------------------------------------------------------------------------------

AdamW::AdamW(std::vector<Tensor> params, double lr, double beta1_, double beta2_, double eps_, double weight_decay_)
    : Optimizer(std::move(params), lr), beta1(beta1_), beta2(beta2_), eps(eps_), weight_decay(weight_decay_) {
  EDL_CHECK(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "AdamW: betas must be in [0, 1), got ({}, {})", beta1,
            beta2);
  EDL_CHECK(eps >= 0, "AdamW: eps must be non-negative, got {}", eps);
  EDL_CHECK(weight_decay >= 0, "AdamW: weight_decay must be non-negative, got {}", weight_decay);
  m_.resize(params_.size());
  v_.resize(params_.size());
  steps_.assign(params_.size(), 0);
}

void AdamW::step() {
  NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor grad = grad_of(i, "AdamW");
    if (!grad.defined()) continue;
    Tensor& p = params_[i];
    if (!m_[i].defined()) {
      m_[i] = Tensor::zeros(p.shape(), p.dtype());
      v_[i] = Tensor::zeros(p.shape(), p.dtype());
    }
    const int64_t t = ++steps_[i];
    // m and v start at zero, so early on they are biased towards zero by the factors
    // (1 - beta^t); dividing by them undoes it (Kingma & Ba 2015, section 3).
    const double bias_correction1 = 1 - std::pow(beta1, static_cast<double>(t));
    const double bias_correction2_sqrt = std::sqrt(1 - std::pow(beta2, static_cast<double>(t)));
    const double lr = lr_ * lr_scale_[i];
    const double step_size = lr / bias_correction1;
    const double decay = 1 - lr * weight_decay * wd_scale_[i];
    with_floating(p.dtype(), "AdamW", [&](auto tag) {
      using T = decltype(tag);
      T* w = p.data<T>();
      T* m = m_[i].data<T>();
      T* v = v_[i].data<T>();
      const T* dw = grad.data<T>();
      const int64_t n = p.numel();
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
      for (int64_t k = 0; k < n; ++k) {
        const double g = dw[k];
        const double mk = beta1 * m[k] + (1 - beta1) * g;
        const double vk = beta2 * v[k] + (1 - beta2) * g * g;
        m[k] = static_cast<T>(mk);
        v[k] = static_cast<T>(vk);
        const double denom = std::sqrt(vk) / bias_correction2_sqrt + eps;
        w[k] = static_cast<T>(w[k] * decay - step_size * mk / denom);
      }
    });
  }
}

std::vector<std::pair<std::string, Tensor>> AdamW::state() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!m_[i].defined()) continue;
    const std::string k = std::to_string(i);
    out.emplace_back(k + ".exp_avg", m_[i]);
    out.emplace_back(k + ".exp_avg_sq", v_[i]);
    out.emplace_back(k + ".step", Tensor::scalar(static_cast<double>(steps_[i]), DType::s64));
  }
  return out;
}

void AdamW::load_state(const std::vector<std::pair<std::string, Tensor>>& state) {
  std::vector<Tensor> m(params_.size()), v(params_.size());
  std::vector<int64_t> steps(params_.size(), 0);
  for (const auto& [name, t] : state) {
    auto [i, key] = parse_state_name(name, params_.size(), "AdamW");
    if (key == "exp_avg") m[i] = checked_state(t, params_[i], name, "AdamW");
    else if (key == "exp_avg_sq") v[i] = checked_state(t, params_[i], name, "AdamW");
    else if (key == "step") steps[i] = static_cast<int64_t>(t.item());
    else throw Error(fmt::format("AdamW: unknown optimizer state '{}' (expected exp_avg, exp_avg_sq, step)", name));
  }
  for (size_t i = 0; i < params_.size(); ++i)
    EDL_CHECK(m[i].defined() == v[i].defined() && m[i].defined() == (steps[i] > 0),
              "AdamW: optimizer state of parameter {} is incomplete (needs exp_avg, exp_avg_sq and step)", i);
  m_ = std::move(m), v_ = std::move(v), steps_ = std::move(steps);
}

// ---- learning-rate schedules --------------------------------------------------------------------

const char* lr_kind_name(LrKind kind) {
  switch (kind) {
    case LrKind::constant: return "constant";
    case LrKind::step: return "step";
    case LrKind::cosine: return "cosine";
    case LrKind::onecycle: return "onecycle";
    case LrKind::linear: return "linear";
  }
  return "?";
}

LrKind lr_kind_from_name(const std::string& name) {
  for (LrKind k : {LrKind::constant, LrKind::step, LrKind::cosine, LrKind::onecycle, LrKind::linear})
    if (name == lr_kind_name(k)) return k;
  throw Error(
      fmt::format("unknown learning-rate schedule '{}'; known schedules: constant, step, cosine, onecycle, linear", name));
}

LrSchedule::LrSchedule(LrScheduleOptions options) : o_(std::move(options)) {
  const char* kind = lr_kind_name(o_.kind);
  EDL_CHECK(o_.base_lr >= 0, "LrSchedule({}): base_lr must be non-negative, got {}", kind, o_.base_lr);
  EDL_CHECK(o_.total_steps >= 1, "LrSchedule({}): total_steps must be at least 1, got {}", kind, o_.total_steps);
  EDL_CHECK(o_.warmup_steps >= 0 && o_.warmup_steps < o_.total_steps,
            "LrSchedule({}): warmup_steps must be in [0, total_steps={}), got {}", kind, o_.total_steps,
            o_.warmup_steps);
  if (o_.kind == LrKind::step) {
    EDL_CHECK(o_.gamma > 0, "LrSchedule(step): gamma must be positive, got {}", o_.gamma);
    for (size_t i = 0; i < o_.milestones.size(); ++i)
      EDL_CHECK(o_.milestones[i] > 0 && (i == 0 || o_.milestones[i] > o_.milestones[i - 1]),
                "LrSchedule(step): milestones must be positive and strictly increasing, got {} at position {}",
                o_.milestones[i], i);
  }
  if (o_.kind == LrKind::onecycle) {
    EDL_CHECK(o_.warmup_steps == 0,
              "LrSchedule(onecycle): warmup_steps must be 0; one-cycle has its own warm-up (pct_start={})",
              o_.pct_start);
    EDL_CHECK(o_.pct_start > 0 && o_.pct_start < 1, "LrSchedule(onecycle): pct_start must be in (0, 1), got {}",
              o_.pct_start);
    EDL_CHECK(o_.div_factor > 0 && o_.final_div_factor > 0,
              "LrSchedule(onecycle): div_factor={} and final_div_factor={} must be positive", o_.div_factor,
              o_.final_div_factor);
  }
}

// Cosine interpolation from `from` (pct = 0) to `to` (pct = 1): half a period of a cosine,
// flat at both ends. PyTorch's OneCycleLR._annealing_cos.
static double cos_anneal(double from, double to, double pct) {
  return to + (from - to) / 2.0 * (std::cos(M_PI * pct) + 1.0);
}

double LrSchedule::lr(int64_t step) const {
  EDL_CHECK(step >= 0 && step < o_.total_steps, "LrSchedule({}): step {} is outside [0, total_steps={})",
            lr_kind_name(o_.kind), step, o_.total_steps);
  if (o_.kind == LrKind::onecycle) return onecycle(step);

  // Warm-up: a freshly initialized network has large, badly scaled gradients; a small learning
  // rate that grows linearly avoids a destructive first step (Goyal et al. 2017, section 2.2).
  // (step + 1) so that the very first step already moves, as does the last one of the warm-up.
  if (step < o_.warmup_steps)
    return o_.base_lr * static_cast<double>(step + 1) / static_cast<double>(o_.warmup_steps);

  const int64_t t = step - o_.warmup_steps;         // steps since the warm-up
  const int64_t T = o_.total_steps - o_.warmup_steps;  // steps the schedule proper spans
  switch (o_.kind) {
    case LrKind::constant:
      return o_.base_lr;
    case LrKind::step: {
      double lr = o_.base_lr;
      for (int64_t m : o_.milestones)
        if (t >= m) lr *= o_.gamma;
      return lr;
    }
    case LrKind::cosine:
      // PyTorch's CosineAnnealingLR with T_max = T: lr reaches 0 only at t = T, one step after
      // the last, so that no step is spent with a learning rate of exactly zero.
      return cos_anneal(o_.base_lr, 0.0, static_cast<double>(t) / static_cast<double>(T));
    case LrKind::linear:
      // As cosine, 0 would come one step after the last.
      return o_.base_lr * (1.0 - static_cast<double>(t) / static_cast<double>(T));
    case LrKind::onecycle:
      break;  // handled above
  }
  return o_.base_lr;
}

// torch.optim.lr_scheduler.OneCycleLR (Smith & Topin 2017, https://arxiv.org/abs/1708.07120)
// with three_phase=False and anneal_strategy='cos'. Phase 1 rises from initial_lr to max_lr,
// ending at step pct_start * total_steps - 1; phase 2 falls to min_lr, reached at the last step.
double LrSchedule::onecycle(int64_t step) const {
  const double max_lr = o_.base_lr;
  const double initial_lr = max_lr / o_.div_factor;
  const double min_lr = initial_lr / o_.final_div_factor;
  const double phase1_end = o_.pct_start * static_cast<double>(o_.total_steps) - 1;
  const double last = static_cast<double>(o_.total_steps - 1);
  const double s = static_cast<double>(step);
  // With very few steps phase 1 can end before step 0 (phase1_end <= 0): then only phase 2
  // remains, as in PyTorch. Phase 2 always has room: phase1_end < last because pct_start < 1.
  if (s <= phase1_end && phase1_end > 0) return cos_anneal(initial_lr, max_lr, s / phase1_end);
  return cos_anneal(max_lr, min_lr, (s - phase1_end) / (last - phase1_end));
}

// ---- Lookahead ----------------------------------------------------------------------------------

Lookahead::Lookahead(const NamedTensors& state) {
  for (const auto& [name, t] : state)
    if (is_floating(t.dtype())) {
      fast_.emplace_back(name, t);
      slow_.emplace_back(name, t.detach().clone());
    }
}

void Lookahead::update(double decay) {
  EDL_CHECK(decay >= 0 && decay <= 1, "Lookahead: decay must be in [0, 1], got {}", decay);
  NoGradGuard no_grad;
  for (size_t i = 0; i < fast_.size(); ++i)
    with_floating(fast_[i].second.dtype(), "Lookahead", [&](auto tag) {
      using T = decltype(tag);
      T* w = fast_[i].second.template data<T>();
      T* s = slow_[i].second.template data<T>();
      const int64_t n = fast_[i].second.numel();
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
      for (int64_t k = 0; k < n; ++k) {
        s[k] = static_cast<T>(decay * s[k] + (1 - decay) * w[k]);
        w[k] = s[k];
      }
    });
}

void Lookahead::load_state(const NamedTensors& state) {
  EDL_CHECK(state.size() == slow_.size(), "Lookahead: the checkpoint has {} slow tensors, the model {}", state.size(),
            slow_.size());
  NamedTensors slow;
  for (size_t i = 0; i < state.size(); ++i) {
    const auto& [name, t] = state[i];
    const Tensor& mine = slow_[i].second;
    EDL_CHECK(name == slow_[i].first && t.shape() == mine.shape() && t.dtype() == mine.dtype(),
              "Lookahead: checkpoint entry {} is '{}' {} {}, expected '{}' {} {}", i, name, shape_str(t.shape()),
              dtype_name(t.dtype()), slow_[i].first, shape_str(mine.shape()), dtype_name(mine.dtype()));
    slow.emplace_back(name, t.clone());
  }
  slow_ = std::move(slow);
}

}  // namespace edl
