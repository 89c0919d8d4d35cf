// test_nn.cpp — the nn modules: state_dict names, order and shapes against PyTorch's (written
// out by hand below), loading, BatchNorm's train/eval behaviour, Dropout, seeding, and the
// forward of a residual block against the same computation written with ops.
//
// Run: ctest --test-dir build -R '^nn:'
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/nn.h"

using namespace edl;

namespace {

using NameShape = std::vector<std::pair<std::string, Shape>>;

NameShape names_and_shapes(const NamedTensors& tensors) {
  NameShape out;
  for (const auto& [name, t] : tensors) out.emplace_back(name, t.shape());
  return out;
}

Tensor random_normal(const Shape& shape, uint64_t seed) {
  Rng rng(seed);
  Tensor t = Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = static_cast<float>(rng.normal());
  return t;
}

// A BatchNorm2d of 3 channels with weight and bias set away from their defaults, so that the
// affine part counts in the comparisons; every call gives one in the same state.
std::shared_ptr<BatchNorm2d> batch_norm3() {
  auto bn = std::make_shared<BatchNorm2d>(3);
  bn->weight.copy_(Tensor::from({3}, {1.5, -0.5, 1.0}));
  bn->bias.copy_(Tensor::from({3}, {0.2, 0.1, -0.3}));
  return bn;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  double d = 0;
  for (int64_t i = 0; i < a.numel(); ++i) d = std::max(d, std::abs(a.at(i) - b.at(i)));
  return d;
}

}  // namespace

TEST_CASE("nn: BasicBlock with a shortcut has PyTorch's state_dict names, order and shapes", "[nn]") {
  // What PyTorch prints for kuangliu/pytorch-cifar's BasicBlock(16, 32, stride=2):
  //   [(k, tuple(v.shape)) for k, v in BasicBlock(16, 32, 2).state_dict().items()]
  // Each module contributes its own parameters, then its own buffers, then its children.
  const NameShape expected{
      {"conv1.weight", {32, 16, 3, 3}},
      {"bn1.weight", {32}},
      {"bn1.bias", {32}},
      {"bn1.running_mean", {32}},
      {"bn1.running_var", {32}},
      {"bn1.num_batches_tracked", {}},
      {"conv2.weight", {32, 32, 3, 3}},
      {"bn2.weight", {32}},
      {"bn2.bias", {32}},
      {"bn2.running_mean", {32}},
      {"bn2.running_var", {32}},
      {"bn2.num_batches_tracked", {}},
      {"shortcut.0.weight", {32, 16, 1, 1}},
      {"shortcut.1.weight", {32}},
      {"shortcut.1.bias", {32}},
      {"shortcut.1.running_mean", {32}},
      {"shortcut.1.running_var", {32}},
      {"shortcut.1.num_batches_tracked", {}},
  };
  BasicBlock block(16, 32, 2);
  CHECK(names_and_shapes(block.state_dict()) == expected);

  // named_parameters() is the same walk without the buffers.
  const NameShape expected_params{
      {"conv1.weight", {32, 16, 3, 3}}, {"bn1.weight", {32}},         {"bn1.bias", {32}},
      {"conv2.weight", {32, 32, 3, 3}}, {"bn2.weight", {32}},         {"bn2.bias", {32}},
      {"shortcut.0.weight", {32, 16, 1, 1}}, {"shortcut.1.weight", {32}}, {"shortcut.1.bias", {32}},
  };
  CHECK(names_and_shapes(block.named_parameters()) == expected_params);
  CHECK(block.parameters().size() == expected_params.size());
  // 32*16*9 + 2*32 + 32*32*9 + 2*32 + 32*16 + 2*32
  CHECK(block.num_parameters() == 4608 + 64 + 9216 + 64 + 512 + 64);

  const Tensor& counter = block.state_dict()[5].second;
  CHECK(counter.dtype() == DType::s64);
  CHECK(counter.item() == 0);
  for (const Tensor& p : block.parameters()) CHECK(p.requires_grad());
}

