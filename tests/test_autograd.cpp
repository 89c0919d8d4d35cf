// test_autograd.cpp — the autograd engine on hand-derived values: accumulation across uses,
// graph freeing, no-grad scope, detach, broadcasting gradients, gradients from the variants
// dispatch chose for each of them.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

#include "engine/autograd.h"
#include "engine/ops.h"

using namespace edl;

TEST_CASE("autograd: scalar expression against hand-derived gradients", "[autograd]") {
  // f(a, b) = (a * b + a) * b,  a = 2, b = 3  ->  f = (6 + 2) * 3 = 24
  // df/da = (b + 1) * b = 12,   df/db = (a*b + a) + a*b = 8 + 6 = 14
  Tensor a = Tensor::scalar(2.0, DType::f64).set_requires_grad();
  Tensor b = Tensor::scalar(3.0, DType::f64).set_requires_grad();
  Tensor f = (a * b + a) * b;
  CHECK(f.item() == 24.0);
  f.backward();
  CHECK(a.grad().item() == 12.0);
  CHECK(b.grad().item() == 14.0);
}

TEST_CASE("autograd: a tensor used twice receives the sum of both gradients", "[autograd]") {
  // y = sum(x * x) -> dy/dx = 2x
  Tensor x = Tensor::from({3}, {1, -2, 5}).set_requires_grad();
  sum(x * x).backward();
  CHECK(x.grad().to_vector() == std::vector<double>{2, -4, 10});
}

TEST_CASE("autograd: a gradient handed to two inputs is never changed under either", "[autograd]") {
  // add (float32, same shapes) passes dy on to both inputs in one buffer. Here a and b also get
  // gradients from a * b; summed into that shared buffer in place, a's would reach b's too.
  // y = sum((a + b) * w) + sum(a * b), a = 2x, b = 3x: dy/dx = 5 w + 12 x. Both orders of the
  // sum (the order in which the nodes' gradients arrive depends on it).
  const Tensor w = Tensor::from({4}, {1, -1, 2, 0.5});
  for (bool residual_first : {true, false}) {
    Tensor x = Tensor::from({4}, {1, 2, 3, 4}).set_requires_grad();
    Tensor a = x * 2.0, b = x * 3.0;
    Tensor r = sum((a + b) * w), s = sum(a * b);
    (residual_first ? r + s : s + r).backward();
    CHECK(x.grad().to_vector() == std::vector<double>{17, 19, 46, 50.5});
  }

  // Leaves: each gets a gradient of its own, which the user may change.
  Tensor p = Tensor::from({4}, {1, 2, 3, 4}).set_requires_grad();
  Tensor q = Tensor::from({4}, {0, 0, 0, 0}).set_requires_grad();
  sum((p + q) * w).backward();
  REQUIRE_FALSE(p.grad().same_storage(q.grad()));
  Tensor pg = p.grad();
  pg.fill_(7);
  CHECK(q.grad().to_vector() == std::vector<double>{1, -1, 2, 0.5});
  sum((p + q) * w).backward();  // accumulates into each leaf's own gradient
  CHECK(p.grad().to_vector() == std::vector<double>{8, 6, 9, 7.5});
  CHECK(q.grad().to_vector() == std::vector<double>{2, -2, 4, 1});
}

TEST_CASE("autograd: a backward overwrites dy only where nothing else holds it (batch norm)", "[autograd]") {
  // batch_norm2d's simd variant writes dx into dy where the autograd says it may
  // (BackwardCtx::dy_writable). Here its dy is the buffer add hands to both its inputs, u and t:
  // written over while t's node has yet to read it, z's gradient would be wrong. Both orders of
  // the sum; the gradients against the reference variant's.
  const Sample sample{"bn", {{{2, 3, 4, 4}}, {{2, 3, 4, 4}}, {{2, 3, 4, 4}}}, {}, false};
  const Tensors in = make_inputs(sample, 11);  // x, z, r
  for (bool bn_first : {true, false}) {
    Tensors grads[2];
    for (const char* variant : {"simd", "reference"}) {
      Tensor x = in[0].clone().set_requires_grad(), z = in[1].clone().set_requires_grad();
      Tensor gamma = Tensor::from({3}, {1.0, -0.5, 2.0}).set_requires_grad(), beta = Tensor::zeros({3});
      Tensor mean = Tensor::zeros({3}), var = Tensor::ones({3});
      force_variant("batch_norm2d", variant);
      Tensor u = batch_norm2d(x, gamma, beta, mean, var, /*training=*/true);
      force_variant("batch_norm2d", "");
      Tensor t = z * 3.0;
      sum((bn_first ? u + t : t + u) * in[2]).backward();
      grads[variant[0] == 's' ? 0 : 1] = {x.grad(), z.grad(), gamma.grad()};
    }
    INFO("batch norm first in the sum: " << bn_first);
    for (int64_t j = 0; j < in[2].numel(); ++j)  // 3 r, rounded to float
      CHECK(std::abs(grads[0][1].at(j) - 3.0 * in[2].at(j)) <= 1e-6 * (1 + std::abs(in[2].at(j))));
    for (int i : {0, 2})
      for (int64_t j = 0; j < grads[1][i].numel(); ++j)
        CHECK(std::abs(grads[0][i].at(j) - grads[1][i].at(j)) <= 1e-4 * (1 + std::abs(grads[1][i].at(j))));
  }
}

