// test_optim.cpp — SGD and AdamW step by step against values derived by hand from
// torch.optim's update rules, and the learning-rate schedules against their formulas.
//
// The optimizer tests use a two-element parameter p = (1, -2) and a fixed gradient g = (0.5, -1)
// set by hand before each step, so every number below can be checked with a pocket calculator.
//
// Run: ctest --test-dir build -R '^optim:'
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "engine/optim.h"

using namespace edl;

namespace {

Tensor param(DType dtype = DType::f32) { return Tensor::from({2}, {1.0, -2.0}, dtype).set_requires_grad(); }

// Runs `steps` steps with the fixed gradient g = (0.5, -1) and returns p after each step.
std::vector<std::vector<double>> run(Optimizer& opt, Tensor& p, int steps) {
  std::vector<std::vector<double>> out;
  for (int s = 0; s < steps; ++s) {
    p.set_grad(Tensor::from({2}, {0.5, -1.0}, p.dtype()));
    opt.step();
    out.push_back(p.to_vector());
  }
  return out;
}

void check_close(const std::vector<std::vector<double>>& got, const std::vector<std::vector<double>>& expected,
                 double tol = 1e-6) {
  REQUIRE(got.size() == expected.size());
  for (size_t s = 0; s < got.size(); ++s)
    for (size_t i = 0; i < got[s].size(); ++i) {
      INFO("step " << s + 1 << " element " << i);
      CHECK(got[s][i] == Approx(expected[s][i]).margin(tol));
    }
}

}  // namespace

TEST_CASE("optim: SGD without momentum is p -= lr * g", "[optim]") {
  Tensor p = param();
  SGD opt({p}, 0.1);
  // p = (1, -2) - 0.1 * (0.5, -1) = (0.95, -1.9), then (0.9, -1.8)
  check_close(run(opt, p, 2), {{0.95, -1.9}, {0.9, -1.8}});
}

TEST_CASE("optim: SGD with momentum matches torch.optim.SGD", "[optim]") {
  Tensor p = param();
  SGD opt({p}, 0.1, 0.9);
  // lr 0.1, momentum 0.9, element 0 (g = 0.5):
  //   step 1: buf = g = 0.5                     p = 1     - 0.1 * 0.5   = 0.95
  //   step 2: buf = 0.9 * 0.5  + 0.5 = 0.95     p = 0.95  - 0.1 * 0.95  = 0.855
  //   step 3: buf = 0.9 * 0.95 + 0.5 = 1.355    p = 0.855 - 0.1 * 1.355 = 0.7195
  // element 1 (g = -1): buf = -1, -1.9, -2.71;  p = -1.9, -1.71, -1.439
  check_close(run(opt, p, 3), {{0.95, -1.9}, {0.855, -1.71}, {0.7195, -1.439}});
}

TEST_CASE("optim: SGD with Nesterov momentum matches torch.optim.SGD", "[optim]") {
  Tensor p = param();
  SGD opt({p}, 0.1, 0.9, true);
  // u = g + momentum * buf, with buf as in the momentum test. Element 0 (g = 0.5):
  //   step 1: buf = 0.5,   u = 0.5 + 0.9 * 0.5   = 0.95     p = 1      - 0.095   = 0.905
  //   step 2: buf = 0.95,  u = 0.5 + 0.9 * 0.95  = 1.355    p = 0.905  - 0.1355  = 0.7695
  //   step 3: buf = 1.355, u = 0.5 + 0.9 * 1.355 = 1.7195   p = 0.7695 - 0.17195 = 0.59755
  // element 1 (g = -1): buf = -1, -1.9, -2.71;  u = -1.9, -2.71, -3.439;  p = -1.81, -1.539, -1.1951
  check_close(run(opt, p, 3), {{0.905, -1.81}, {0.7695, -1.539}, {0.59755, -1.1951}});
}