TEST_CASE("nn: BasicBlock keeping its shape has an empty shortcut and no shortcut entries", "[nn]") {
  BasicBlock block(16, 16, 1);
  CHECK(block.shortcut->size() == 0);
  for (const auto& [name, t] : block.state_dict()) CHECK(name.rfind("shortcut", 0) == std::string::npos);
  CHECK(block.state_dict().size() == 12);
}

TEST_CASE("nn: Sequential names children by position, parameterless ones included", "[nn]") {
  // torch.nn.Sequential(Conv2d(3, 8, 3, padding=1), BatchNorm2d(8), ReLU(), Flatten(), Linear(8*4*4, 10))
  Sequential net(std::make_shared<Conv2d>(3, 8, 3, 1, 1), std::make_shared<BatchNorm2d>(8), std::make_shared<ReLU>(),
                 std::make_shared<Flatten>(), std::make_shared<Linear>(8 * 4 * 4, 10));
  const NameShape expected{
      {"0.weight", {8, 3, 3, 3}}, {"0.bias", {8}},          {"1.weight", {8}},
      {"1.bias", {8}},            {"1.running_mean", {8}},  {"1.running_var", {8}},
      {"1.num_batches_tracked", {}}, {"4.weight", {10, 128}}, {"4.bias", {10}},
  };
  CHECK(names_and_shapes(net.state_dict()) == expected);
  CHECK(names_and_shapes(net.named_buffers()) ==
        NameShape{{"1.running_mean", {8}}, {"1.running_var", {8}}, {"1.num_batches_tracked", {}}});
  CHECK(net.size() == 5);

  Tensor y = net(random_normal({2, 3, 4, 4}, 1));
  CHECK(y.shape() == Shape{2, 10});
}

namespace {
// A module that registers a child before its own parameter and buffer: PyTorch keeps
// parameters, buffers and children in three separate dicts, so its own entries still come first.
struct Mixed : Module {
  Mixed() {
    child = register_module("child", std::make_shared<Linear>(2, 3));
    scale = register_parameter("scale", Tensor::ones({3}));
    count = register_buffer("count", Tensor::zeros({1}));
  }
  Tensor forward(const Tensor& x) override { return (*child)(x) * scale; }
  std::shared_ptr<Linear> child;
  Tensor scale, count;
};
}  // namespace

TEST_CASE("nn: a module's own parameters and buffers come before its children's", "[nn]") {
  Mixed m;
  NameShape got = names_and_shapes(m.state_dict());
  CHECK(got == NameShape{{"scale", {3}}, {"count", {1}}, {"child.weight", {3, 2}}, {"child.bias", {3}}});
  CHECK(names_and_shapes(m.named_parameters()) == NameShape{{"scale", {3}}, {"child.weight", {3, 2}}, {"child.bias", {3}}});
}

TEST_CASE("nn: a layer shared by two parents is one parameter set, but keeps both state_dict names", "[nn]") {
  // As in PyTorch: named_parameters() lists a shared tensor once (so an optimizer updates it
  // once per step), state_dict() lists it under every name.
  auto shared = std::make_shared<Linear>(2, 2);
  Sequential net(shared, std::make_shared<ReLU>(), shared);
  CHECK(names_and_shapes(net.named_parameters()) == NameShape{{"0.weight", {2, 2}}, {"0.bias", {2}}});
  CHECK(names_and_shapes(net.state_dict()) ==
        NameShape{{"0.weight", {2, 2}}, {"0.bias", {2}}, {"2.weight", {2, 2}}, {"2.bias", {2}}});
  CHECK(net.num_parameters() == 6);
}

