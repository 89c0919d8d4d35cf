// op_tests.cpp — tests generated from the op list (kernels/op_list.h), two per op:
//
//   op.<name>.gradient  For every sample marked gradcheck, the reference backward in f64
//                       against central finite differences of the reference forward:
//                       dL/dx_j ~ (L(x + h e_j) - L(x - h e_j)) / 2h, with L = sum(y * r)
//                       for a fixed random r (so every output element matters).
//   op.<name>.variants  For every sample: the reference in f32 against the reference in f64
//                       (forward and backward), then every other variant that supports the
//                       sample against the reference on the inputs its judge prescribes (and,
//                       for an op whose gradients are dispatched one by one, each gradient
//                       asked for alone), then the variants dispatch chooses.
//
// Run one op's tests:  ctest --test-dir build -R 'op\.conv2d\.'
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/random.h"

namespace edl::testing {

namespace {

Tensors clone_all(const Tensors& xs) {
  Tensors out;
  for (const Tensor& x : xs) out.push_back(x.clone());
  return out;
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::abs(t.at(i)));
  return m;
}

// Largest |a - b| relative to the size of the reference b (at least 1, so that outputs near
// zero are judged on an absolute scale); infinite where a has a NaN or infinity that b does not
// (std::max would drop a NaN difference: NaN < d is false). Variants' outputs start as NaN in
// the tests (EDL_POISON_EMPTY), so an element a kernel leaves unwritten shows here.
double relative_error(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  double d = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double x = a.at(i), y = b.at(i);
    if (std::isfinite(x) && std::isfinite(y)) d = std::max(d, std::abs(x - y));
    else if (!(x == y || (std::isnan(x) && std::isnan(y)))) return std::numeric_limits<double>::infinity();
  }
  return d / std::max(1.0, max_abs(b));
}

bool grad_input(const OpDef& op, const Tensors& in, size_t i) { return op.is_differentiable(i) && is_floating(in[i].dtype()); }

// A random tensor shaped like y, the weights of L = sum(y * r).
Tensor random_like(const Tensor& y, uint64_t seed) {
  Rng rng(seed);
  Tensor r = Tensor::empty(y.shape(), DType::f64);
  for (int64_t i = 0; i < r.numel(); ++i) r.data<double>()[i] = rng.normal();
  return r.to(y.dtype());
}

double dot(const Tensor& a, const Tensor& b) {
  double s = 0;
  for (int64_t i = 0; i < a.numel(); ++i) s += a.at(i) * b.at(i);
  return s;
}

// Runs forward and backward of `variant` with dy = r; returns y and the input gradients.
std::pair<Tensor, Tensors> forward_backward(const OpDef& op, Tensors in, const Attrs& attrs, const std::string& variant,
                                            uint64_t seed) {
  for (size_t i = 0; i < in.size(); ++i)
    if (grad_input(op, in, i)) in[i].set_requires_grad(true);
  Tensor y = call(op, in, attrs, variant);
  Tensors grads(in.size());
  if (y.requires_grad()) {
    y.backward(random_like(y, seed));
    for (size_t i = 0; i < in.size(); ++i)
      if (grad_input(op, in, i)) grads[i] = in[i].grad();
  }
  return {y.detach(), grads};
}

void check_gradient(const OpDef& op) {
  int checked = 0;
  for (const Sample& sample : op.samples()) {
    if (!sample.gradcheck) continue;
    DYNAMIC_SECTION(op.name << " [" << sample.name << "] " << sample.attrs.str()) {
      Tensors in = make_inputs(sample, 1, DType::f64);
      auto [y, grads] = forward_backward(op, clone_all(in), sample.attrs, "reference", 2);
      const Tensor r = random_like(y, 2);
      const double h = 1e-6;
      for (size_t i = 0; i < in.size(); ++i) {
        if (!grad_input(op, in, i)) continue;
        REQUIRE(grads[i].defined());
        REQUIRE(grads[i].shape() == in[i].shape());
        // Every element of small inputs; an evenly spread subset of larger ones.
        const int64_t n = in[i].numel(), step = std::max<int64_t>(1, n / 200);
        for (int64_t j = 0; j < n; j += step) {
          NoGradGuard no_grad;
          Tensors xp = clone_all(in), xm = clone_all(in);
          xp[i].data<double>()[j] += h;
          xm[i].data<double>()[j] -= h;
          const double numeric = (dot(call(op, xp, sample.attrs, "reference"), r) -
                                  dot(call(op, xm, sample.attrs, "reference"), r)) / (2 * h);
          const double analytic = grads[i].at(j);
          INFO("input " << i << " element " << j << ": finite difference " << numeric << ", backward " << analytic);
          CHECK(std::abs(numeric - analytic) <= 1e-6 + 1e-5 * std::abs(numeric));
        }
      }
      ++checked;
    }
  }
  SUCCEED(op.name << ": gradient-checked samples: " << checked);
}