TEST_CASE("optim: SGD weight decay is added to the gradient before momentum", "[optim]") {
  Tensor p = param();
  SGD opt({p}, 0.1, 0.9, false, 0.1);
  // g' = g + 0.1 p. Element 0:
  //   step 1: g' = 0.5 + 0.1 * 1      = 0.6        buf = 0.6                         p = 1      - 0.06     = 0.94
  //   step 2: g' = 0.5 + 0.1 * 0.94   = 0.594      buf = 0.9 * 0.6   + 0.594 = 1.134   p = 0.94   - 0.1134   = 0.8266
  //   step 3: g' = 0.5 + 0.1 * 0.8266 = 0.58266    buf = 0.9 * 1.134 + 0.58266 = 1.60326
  //                                                                                  p = 0.8266 - 0.160326 = 0.666274
  // element 1 (g = -1, p = -2): g' = -1.2, -1.188, -1.16532; p = -1.88, -1.6532, -1.332548
  check_close(run(opt, p, 3), {{0.94, -1.88}, {0.8266, -1.6532}, {0.666274, -1.332548}});
}

TEST_CASE("optim: SGD works in f64 and skips parameters without a gradient", "[optim]") {
  Tensor p = param(DType::f64), frozen = Tensor::from({1}, {3.0}).set_requires_grad();
  SGD opt({p, frozen}, 0.1, 0.9);
  check_close(run(opt, p, 3), {{0.95, -1.9}, {0.855, -1.71}, {0.7195, -1.439}}, 1e-12);
  CHECK(frozen.item() == 3.0);
  opt.zero_grad();
  CHECK_FALSE(p.grad().defined());
}

TEST_CASE("optim: AdamW with a constant gradient matches torch.optim.AdamW", "[optim]") {
  Tensor p = param();
  AdamW opt({p}, 0.1);  // betas (0.9, 0.999), eps 1e-8, weight_decay 0.01
  // With a constant gradient g the bias-corrected moments are exact at every step t:
  //   m_t = (1 - 0.9^t) g      -> m_t / (1 - 0.9^t)   = g
  //   v_t = (1 - 0.999^t) g^2  -> v_t / (1 - 0.999^t) = g^2
  // so each step is  p = p * (1 - lr * wd) - lr * g / (|g| + eps)
  //                    = p * 0.999 - 0.1 * sign(g) * |g| / (|g| + 1e-8).
  // Element 0 (g = 0.5, step 0.1 * 0.5 / (0.5 + 1e-8) = 0.099999998):
  //   p1 = 1          * 0.999 - 0.099999998 = 0.899000002
  //   p2 = 0.899000002 * 0.999 - 0.099999998 = 0.798101004
  //   p3 = 0.798101004 * 0.999 - 0.099999998 = 0.697302905
  // Element 1 (g = -1, step -0.1 / (1 + 1e-8) = -0.099999999):
  //   p1 = -2 * 0.999 + 0.099999999 = -1.898000001,  p2 = -1.796102002,  p3 = -1.694305901
  check_close(run(opt, p, 3), {{0.899000002, -1.898000001}, {0.798101004, -1.796102002}, {0.697302905, -1.694305901}});
}

TEST_CASE("optim: AdamW with a changing gradient follows the moment estimates", "[optim]") {
  Tensor p = Tensor::from({1}, {1.0}).set_requires_grad();
  AdamW opt({p}, 0.1);
  const double grads[3] = {0.5, -1.0, 0.25};
  std::vector<double> got;
  for (double g : grads) {
    p.set_grad(Tensor::from({1}, {g}));
    opt.step();
    got.push_back(p.item());
  }
  // step 1 (g = 0.5):  as in the constant case, p = 0.999 - 0.099999998 = 0.899000002
  // step 2 (g = -1):   m = 0.9 * 0.05 + 0.1 * (-1)            = -0.055
  //                    v = 0.999 * 0.00025 + 0.001 * 1        = 0.00124975
  //                    m^ = -0.055 / (1 - 0.81)               = -0.289473684
  //                    v^ = 0.00124975 / (1 - 0.998001)       = 0.625187594,  sqrt = 0.790688051
  //                    p = 0.899000002 * 0.999 + 0.1 * 0.289473684 / 0.790688051 = 0.934711354
  // step 3 (g = 0.25): m = 0.9 * (-0.055) + 0.1 * 0.25         = -0.0245
  //                    v = 0.999 * 0.00124975 + 0.001 * 0.0625 = 0.00131100025
  //                    m^ = -0.0245 / (1 - 0.729)              = -0.090405904
  //                    v^ = 0.00131100025 / (1 - 0.997002999)  = 0.437437375,  sqrt = 0.661390486
  //                    p = 0.934711354 * 0.999 + 0.1 * 0.090405904 / 0.661390486 = 0.947445709
  CHECK(got[0] == Approx(0.899000002).margin(1e-6));
  CHECK(got[1] == Approx(0.934711354).margin(1e-6));
  CHECK(got[2] == Approx(0.947445709).margin(1e-6));
}