TEST_CASE("nn: registration rejects duplicate and dotted names", "[nn]") {
  Mixed m;
  CHECK_THROWS_WITH(m.register_parameter("scale", Tensor::ones({1})), Catch::Contains("'scale' is already registered"));
  CHECK_THROWS_WITH(m.register_buffer("child", Tensor::ones({1})), Catch::Contains("'child' is already registered"));
  CHECK_THROWS_WITH(m.register_module("a.b", std::make_shared<ReLU>()), Catch::Contains("contain no '.'"));
  CHECK_THROWS_WITH(m.register_parameter("labels", Tensor::zeros({2}, DType::s32)),
                    Catch::Contains("parameters must be f32 or f64"));
  CHECK_THROWS_WITH(Conv2d(6, 4, 3, 1, 0, 4), Catch::Contains("groups=4 must divide both in_channels=6"));
}

TEST_CASE("nn: state_dict entries alias the module's tensors, load_state_dict copies into them", "[nn]") {
  manual_seed(1);
  BasicBlock a(4, 8, 2);
  manual_seed(2);
  BasicBlock b(4, 8, 2);
  CHECK(max_abs_diff(a.conv1->weight, b.conv1->weight) > 0);

  // Writing into a state_dict entry writes into the layer.
  a.state_dict()[0].second.fill_(0.25);
  CHECK(a.conv1->weight.at(0) == 0.25);

  b.load_state_dict(a.state_dict());
  for (size_t i = 0; i < a.state_dict().size(); ++i)
    CHECK(max_abs_diff(a.state_dict()[i].second, b.state_dict()[i].second) == 0);
  // The layers' members still hold the (now loaded) storage, and loading copied, not aliased.
  CHECK(b.conv1->weight.at(0) == 0.25);
  CHECK_FALSE(b.conv1->weight.same_storage(a.conv1->weight));

  // A state dict of another dtype is refused, naming each entry, and nothing is loaded.
  NamedTensors f64;
  for (const auto& [name, t] : a.state_dict()) f64.emplace_back(name, is_floating(t.dtype()) ? t.to(DType::f64) : t);
  f64[0].second.fill_(0.5);
  CHECK_THROWS_WITH(b.load_state_dict(f64), Catch::Contains("conv1.weight: checkpoint has dtype f64, model has f32"));
  CHECK(b.conv1->weight.at(0) == 0.25);
}

TEST_CASE("nn: load_state_dict names the wrong shape, missing and unexpected entries", "[nn]") {
  BasicBlock block(4, 8, 2);
  NamedTensors sd = block.state_dict();

  NamedTensors wrong = sd;
  wrong[0].second = Tensor::zeros({8, 2, 3, 3});
  CHECK_THROWS_WITH(block.load_state_dict(wrong),
                    Catch::Contains("conv1.weight: checkpoint has (8,2,3,3), model has (8,4,3,3)"));

  NamedTensors partial(sd.begin() + 1, sd.end());
  partial.emplace_back("fc.weight", Tensor::zeros({2, 2}));
  CHECK_THROWS_WITH(block.load_state_dict(partial),
                    Catch::Contains("missing key (in the model, not in the checkpoint): conv1.weight") &&
                        Catch::Contains("unexpected key (in the checkpoint, not in the model): fc.weight"));
  // Non-strict loading takes what matches and ignores the rest.
  CHECK_NOTHROW(block.load_state_dict(partial, /*strict=*/false));
}