TEST_CASE("autograd: gradients accumulate across backward calls until zero_grad", "[autograd]") {
  Tensor x = Tensor::from({2}, {1, 2}).set_requires_grad();
  sum(x * 3.0).backward();
  sum(x * 3.0).backward();
  CHECK(x.grad().to_vector() == std::vector<double>{6, 6});
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("autograd: broadcast operands receive gradients summed over the repeats", "[autograd]") {
  // y = x + b with x (2,3,1,2), b (3,1,1): db[c] = number of elements of channel c = 2*2 = 4
  Tensor x = Tensor::zeros({2, 3, 1, 2}).set_requires_grad();
  Tensor b = Tensor::zeros({3, 1, 1}).set_requires_grad();
  sum(x + b).backward();
  CHECK(b.grad().to_vector() == std::vector<double>{4, 4, 4});
  CHECK(x.grad().shape() == x.shape());
}

TEST_CASE("autograd: the graph is freed after backward", "[autograd]") {
  Tensor x = Tensor::from({2}, {1, 2}).set_requires_grad();
  Tensor y = sum(relu(x) * x);
  y.backward();
  CHECK_THROWS_WITH(y.backward(), Catch::Contains("already freed"));
}

TEST_CASE("autograd: no-grad scope and detach record nothing", "[autograd]") {
  Tensor x = Tensor::from({2}, {1, 2}).set_requires_grad();
  {
    NoGradGuard guard;
    Tensor y = x * x;
    CHECK_FALSE(y.requires_grad());
    CHECK(y.grad_fn() == nullptr);
  }
  CHECK(grad_enabled());
  Tensor d = (x * x).detach();
  CHECK_FALSE(d.requires_grad());
  CHECK_THROWS_WITH(sum(d).backward(), Catch::Contains("does not require grad"));
}

TEST_CASE("autograd: only inputs with requires_grad get gradients", "[autograd]") {
  Tensor w = Tensor::from({2, 2}, {1, 2, 3, 4}).set_requires_grad();
  Tensor x = Tensor::from({1, 2}, {5, 6});
  sum(linear(x, w)).backward();
  // d sum(x wᵀ) / dw[o][i] = x[i]
  CHECK(w.grad().to_vector() == std::vector<double>{5, 6, 5, 6});
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("autograd: a non-scalar backward needs an explicit gradient", "[autograd]") {
  Tensor x = Tensor::from({2}, {1, 2}).set_requires_grad();
  Tensor y = x * 2.0;
  CHECK_THROWS_WITH(y.backward(), Catch::Contains("non-scalar"));
  y.backward(Tensor::from({2}, {1, 10}));
  CHECK(x.grad().to_vector() == std::vector<double>{2, 20});
}

TEST_CASE("autograd: a long chain does not overflow the stack", "[autograd]") {
  Tensor x = Tensor::scalar(1.0, DType::f64).set_requires_grad();
  Tensor y = x;
  for (int i = 0; i < 20000; ++i) y = y * 1.0;
  y.backward();
  CHECK(x.grad().item() == 1.0);
}

TEST_CASE("autograd: each gradient from the variant dispatch chose for it (conv2d)", "[autograd]") {
  // 16 → 16 channels on 7×7 maps: implicit computes the forward and dx, winograd4 dw and the
  // bias's gradient (conv2d.cpp's rules); the backward runs each variant once, for its own
  // gradients only. The gradients match the reference's.
  const Sample sample{"16->16 7x7", {{{2, 16, 7, 7}}, {{16, 16, 3, 3}}, {{16}}}, {{"padding", 1}}, false};
  const Tensors in = make_inputs(sample, 7);
  Tensors grads[2];
  for (int run = 0; run < 2; ++run) {
    Tensor x = in[0].clone().set_requires_grad(), w = in[1].clone().set_requires_grad(),
           b = in[2].clone().set_requires_grad();
    if (run == 1) force_variant("conv2d", "reference");
    Tensor y = conv2d(x, w, b, 1, 1);
    force_variant("conv2d", "");
    if (run == 0) {
      REQUIRE(y.grad_fn()->grad_variants.size() == 3);
      CHECK(y.grad_fn()->variant->name == "implicit");
      CHECK(y.grad_fn()->grad_variants[0]->name == "implicit");
      CHECK(y.grad_fn()->grad_variants[1]->name == "winograd4");
      CHECK(y.grad_fn()->grad_variants[2]->name == "winograd4");
    }
    sum(y * y).backward();
    grads[run] = {x.grad(), w.grad(), b.grad()};
  }
  for (int i = 0; i < 3; ++i) {
    INFO("gradient of input " << i);
    const Tensor& g = grads[0][i];
    const Tensor& ref = grads[1][i];
    REQUIRE(g.shape() == ref.shape());
    double err = 0, scale = 1;
    for (int64_t j = 0; j < g.numel(); ++j) {
      err = std::max(err, std::abs(g.at(j) - ref.at(j)));
      scale = std::max(scale, std::abs(ref.at(j)));
    }
    CHECK(err / scale < 1e-4);
  }
}

TEST_CASE("autograd: an input switched to requires_grad after the forward gets its gradient (conv2d)", "[autograd]") {
  // Dispatch recorded no variant for x's gradient (x did not require it then): the forward's
  // variant computes it.
  Tensor x = Tensor::from({1, 1, 2, 2}, {1, 2, 3, 4});
  Tensor w = Tensor::from({1, 1, 1, 1}, {3}).set_requires_grad();
  Tensor y = conv2d(x, w);
  x.set_requires_grad(true);
  sum(y).backward();
  CHECK(x.grad().to_vector() == std::vector<double>{3, 3, 3, 3});
  CHECK(w.grad().to_vector() == std::vector<double>{10});
}