TEST_CASE("optim: AdamW counts steps per parameter, a skipped parameter starts later", "[optim]") {
  Tensor a = Tensor::from({1}, {1.0}).set_requires_grad(), b = Tensor::from({1}, {1.0}).set_requires_grad();
  AdamW opt({a, b}, 0.1);
  a.set_grad(Tensor::from({1}, {0.5}));
  opt.step();  // b has no gradient: untouched, not even decayed
  CHECK(b.item() == 1.0);
  a.set_grad(Tensor::from({1}, {0.5}));
  b.set_grad(Tensor::from({1}, {0.5}));
  opt.step();
  // b's first step is a first step (t = 1) even though it is the optimizer's second.
  CHECK(a.item() == Approx(0.798101004).margin(1e-6));
  CHECK(b.item() == Approx(0.899000002).margin(1e-6));
}

TEST_CASE("optim: set_lr changes the step size, bad hyper-parameters are named", "[optim]") {
  Tensor p = param();
  SGD opt({p}, 0.1);
  opt.set_lr(0.2);
  CHECK(opt.lr() == 0.2);
  // p = (1, -2) - 0.2 * (0.5, -1) = (0.9, -1.8)
  check_close(run(opt, p, 1), {{0.9, -1.8}});

  CHECK_THROWS_WITH(SGD({p}, 0.1, 0.0, true), Catch::Contains("Nesterov momentum needs momentum > 0"));
  CHECK_THROWS_WITH(AdamW({p}, 0.1, 1.0), Catch::Contains("betas must be in [0, 1)"));
  CHECK_THROWS_WITH(SGD({Tensor::zeros({2}, DType::s32)}, 0.1), Catch::Contains("parameter 0 has dtype s32"));
  CHECK_THROWS_WITH(opt.set_lr(-1), Catch::Contains("learning rate must be non-negative"));
}

// ---- schedules ----------------------------------------------------------------------------------

TEST_CASE("optim: linear warm-up rises to the base rate, then the schedule runs", "[optim]") {
  LrSchedule s({.kind = LrKind::constant, .base_lr = 0.1, .total_steps = 100, .warmup_steps = 10});
  // lr(s) = 0.1 * (s + 1) / 10 during the warm-up
  CHECK(s.lr(0) == Approx(0.01));
  CHECK(s.lr(4) == Approx(0.05));
  CHECK(s.lr(9) == Approx(0.1));
  CHECK(s.lr(10) == Approx(0.1));
  CHECK(s.lr(99) == Approx(0.1));
  CHECK_THROWS_WITH(s.lr(100), Catch::Contains("step 100 is outside [0, total_steps=100)"));
}