TEST_CASE("nn: BatchNorm2d uses batch statistics in training, running ones in evaluation", "[nn]") {
  // x is (4,2,3,3): per channel M = 4*3*3 = 36 values.
  BatchNorm2d bn(2);
  Tensor x = random_normal({4, 2, 3, 3}, 7) * 2.0 + Tensor::scalar(1.0);
  const int64_t M = 36;

  // Per-channel batch mean and biased variance, computed here directly.
  std::vector<double> mean(2, 0), var(2, 0);
  for (int64_t c = 0; c < 2; ++c) {
    for (int64_t n = 0; n < 4; ++n)
      for (int64_t i = 0; i < 9; ++i) mean[c] += x.at((n * 2 + c) * 9 + i) / M;
    for (int64_t n = 0; n < 4; ++n)
      for (int64_t i = 0; i < 9; ++i) var[c] += std::pow(x.at((n * 2 + c) * 9 + i) - mean[c], 2) / M;
  }

  SECTION("training: normalized output, running averages move by momentum, the counter counts") {
    REQUIRE(bn.is_training());
    Tensor y = bn(x);
    for (int64_t c = 0; c < 2; ++c) {
      double m = 0, v = 0;
      for (int64_t n = 0; n < 4; ++n)
        for (int64_t i = 0; i < 9; ++i) m += y.at((n * 2 + c) * 9 + i) / M;
      for (int64_t n = 0; n < 4; ++n)
        for (int64_t i = 0; i < 9; ++i) v += std::pow(y.at((n * 2 + c) * 9 + i) - m, 2) / M;
      CHECK(m == Approx(0).margin(1e-5));
      CHECK(v == Approx(var[c] / (var[c] + 1e-5)).epsilon(1e-4));
      // running = 0.9 * initial + 0.1 * batch; the variance is the unbiased one (M / (M-1)).
      CHECK(bn.running_mean.at(c) == Approx(0.1 * mean[c]).epsilon(1e-5));
      CHECK(bn.running_var.at(c) == Approx(0.9 + 0.1 * var[c] * M / (M - 1)).epsilon(1e-5));
    }
    CHECK(bn.num_batches_tracked.item() == 1);
    bn(x);
    CHECK(bn.num_batches_tracked.item() == 2);
    // After two identical batches: 0.9 * (0.1 mean) + 0.1 mean = 0.19 mean.
    CHECK(bn.running_mean.at(0) == Approx(0.19 * mean[0]).epsilon(1e-5));
  }

  SECTION("evaluation: running statistics, nothing updated") {
    bn.running_mean.copy_(Tensor::from({2}, {0.5, -1.0}));
    bn.running_var.copy_(Tensor::from({2}, {4.0, 0.25}));
    bn.weight.copy_(Tensor::from({2}, {2.0, 1.0}));
    bn.bias.copy_(Tensor::from({2}, {0.0, 3.0}));
    bn.eval();
    Tensor y = bn(x);
    const double rm[2] = {0.5, -1.0}, rv[2] = {4.0, 0.25}, w[2] = {2.0, 1.0}, b[2] = {0.0, 3.0};
    for (int64_t n = 0; n < 4; ++n)
      for (int64_t c = 0; c < 2; ++c)
        for (int64_t i = 0; i < 9; ++i) {
          int64_t k = (n * 2 + c) * 9 + i;
          CHECK(y.at(k) == Approx(w[c] * (x.at(k) - rm[c]) / std::sqrt(rv[c] + 1e-5) + b[c]).epsilon(1e-5));
        }
    CHECK(bn.running_mean.to_vector() == std::vector<double>{0.5, -1.0});
    CHECK(bn.running_var.to_vector() == std::vector<double>{4.0, 0.25});
    CHECK(bn.num_batches_tracked.item() == 0);
  }
}