// The gradients from `var`'s backward asked for those of the inputs in `asked` only (needs_grad
// true for them alone), with dy = r as in forward_backward: what the backward pass runs when
// dispatch chooses a variant per gradient (OpDef::gradients_dispatched).
// into: BackwardCtx::grad_into (none by default); dy_writable: BackwardCtx's.
Tensors gradients_asked(const OpDef& op, const Variant& var, const Tensors& in, const Attrs& attrs,
                        const std::vector<bool>& asked, uint64_t seed, const Tensors& into = {},
                        bool dy_writable = false) {
  Tensors saved;
  const Shape out_shape = op.shape(in, attrs);
  ForwardCtx fctx{in, attrs, out_shape, saved};
  Tensor y = var.forward(fctx);
  Tensor dy = random_like(y, seed);
  const Tensors none(in.size());
  BackwardCtx bctx{in, attrs, y, saved, dy, asked, into.empty() ? none : into, dy_writable};
  Tensors g = (var.backward ? var.backward : op.reference().backward)(bctx);
  g.resize(in.size());
  return g;
}

void check_variants(const OpDef& op) {
  for (const Sample& sample : op.samples()) {
    DYNAMIC_SECTION(op.name << " [" << sample.name << "] " << sample.attrs.str()) {
      // The reference in f32 agrees with itself in f64: the float path loses only rounding.
      {
        auto [y64, g64] = forward_backward(op, make_inputs(sample, 3, DType::f64), sample.attrs, "reference", 4);
        auto [y32, g32] = forward_backward(op, make_inputs(sample, 3, DType::f32), sample.attrs, "reference", 4);
        INFO("reference f32 vs f64, forward");
        CHECK(relative_error(y32, y64) < 1e-4);
        for (size_t i = 0; i < g64.size(); ++i)
          if (g64[i].defined()) {
            INFO("reference f32 vs f64, gradient of input " << i);
            CHECK(relative_error(g32[i], g64[i]) < 1e-4);
          }
      }
      // Every other variant against the reference, on the inputs its judge prescribes.
      for (size_t v = 1; v < op.variants.size(); ++v) {
        const Variant& var = op.variants[v];
        const Tensors in = judge_inputs(var.judge, make_inputs(sample, 5, DType::f32));
        if (var.supports && !var.supports(in, sample.attrs)) continue;
        auto [y_ref, g_ref] = forward_backward(op, clone_all(in), sample.attrs, "reference", 6);
        auto [y_var, g_var] = forward_backward(op, clone_all(in), sample.attrs, var.name, 6);
        INFO("variant " << var.name << " (judged: " << judge_name(var.judge) << "), forward");
        CHECK(relative_error(y_var, y_ref) <= var.tolerance);
        for (size_t i = 0; i < g_ref.size(); ++i)
          if (g_ref[i].defined()) {
            INFO("variant " << var.name << ", gradient of input " << i);
            CHECK(relative_error(g_var[i], g_ref[i]) <= var.tolerance);
          }
        // Dispatch may ask this variant for some of the gradients and another variant for the
        // rest: each gradient alone, and all but the first (conv2d: dw and db, dx elsewhere).
        if (op.gradients_dispatched) {
          std::vector<std::vector<bool>> subsets;
          for (size_t i = 0; i < g_ref.size(); ++i) {
            subsets.emplace_back(g_ref.size(), false);
            subsets.back()[i] = true;
          }
          if (g_ref.size() > 2) {
            subsets.emplace_back(g_ref.size(), true);
            subsets.back()[0] = false;
          }
          for (std::vector<bool>& asked : subsets) {
            for (size_t i = 0; i < asked.size(); ++i) asked[i] = asked[i] && g_ref[i].defined();
            const Tensors g = gradients_asked(op, var, in, sample.attrs, asked, 6);
            for (size_t i = 0; i < asked.size(); ++i)
              if (asked[i]) {
                INFO("variant " << var.name << ", gradient of input " << i << " asked for with "
                                << std::count(asked.begin(), asked.end(), true) - 1 << " other(s)");
                REQUIRE(g[i].defined());
                CHECK(relative_error(g[i], g_ref[i]) <= var.tolerance);
              }
          }
        }
      }
      // Given a gradient to add into (BackwardCtx::grad_into), each variant either returns that
      // tensor holding it plus the input's gradient, or ignores it and returns the gradient.
      for (size_t v = 0; v < op.variants.size(); ++v) {
        const Variant& var = op.variants[v];
        const Tensors in = judge_inputs(var.judge, make_inputs(sample, 5, DType::f32));
        if (var.supports && !var.supports(in, sample.attrs)) continue;
        const Tensors g_ref = forward_backward(op, clone_all(in), sample.attrs, "reference", 6).second;
        for (size_t i = 0; i < g_ref.size(); ++i) {
          if (!g_ref[i].defined()) continue;
          std::vector<bool> asked(g_ref.size(), false);
          asked[i] = true;
          Tensors into(in.size());
          into[i] = random_like(g_ref[i], 7);
          const Tensor held = into[i].clone();
          const Tensors g = gradients_asked(op, var, in, sample.attrs, asked, 6, into);
          INFO("variant " << var.name << ", gradient of input " << i << " with one held to add into");
          REQUIRE(g[i].defined());
          const bool added = g[i].same_storage(into[i]);
          CHECK(relative_error(g[i], added ? held + g_ref[i] : g_ref[i]) <= std::max(var.tolerance, 1e-5));
        }
      }
      // Given dy to overwrite (BackwardCtx::dy_writable), as the autograd gives it where nothing
      // else holds it, each variant's gradients are still the reference's.
      for (size_t v = 0; v < op.variants.size(); ++v) {
        const Variant& var = op.variants[v];
        const Tensors in = judge_inputs(var.judge, make_inputs(sample, 5, DType::f32));
        if (var.supports && !var.supports(in, sample.attrs)) continue;
        const Tensors g_ref = forward_backward(op, clone_all(in), sample.attrs, "reference", 6).second;
        std::vector<bool> asked(g_ref.size());
        for (size_t i = 0; i < g_ref.size(); ++i) asked[i] = g_ref[i].defined();
        const Tensors g = gradients_asked(op, var, in, sample.attrs, asked, 6, {}, /*dy_writable=*/true);
        for (size_t i = 0; i < g_ref.size(); ++i)
          if (asked[i]) {
            INFO("variant " << var.name << ", gradient of input " << i << " with dy writable");
            REQUIRE(g[i].defined());
            CHECK(relative_error(g[i], g_ref[i]) <= var.tolerance);
          }
      }
      // What training runs: the variants dispatch chooses, for the forward and (per input, with
      // gradients_dispatched) for the gradients, against the reference.
      {
        const Tensors in = make_inputs(sample, 5, DType::f32);
        auto [y_ref, g_ref] = forward_backward(op, clone_all(in), sample.attrs, "reference", 6);
        auto [y_dis, g_dis] = forward_backward(op, clone_all(in), sample.attrs, "", 6);
        double tolerance = 0;  // the loosest of the variants dispatch may choose
        for (const Variant& var : op.variants)
          if (var.automatic) tolerance = std::max(tolerance, var.tolerance);
        INFO("dispatched, forward");
        CHECK(relative_error(y_dis, y_ref) <= tolerance);
        for (size_t i = 0; i < g_ref.size(); ++i)
          if (g_ref[i].defined()) {
            INFO("dispatched, gradient of input " << i);
            CHECK(relative_error(g_dis[i], g_ref[i]) <= tolerance);
          }
      }
    }
  }
}

class OpTest : public Catch::ITestInvoker {
 public:
  OpTest(const OpDef& op, void (*check)(const OpDef&)) : op_(op), check_(check) {}
  void invoke() const override { check_(op_); }

 private:
  const OpDef& op_;
  void (*check_)(const OpDef&);
};

}  // namespace

void register_op_tests() {
  for (const OpDef& op : all_ops()) {
    // Catch2 keeps its own copies of the name and tags.
    Catch::AutoReg(new OpTest(op, check_gradient), CATCH_INTERNAL_LINEINFO, Catch::StringRef(),
                   Catch::NameAndTags{"op." + op.name + ".gradient", "[op][gradient][" + op.name + "]"});
    Catch::AutoReg(new OpTest(op, check_variants), CATCH_INTERNAL_LINEINFO, Catch::StringRef(),
                   Catch::NameAndTags{"op." + op.name + ".variants", "[op][variants][" + op.name + "]"});
  }
}

}  // namespace edl::testing