TEST_CASE("optim: cosine starts at the base rate, halves at mid-point and ends near zero", "[optim]") {
  // lr = 0.1 * (1 + cos(pi * t / T)) / 2, T = 100 steps
  LrSchedule s({.kind = LrKind::cosine, .base_lr = 0.1, .total_steps = 100});
  CHECK(s.lr(0) == Approx(0.1));
  CHECK(s.lr(50) == Approx(0.05));
  CHECK(s.lr(99) == Approx(0.1 * (1 + std::cos(M_PI * 0.99)) / 2));  // 2.4672e-5
  CHECK(s.lr(99) < 3e-5);
  for (int64_t i = 1; i < 100; ++i) CHECK(s.lr(i) < s.lr(i - 1));

  // With a warm-up of 10 the cosine spans the remaining 100 steps: t = step - 10.
  LrSchedule w({.kind = LrKind::cosine, .base_lr = 0.1, .total_steps = 110, .warmup_steps = 10});
  CHECK(w.lr(9) == Approx(0.1));
  CHECK(w.lr(10) == Approx(0.1));
  CHECK(w.lr(60) == Approx(0.05));
  CHECK(w.lr(109) == Approx(s.lr(99)));
}

TEST_CASE("optim: step schedule multiplies by gamma at each milestone after the warm-up", "[optim]") {
  LrSchedule s({.kind = LrKind::step, .base_lr = 0.1, .total_steps = 100, .milestones = {30, 60}, .gamma = 0.1});
  CHECK(s.lr(0) == Approx(0.1));
  CHECK(s.lr(29) == Approx(0.1));
  CHECK(s.lr(30) == Approx(0.01));
  CHECK(s.lr(59) == Approx(0.01));
  CHECK(s.lr(60) == Approx(0.001));
  CHECK(s.lr(99) == Approx(0.001));

  LrSchedule w({.kind = LrKind::step, .base_lr = 0.1, .total_steps = 100, .warmup_steps = 10, .milestones = {30}});
  CHECK(w.lr(39) == Approx(0.1));
  CHECK(w.lr(40) == Approx(0.01));
  CHECK_THROWS_WITH(LrSchedule({.kind = LrKind::step, .total_steps = 100, .milestones = {50, 20}}),
                    Catch::Contains("strictly increasing"));
}

TEST_CASE("optim: one-cycle matches OneCycleLR (cos, pct_start 0.3, div 25, final div 1e4)", "[optim]") {
  LrSchedule s({.kind = LrKind::onecycle, .base_lr = 0.1, .total_steps = 100});
  // initial = 0.1 / 25 = 0.004, min = 0.004 / 1e4 = 4e-7. Phase 1 ends at 0.3 * 100 - 1 = 29,
  // phase 2 at 99. cos_anneal(a, b, pct) = b + (a - b) / 2 * (1 + cos(pi * pct)).
  CHECK(s.lr(0) == Approx(0.004));
  // step 14: 0.1 + (0.004 - 0.1) / 2 * (1 + cos(pi * 14/29)) = 0.0494013324
  CHECK(s.lr(14) == Approx(0.0494013324));
  CHECK(s.lr(29) == Approx(0.1));
  // step 64, the middle of phase 2 (pct = 35/70): (0.1 + 4e-7) / 2
  CHECK(s.lr(64) == Approx(0.0500002));
  CHECK(s.lr(99) == Approx(4e-7));
  CHECK_THROWS_WITH(LrSchedule({.kind = LrKind::onecycle, .total_steps = 100, .warmup_steps = 5}),
                    Catch::Contains("one-cycle has its own warm-up"));
}

TEST_CASE("optim: schedule kinds parse by name, an unknown name lists the known ones", "[optim]") {
  CHECK(lr_kind_from_name("constant") == LrKind::constant);
  CHECK(lr_kind_from_name("step") == LrKind::step);
  CHECK(lr_kind_from_name("cosine") == LrKind::cosine);
  CHECK(lr_kind_from_name("onecycle") == LrKind::onecycle);
  CHECK(std::string(lr_kind_name(LrKind::cosine)) == "cosine");
  CHECK_THROWS_WITH(lr_kind_from_name("cosin"),
                    Catch::Contains("unknown learning-rate schedule 'cosin'") &&
                        Catch::Contains("constant, step, cosine, onecycle"));
}