TEST_CASE("nn: BatchNorm2d then ReLU, fused (forward_relu, Sequential) equals the two ops", "[nn]") {
  // Three ways to compute relu(bn(x)) with three BatchNorms of the same state: the two ops,
  // forward_relu, and a Sequential(BatchNorm2d, ReLU) (which fuses the pair). Same outputs, same
  // gradients for x, weight and bias, same running statistics.
  Tensor x0 = random_normal({4, 3, 5, 5}, 11);
  auto a = batch_norm3(), b = batch_norm3(), c = batch_norm3();
  Sequential seq(c, std::make_shared<ReLU>());
  Tensor xa = x0.clone().set_requires_grad(), xb = x0.clone().set_requires_grad(), xc = x0.clone().set_requires_grad();
  Tensor r = random_normal({4, 3, 5, 5}, 12);
  Tensor ya = relu((*a)(xa)), yb = b->forward_relu(xb), yc = seq(xc);
  int64_t clamped = 0;
  for (int64_t i = 0; i < ya.numel(); ++i) {
    CHECK(yb.at(i) == Approx(ya.at(i)).margin(1e-6));
    CHECK(yc.at(i) == Approx(ya.at(i)).margin(1e-6));
    clamped += ya.at(i) == 0;
  }
  CHECK(clamped > 20);  // the ReLU does something: about half of the 300 values
  sum(mul(ya, r)).backward();
  sum(mul(yb, r)).backward();
  sum(mul(yc, r)).backward();
  for (int64_t i = 0; i < x0.numel(); ++i) {
    CHECK(xb.grad().at(i) == Approx(xa.grad().at(i)).margin(1e-5));
    CHECK(xc.grad().at(i) == Approx(xa.grad().at(i)).margin(1e-5));
  }
  for (int64_t k = 0; k < 3; ++k) {
    CHECK(b->weight.grad().at(k) == Approx(a->weight.grad().at(k)).margin(1e-5));
    CHECK(c->bias.grad().at(k) == Approx(a->bias.grad().at(k)).margin(1e-5));
    CHECK(c->running_mean.at(k) == Approx(a->running_mean.at(k)).margin(1e-6));
    CHECK(b->running_var.at(k) == Approx(a->running_var.at(k)).margin(1e-6));
  }
  CHECK(b->num_batches_tracked.item() == 1);
  CHECK(c->num_batches_tracked.item() == 1);
}

TEST_CASE("nn: BatchNorm2d::forward_add_relu equals relu(bn(x) + residual) written with three ops", "[nn]") {
  // The end of a residual block as one op and as three (norm, add, ReLU), with two BatchNorms of
  // the same state: the same outputs, the same gradients for x, the residual, weight and bias,
  // and one update of the running statistics and of the batch counter each.
  Tensor x0 = random_normal({4, 3, 5, 5}, 21), r0 = random_normal({4, 3, 5, 5}, 22);
  auto a = batch_norm3(), b = batch_norm3();
  Tensor xa = x0.clone().set_requires_grad(), xb = x0.clone().set_requires_grad();
  Tensor ra = r0.clone().set_requires_grad(), rb = r0.clone().set_requires_grad();
  Tensor ya = relu((*a)(xa) + ra), yb = b->forward_add_relu(xb, rb);
  int64_t clamped = 0;
  for (int64_t i = 0; i < ya.numel(); ++i) {
    CHECK(yb.at(i) == Approx(ya.at(i)).margin(1e-6));
    clamped += ya.at(i) == 0;
  }
  CHECK(clamped > 20);  // the ReLU does something
  Tensor w = random_normal({4, 3, 5, 5}, 23);
  sum(mul(ya, w)).backward();
  sum(mul(yb, w)).backward();
  for (int64_t i = 0; i < x0.numel(); ++i) {
    CHECK(xb.grad().at(i) == Approx(xa.grad().at(i)).margin(1e-5));
    CHECK(rb.grad().at(i) == Approx(ra.grad().at(i)).margin(1e-6));
  }
  for (int64_t k = 0; k < 3; ++k) {
    CHECK(b->weight.grad().at(k) == Approx(a->weight.grad().at(k)).margin(1e-5));
    CHECK(b->bias.grad().at(k) == Approx(a->bias.grad().at(k)).margin(1e-5));
    CHECK(b->running_mean.at(k) == Approx(a->running_mean.at(k)).margin(1e-6));
    CHECK(b->running_var.at(k) == Approx(a->running_var.at(k)).margin(1e-6));
  }
  CHECK(b->num_batches_tracked.item() == 1);
}

TEST_CASE("nn: train() and eval() reach every descendant", "[nn]") {
  BasicBlock block(4, 8, 2);
  block.eval();
  CHECK_FALSE(block.is_training());
  CHECK_FALSE(block.bn1->is_training());
  CHECK_FALSE((*block.shortcut)[1]->is_training());
  block.train();
  CHECK((*block.shortcut)[1]->is_training());
}

TEST_CASE("nn: Dropout is the identity in evaluation and draws a new mask per training call", "[nn]") {
  manual_seed(5);
  Dropout drop(0.5);
  Tensor x = Tensor::ones({1000});

  drop.eval();
  CHECK(max_abs_diff(drop(x), x) == 0);

  drop.train();
  Tensor y1 = drop(x), y2 = drop(x);
  int64_t kept = 0, other = 0;
  for (int64_t i = 0; i < y1.numel(); ++i) {
    kept += y1.at(i) == 2.0;  // kept elements are scaled by 1 / (1 - p)
    other += y1.at(i) != 2.0 && y1.at(i) != 0.0;
  }
  CHECK(other == 0);
  CHECK(kept > 400);
  CHECK(kept < 600);
  CHECK(max_abs_diff(y1, y2) > 0);  // a fresh seed each call

  // The same global seed gives the same module generator, hence the same masks.
  manual_seed(5);
  Dropout again(0.5);
  CHECK(max_abs_diff(again(x), y1) == 0);
}

TEST_CASE("nn: manual_seed makes initialization reproducible, Linear and Conv2d use PyTorch's bounds", "[nn]") {
  manual_seed(42);
  Linear a(50, 7);
  Conv2d ca(4, 6, 3, 1, 1, 2);  // fan_in = 4/2 * 3 * 3 = 18
  manual_seed(42);
  Linear b(50, 7);
  CHECK(max_abs_diff(a.weight, b.weight) == 0);
  CHECK(max_abs_diff(a.bias, b.bias) == 0);

  auto within = [](const Tensor& t, double bound) {
    double m = 0;
    for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::abs(t.at(i)));
    return m <= bound && m > 0.5 * bound;  // inside the bound and not degenerate
  };
  CHECK(within(a.weight, 1 / std::sqrt(50.0)));
  CHECK(within(a.bias, 1 / std::sqrt(50.0)));
  CHECK(ca.weight.shape() == Shape{6, 2, 3, 3});
  CHECK(within(ca.weight, 1 / std::sqrt(18.0)));
  CHECK_FALSE(Linear(3, 2, false).bias.defined());
}

TEST_CASE("nn: BasicBlock forward equals the same computation written with ops, gradients reach every parameter",
          "[nn]") {
  manual_seed(3);
  BasicBlock block(4, 8, 2);
  Tensor x = random_normal({2, 4, 6, 6}, 11);

  auto bn = [](const Tensor& t, BatchNorm2d& m) {
    // Copies of the running statistics, so that this reference does not move the block's.
    return batch_norm2d(t, m.weight, m.bias, m.running_mean.clone(), m.running_var.clone(), true);
  };
  auto& sc_conv = static_cast<Conv2d&>(*(*block.shortcut)[0]);
  auto& sc_bn = static_cast<BatchNorm2d&>(*(*block.shortcut)[1]);
  Tensor main = bn(conv2d(relu(bn(conv2d(x, block.conv1->weight, Tensor(), 2, 1), *block.bn1)), block.conv2->weight,
                          Tensor(), 1, 1),
                   *block.bn2);
  Tensor expected = relu(main + bn(conv2d(x, sc_conv.weight, Tensor(), 2, 0), sc_bn));

  Tensor y = block(x);
  CHECK(y.shape() == Shape{2, 8, 3, 3});
  CHECK(max_abs_diff(y, expected) < 1e-5);

  block.zero_grad();
  sum(block(x)).backward();
  for (const auto& [name, p] : block.named_parameters()) {
    INFO(name);
    CHECK(p.grad().defined());
  }
  block.zero_grad();
  for (const Tensor& p : block.parameters()) CHECK_FALSE(p.grad().defined());
}