TEST_CASE("optim: linear falls from the base rate to zero after the warm-up", "[optim]") {
  // lr = 0.1 * (1 - t / T), t = step - 10, T = 100 - 10.
  LrSchedule s({.kind = LrKind::linear, .base_lr = 0.1, .total_steps = 100, .warmup_steps = 10});
  CHECK(s.lr(0) == Approx(0.01));
  CHECK(s.lr(9) == Approx(0.1));
  CHECK(s.lr(10) == Approx(0.1));
  CHECK(s.lr(55) == Approx(0.05));
  CHECK(s.lr(99) == Approx(0.1 / 90));
  CHECK(lr_kind_from_name("linear") == LrKind::linear);
}

TEST_CASE("optim: per-parameter scales multiply the learning rate and the weight decay", "[optim]") {
  // Parameter b with lr x 4 and weight decay / 4: its gradient step is 4 times a's, its decay
  // per step (lr * weight_decay * p) the same. SGD without momentum, lr 0.1, weight decay 0.2:
  //   a: p = 1 - 0.1 * (0.5 + 0.2 * 1)        = 0.93
  //   b: p = 1 - 0.4 * (0.5 + 0.05 * 1)       = 0.78
  Tensor a = Tensor::from({1}, {1.0}).set_requires_grad(), b = Tensor::from({1}, {1.0}).set_requires_grad();
  SGD sgd({a, b}, 0.1, 0, false, 0.2);
  sgd.set_scales(1, 4, 0.25);
  a.set_grad(Tensor::from({1}, {0.5}));
  b.set_grad(Tensor::from({1}, {0.5}));
  sgd.step();
  CHECK(a.item() == Approx(0.93));
  CHECK(b.item() == Approx(0.78));
  // AdamW: the first step moves by lr exactly (m / sqrt(v) = sign(g)); decay p *= 1 - lr * wd.
  //   b: p = 1 * (1 - 0.4 * 0.05) - 0.4 = 0.58
  Tensor c = Tensor::from({1}, {1.0}).set_requires_grad();
  AdamW adam({c}, 0.1, 0.9, 0.999, 0, 0.2);
  adam.set_scales(0, 4, 0.25);
  c.set_grad(Tensor::from({1}, {0.5}));
  adam.step();
  CHECK(c.item() == Approx(0.58));
  CHECK_THROWS_WITH(sgd.set_scales(2, 1), Catch::Contains("there are 2 parameters"));
  CHECK_THROWS_WITH(sgd.set_scales(0, -1), Catch::Contains("must be non-negative"));
}

TEST_CASE("optim: Lookahead moves slow weights towards the fast ones and restarts from them", "[optim]") {
  Tensor w = Tensor::from({2}, {1.0, -2.0}), count = Tensor::zeros({}, DType::s64);
  Lookahead la({{"w", w}, {"num_batches_tracked", count}});
  REQUIRE(la.state().size() == 1);  // the integer entry is left alone
  w.copy_(Tensor::from({2}, {3.0, 2.0}));  // the optimizer moved the fast weights
  la.update(0.75);                          // slow = 0.75 * (1, -2) + 0.25 * (3, 2) = (1.5, -1)
  CHECK(w.to_vector() == std::vector<double>{1.5, -1.0});
  CHECK(la.state()[0].second.to_vector() == std::vector<double>{1.5, -1.0});
  w.copy_(Tensor::from({2}, {0.0, 0.0}));
  la.update(1.0);  // back to the slow weights
  CHECK(w.to_vector() == std::vector<double>{1.5, -1.0});
  w.copy_(Tensor::from({2}, {4.0, 8.0}));
  la.update(0.0);  // the slow copy becomes the model, which keeps its values
  CHECK(w.to_vector() == std::vector<double>{4.0, 8.0});
  CHECK(la.state()[0].second.to_vector() == std::vector<double>{4.0, 8.0});
  CHECK_THROWS_WITH(la.load_state({{"v", Tensor::zeros({2})}}), Catch::Contains("expected 'w'"));
  CHECK_THROWS_WITH(la.update(1.5), Catch::Contains("decay must be in [0, 1]"));
}
