// test_models.cpp — the model zoo against the PyTorch code each model follows: parameter
// counts, state_dict names and shapes, logits for the same weights, multiply-accumulates,
// and the pieces that are easy to get subtly wrong (the option-A shortcut, DenseNet's concat
// order, where the initializers draw from).
//
// Where the expected values come from. Names, shapes and counts: the models of
// akamaster/pytorch_resnet_cifar10 (resnet.py), kuangliu/pytorch-cifar (models/*.py) and
// xternalz/WideResNet-pytorch (wideresnet.py), and for fast_cifar the module printed in
// docs/fast-training.md, built in PyTorch 1.13 with 10 classes, written
// out by hand below. Logits: the same PyTorch models in eval mode, every state_dict entry
// filled by the rule of fill_deterministic() (below), on the input of deterministic_input().
// In Python, for the t-th state_dict entry v:
//
//   def u(n, t):  # uniform in [-0.5, 0.5), a hash of the flat index
//       j = np.arange(n, dtype=np.uint64)
//       return ((j * 2654435761 + (t + 1) * 97531) % 2**32).astype(np.float64) / 2**32 - 0.5
//   running_var: 1 + u;  1-d weight (BatchNorm): 1 + 0.2u;  other 1-d: 0.2u;
//   weights: sqrt(24 / fan_in) * u, with fan_in = v.numel() // v.shape[0];  input: 2u(2*3*32*32, 999)
//
// If the logits match, so do the architecture, the order of the state_dict and the meaning
// of every tensor in it: a PyTorch checkpoint loads here and computes the same function.
//
// Run: build/tests/edl_tests '[models]'
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "models/summary.h"
#include "models/zoo.h"

using namespace edl;

namespace {

using NameShape = std::vector<std::pair<std::string, Shape>>;

// What PyTorch says about a model built with 10 classes.
struct Expected {
  std::string name;
  int64_t params;            // sum(p.numel() for p in model.parameters())
  size_t state_dict_size;    // len(model.state_dict())
  NameShape first, last;     // the first and the last three state_dict entries
  NameShape landmarks;       // entries from the middle that show the architecture
};

NameShape first_n(const NamedTensors& sd, size_t n) {
  NameShape out;
  for (size_t i = 0; i < n && i < sd.size(); ++i) out.emplace_back(sd[i].first, sd[i].second.shape());
  return out;
}

NameShape last_n(const NamedTensors& sd, size_t n) {
  NameShape out;
  for (size_t i = sd.size() < n ? 0 : sd.size() - n; i < sd.size(); ++i)
    out.emplace_back(sd[i].first, sd[i].second.shape());
  return out;
}

// The shape of the entry `name`, or a marker shape when the entry is missing.
Shape shape_of(const NamedTensors& sd, const std::string& name) {
  for (const auto& [n, t] : sd)
    if (n == name) return t.shape();
  return {-1};
}

void check_names_and_counts(Module& model, const Expected& e) {
  INFO(e.name);
  const NamedTensors sd = model.state_dict();
  CHECK(model.num_parameters() == e.params);
  CHECK(sd.size() == e.state_dict_size);
  CHECK(first_n(sd, 3) == e.first);
  CHECK(last_n(sd, 3) == e.last);
  for (const auto& [name, shape] : e.landmarks) {
    INFO(name);
    CHECK(shape_of(sd, name) == shape);
  }
}

// Uniform in [-0.5, 0.5): a hash of the flat index j and the entry number t (see the top).
double u(uint64_t j, uint64_t t) {
  const uint64_t h = (j * 2654435761ull + (t + 1) * 97531ull) % (1ull << 32);
  return static_cast<double>(h) / 4294967296.0 - 0.5;
}

// Every floating state_dict entry by the rule at the top of this file.
void fill_deterministic(Module& model) {
  const NamedTensors sd = model.state_dict();
  for (size_t t = 0; t < sd.size(); ++t) {
    const std::string& name = sd[t].first;
    Tensor v = sd[t].second;
    if (v.dtype() != DType::f32) continue;  // num_batches_tracked
    auto ends_with = [&](const std::string& s) {
      return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
    };
    float* p = v.data<float>();
    for (int64_t j = 0; j < v.numel(); ++j) {
      const double x = u(static_cast<uint64_t>(j), t);
      double value;
      if (ends_with("running_var")) value = 1.0 + x;
      else if (v.ndim() == 1 && ends_with("weight")) value = 1.0 + 0.2 * x;
      else if (v.ndim() == 1) value = 0.2 * x;
      else value = std::sqrt(24.0 / static_cast<double>(v.numel() / v.dim(0))) * x;
      p[j] = static_cast<float>(value);
    }
  }
}

Tensor deterministic_input() {
  Tensor x = Tensor::empty({2, 3, 32, 32});
  float* p = x.data<float>();
  for (int64_t j = 0; j < x.numel(); ++j) p[j] = static_cast<float>(2.0 * u(static_cast<uint64_t>(j), 999));
  return x;
}

// Builds `e.name`, checks its names and counts, runs one forward in eval mode on a batch of
// two images and checks the output's shape. Given `logits` (PyTorch's, 2 x 10), the network
// gets the deterministic weights first and must reproduce them.
void check_model(const Expected& e, const std::vector<std::vector<double>>& logits = {}) {
  std::shared_ptr<Module> model = make_model(e.name, 10);
  check_names_and_counts(*model, e);
  if (!logits.empty()) fill_deterministic(*model);
  model->eval();
  Tensor y;
  {
    NoGradGuard no_grad;
    y = (*model)(deterministic_input());
  }
  REQUIRE(y.shape() == Shape{2, 10});
  for (size_t n = 0; n < logits.size(); ++n) {
    double scale = 0;
    for (double v : logits[n]) scale = std::max(scale, std::abs(v));
    for (size_t k = 0; k < logits[n].size(); ++k) {
      INFO(e.name << " image " << n << " class " << k);
      // f32 with a different order of summation than PyTorch's: agreement to ~1e-5 of the
      // largest logit is typical; a wrong layer changes the logits entirely.
      CHECK(y.at(static_cast<int64_t>(n * 10 + k)) == Approx(logits[n][k]).margin(2e-4 * scale));
    }
  }
}

}  // namespace

// ---- the zoo's names ------------------------------------------------------------------------------

TEST_CASE("models: the zoo lists every family, and unknown names are a clear error", "[models]") {
  const std::vector<std::string> expected{
      "small_cnn", "resnet20", "resnet32", "resnet44", "resnet56",    "resnet110",      "resnet18", "preact_resnet18",
      "vgg11",     "vgg13",    "vgg16",    "vgg19",    "mobilenetv2", "densenet_cifar", "wrn_16_4", "wrn_28_10",
      "fast_cifar", "airbench"};
  CHECK(model_names() == expected);
  CHECK_THROWS_WITH(make_model("resnet21", 10), Catch::Contains("unknown model 'resnet21'") &&
                                                    Catch::Contains("known: small_cnn, resnet20, resnet32"));
  CHECK_THROWS_WITH(make_model("resnet20", 0), Catch::Contains("num_classes must be at least 1"));
  CHECK_THROWS_WITH(resnet_cifar(21, 10), Catch::Contains("depth 21 must be 6n+2"));
  CHECK_THROWS_WITH(resnet_cifar(20, 10, 0.5625), Catch::Contains("must be even"));
  CHECK_THROWS_WITH(wide_resnet(27, 10, 10), Catch::Contains("depth 27 must be 6n+4"));
  CHECK_THROWS_WITH(vgg("vgg12", 10), Catch::Contains("unknown configuration 'vgg12'"));
  CHECK_THROWS_WITH(OptionAShortcut(16, 48, 2), Catch::Contains("planes = 2*in_planes"));
}

TEST_CASE("models: num_classes reaches the classifier (kuangliu's VGG hard-codes 10; ours does not)", "[models]") {
  // PyTorch, 100 classes: resnet20 275,572; vgg11 9,277,284; densenet_cifar 1,035,268.
  CHECK(make_model("resnet20", 100)->num_parameters() == 275572);
  CHECK(make_model("vgg11", 100)->num_parameters() == 9277284);
  CHECK(make_model("densenet_cifar", 100)->num_parameters() == 1035268);
}

// ---- akamaster/pytorch_resnet_cifar10 -------------------------------------------------------------

TEST_CASE("models: resnet20 is akamaster's ResNet-20 (names, count, logits)", "[models]") {
  // Option A has no parameters: no state_dict entry mentions a shortcut.
  check_model({"resnet20", 269722, 116,
               {{"conv1.weight", {16, 3, 3, 3}}, {"bn1.weight", {16}}, {"bn1.bias", {16}}},
               {{"layer3.2.bn2.num_batches_tracked", {}}, {"linear.weight", {10, 64}}, {"linear.bias", {10}}},
               {{"layer2.0.conv1.weight", {32, 16, 3, 3}}, {"layer3.0.bn1.running_mean", {64}}}},
              {{-0.4043937, 0.08087027, -0.2105153, 0.2398308, -0.2690367, 0.1431138, -0.1196196, 0.2302915,
                0.1904334, -0.2898117},
               {-0.4259617, 0.07783926, -0.26477, 0.2794806, -0.3083282, 0.1699835, -0.1270207, 0.3075293, 0.1729459,
                -0.2959949}});
  for (const auto& [name, t] : make_model("resnet20", 10)->state_dict())
    CHECK(name.find("shortcut") == std::string::npos);
}

TEST_CASE("models: resnet32, resnet44, resnet56, resnet110 (names, counts)", "[models]") {
  // resnet56 has 853,018 parameters in akamaster's code. The 855,770 sometimes quoted is
  // ResNet-56 with option-B (1x1 convolution + BatchNorm) shortcuts at the two downsamplings:
  // 16*32 + 2*32 + 32*64 + 2*64 = 2,752 more.
  check_model({"resnet32", 464154, 188,
               {{"conv1.weight", {16, 3, 3, 3}}, {"bn1.weight", {16}}, {"bn1.bias", {16}}},
               {{"layer3.4.bn2.num_batches_tracked", {}}, {"linear.weight", {10, 64}}, {"linear.bias", {10}}},
               {}});
  check_model({"resnet44", 658586, 260,
               {{"conv1.weight", {16, 3, 3, 3}}, {"bn1.weight", {16}}, {"bn1.bias", {16}}},
               {{"layer3.6.bn2.num_batches_tracked", {}}, {"linear.weight", {10, 64}}, {"linear.bias", {10}}},
               {}});
  check_model({"resnet56", 853018, 332,
               {{"conv1.weight", {16, 3, 3, 3}}, {"bn1.weight", {16}}, {"bn1.bias", {16}}},
               {{"layer3.8.bn2.num_batches_tracked", {}}, {"linear.weight", {10, 64}}, {"linear.bias", {10}}},
               {{"layer2.0.conv1.weight", {32, 16, 3, 3}}, {"layer3.8.conv2.weight", {64, 64, 3, 3}}}});
  check_model({"resnet110", 1727962, 656,
               {{"conv1.weight", {16, 3, 3, 3}}, {"bn1.weight", {16}}, {"bn1.bias", {16}}},
               {{"layer3.17.bn2.num_batches_tracked", {}}, {"linear.weight", {10, 64}}, {"linear.bias", {10}}},
               {}});
}

TEST_CASE("models: the option-A shortcut is x[:, :, ::2, ::2] between planes/4 zero channels", "[models]") {
  OptionAShortcut shortcut(2, 4, 2);  // pad 1 channel on each side
  CHECK(shortcut.num_parameters() == 0);
  Tensor x = Tensor::empty({1, 2, 4, 4});
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = static_cast<float>(i + 1);
  Tensor y = shortcut(x);
  REQUIRE(y.shape() == Shape{1, 4, 2, 2});
  // channel 0 and 3: zeros; channels 1, 2: rows 0 and 2, columns 0 and 2 of x's channels 0, 1.
  CHECK(y.to_vector() == std::vector<double>{0, 0, 0, 0,  //
                                             1, 3, 9, 11,  //
                                             17, 19, 25, 27,  //
                                             0, 0, 0, 0});
}

TEST_CASE("models: resnet20 initializes as akamaster (Kaiming normal, fan_in)", "[models]") {
  manual_seed(0);
  auto net = resnet_cifar(20, 10);
  auto stddev = [](const Tensor& t) {
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < t.numel(); ++i) s += t.at(i), s2 += t.at(i) * t.at(i);
    const double m = s / static_cast<double>(t.numel());
    return std::sqrt(s2 / static_cast<double>(t.numel()) - m * m);
  };
  // layer3.0.conv2: 64x64x3x3 = 36,864 draws from N(0, 2/576): the sample std is within 2%.
  auto* block = dynamic_cast<ResNetCifarBlock*>((*net->layer3)[0].get());
  REQUIRE(block != nullptr);
  CHECK(stddev(block->conv2->weight) == Approx(std::sqrt(2.0 / 576)).epsilon(0.02));
  CHECK(stddev(net->conv1->weight) == Approx(std::sqrt(2.0 / 27)).epsilon(0.15));  // only 432 draws
  // Linear's bias keeps PyTorch's default U(-1/sqrt(64), 1/sqrt(64)).
  for (int64_t i = 0; i < net->linear->bias.numel(); ++i) CHECK(std::abs(net->linear->bias.at(i)) <= 0.125);
}

TEST_CASE("models: a backward pass through resnet20 reaches every parameter", "[models]") {
  manual_seed(1);
  auto net = make_model("resnet20", 10);
  net->train();
  Tensor loss = cross_entropy((*net)(deterministic_input()), Tensor::from({2}, {3, 7}, DType::s32));
  loss.backward();
  for (const auto& [name, p] : net->named_parameters()) {
    INFO(name);
    REQUIRE(p.grad().defined());
    double norm = 0;
    for (int64_t i = 0; i < p.numel(); ++i) norm += p.grad().at(i) * p.grad().at(i);
    CHECK(std::isfinite(norm));
    CHECK(norm > 0);
  }
}

TEST_CASE("models: resnet_cifar's width scales the planes", "[models]") {
  auto net = resnet_cifar(20, 10, 0.5);  // 8, 16, 32 planes
  CHECK(net->conv1->weight.shape() == Shape{8, 3, 3, 3});
  CHECK(net->linear->weight.shape() == Shape{10, 32});
  net->eval();
  NoGradGuard no_grad;
  CHECK((*net)(Tensor::zeros({1, 3, 32, 32})).shape() == Shape{1, 10});
}

// ---- kuangliu/pytorch-cifar -------------------------------------------------------------------------

TEST_CASE("models: resnet18 is kuangliu's ResNet18 (names, count, logits)", "[models]") {
  check_model({"resnet18", 11173962, 122,
               {{"conv1.weight", {64, 3, 3, 3}}, {"bn1.weight", {64}}, {"bn1.bias", {64}}},
               {{"layer4.1.bn2.num_batches_tracked", {}}, {"linear.weight", {10, 512}}, {"linear.bias", {10}}},
               {{"layer2.0.shortcut.0.weight", {128, 64, 1, 1}},
                {"layer2.0.shortcut.1.running_var", {128}},
                {"layer4.0.conv1.weight", {512, 256, 3, 3}}}},
              {{-0.7202179, 0.1751844, 0.03342241, -0.05175653, 0.3751382, -0.4127116, 0.3921643, -0.5972788,
                0.3448039, -0.05032215},
               {-0.7794421, 0.190251, 0.02839727, -0.08128338, 0.42505, -0.4401131, 0.4347296, -0.6621867, 0.3756801,
                -0.05255736}});
}

TEST_CASE("models: preact_resnet18 is kuangliu's PreActResNet18 (names, count, logits)", "[models]") {
  // No bn1 after conv1; a block's bn1 sees its input planes (64 in layer2.0); the shortcut is
  // a lone 1x1 convolution, and only where the shape changes.
  check_model({"preact_resnet18", 11171146, 102,
               {{"conv1.weight", {64, 3, 3, 3}}, {"layer1.0.bn1.weight", {64}}, {"layer1.0.bn1.bias", {64}}},
               {{"layer4.1.conv2.weight", {512, 512, 3, 3}}, {"linear.weight", {10, 512}}, {"linear.bias", {10}}},
               {{"layer2.0.bn1.weight", {64}},
                {"layer2.0.shortcut.0.weight", {128, 64, 1, 1}},
                {"layer4.0.shortcut.0.weight", {512, 256, 1, 1}},
                {"layer1.0.shortcut.0.weight", {-1}}}},  // absent
              {{-0.1452811, 0.10512, -0.1618809, 0.08932243, -0.05341681, 0.0304449, 0.04819273, -0.03520525,
                0.1926076, -0.0878842},
               {-0.1411455, 0.1253283, -0.1499715, 0.1290554, -0.04182261, -0.00567802, 0.005225614, -0.07394315,
                0.2294527, -0.09302728}});
}

TEST_CASE("models: vgg11 and vgg16 are kuangliu's VGG (names, counts, logits)", "[models]") {
  // features: conv (with bias), bn, relu per number; a max-pool per 'M'; a final AvgPool2d(1, 1).
  check_model({"vgg11", 9231114, 58,
               {{"features.0.weight", {64, 3, 3, 3}}, {"features.0.bias", {64}}, {"features.1.weight", {64}}},
               {{"features.26.num_batches_tracked", {}}, {"classifier.weight", {10, 512}}, {"classifier.bias", {10}}},
               {{"features.4.weight", {128, 64, 3, 3}},
                {"features.25.weight", {512, 512, 3, 3}},
                {"features.26.running_var", {512}}}},
              {{1.072048, -0.7426915, 0.6166112, -0.5062932, 0.1024556, -0.1013995, -0.3825958, 0.8754179, -0.6565286,
                0.824347},
               {1.077231, -0.7425575, 0.618232, -0.5074441, 0.1019758, -0.103684, -0.3843316, 0.8815141, -0.6604582,
                0.8265014}});
  check_model({"vgg16", 14728266, 93,
               {{"features.0.weight", {64, 3, 3, 3}}, {"features.0.bias", {64}}, {"features.1.weight", {64}}},
               {{"features.41.num_batches_tracked", {}}, {"classifier.weight", {10, 512}}, {"classifier.bias", {10}}},
               {{"features.3.weight", {64, 64, 3, 3}}, {"features.40.weight", {512, 512, 3, 3}}}});
  // vgg13 and vgg19 come from the same code; their counts are PyTorch's too.
  CHECK(make_model("vgg13", 10)->num_parameters() == 9416010);
  CHECK(make_model("vgg19", 10)->num_parameters() == 20040522);
}

TEST_CASE("models: mobilenetv2 is kuangliu's MobileNetV2 (names, count, logits)", "[models]") {
  // The t=1 block keeps its 32->32 expansion; stride-1 blocks that change the channels have a
  // 1x1 conv + BN shortcut (layers.0: 32->16, layers.1: 16->24); depthwise weights are (C,1,3,3).
  check_model({"mobilenetv2", 2296922, 344,
               {{"conv1.weight", {32, 3, 3, 3}}, {"bn1.weight", {32}}, {"bn1.bias", {32}}},
               {{"bn2.num_batches_tracked", {}}, {"linear.weight", {10, 1280}}, {"linear.bias", {10}}},
               {{"layers.0.conv1.weight", {32, 32, 1, 1}},
                {"layers.0.shortcut.0.weight", {16, 32, 1, 1}},
                {"layers.1.conv2.weight", {96, 1, 3, 3}},
                {"layers.1.shortcut.0.weight", {24, 16, 1, 1}},
                {"layers.16.conv3.weight", {320, 960, 1, 1}},
                {"conv2.weight", {1280, 320, 1, 1}}}},
              {{-19.09746, -16.27307, 0.6632437, 5.085902, -2.744856, -3.68898, 12.1683, 12.84339, 1.151363,
                -3.711529},
               {-19.56096, -17.21179, 0.2105267, 5.757013, -2.446221, -4.142978, 12.05714, 13.69798, 1.569384,
                -4.337726}});
}

TEST_CASE("models: mobilenetv2's width multiplier rounds channels to multiples of 8", "[models]") {
  auto net = mobilenetv2(10, 0.5);  // torchvision's rule: 32 -> 16, 16 -> 8, 24 -> 16 (12 rounds up), 320 -> 160
  CHECK(net->conv1->weight.shape() == Shape{16, 3, 3, 3});
  CHECK(net->conv2->weight.shape() == Shape{1280, 160, 1, 1});  // the last conv never shrinks below 1280
  net->eval();
  NoGradGuard no_grad;
  CHECK((*net)(Tensor::zeros({1, 3, 32, 32})).shape() == Shape{1, 10});
}

TEST_CASE("models: densenet_cifar is kuangliu's densenet_cifar (names, count, logits)", "[models]") {
  check_model({"densenet_cifar", 1000618, 722,
               {{"conv1.weight", {24, 3, 3, 3}}, {"dense1.0.bn1.weight", {24}}, {"dense1.0.bn1.bias", {24}}},
               {{"bn.num_batches_tracked", {}}, {"linear.weight", {10, 384}}, {"linear.bias", {10}}},
               {{"dense1.5.conv2.weight", {12, 48, 3, 3}},
                {"trans1.conv.weight", {48, 96, 1, 1}},
                {"trans3.conv.weight", {192, 384, 1, 1}},
                {"dense4.15.bn1.weight", {372}},
                {"bn.weight", {384}}}},
              {{-0.1683693, 0.01336852, 0.004945241, 0.006628476, -0.01677763, -0.01228635, -0.01079224, -0.07661346,
                0.1810811, 0.02854307},
               {-0.1684233, 0.01289459, 0.00561616, 0.006832186, -0.01731615, -0.01192085, -0.01037166, -0.07707922,
                0.1811015, 0.02883641}});
}

TEST_CASE("models: a DenseNet bottleneck puts its new channels before its input", "[models]") {
  DenseBottleneck layer(3, 2);  // 3 channels in, 2 new: y = [new0, new1, x0, x1, x2]
  layer.eval();
  Tensor x = Tensor::empty({1, 3, 4, 4});
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = static_cast<float>(i) - 20.0f;
  NoGradGuard no_grad;
  Tensor y = layer(x);
  REQUIRE(y.shape() == Shape{1, 5, 4, 4});
  for (int64_t i = 0; i < x.numel(); ++i) CHECK(y.at(2 * 16 + i) == x.at(i));
}

// ---- edl's fast_cifar ---------------------------------------------------------------------------------

TEST_CASE("models: fast_cifar is the PyTorch module of docs/fast-training.md (names, count, logits)", "[models]") {
  // The logits are that module's (PyTorch 1.13), filled and fed as for the models above.
  check_model({"fast_cifar", 1972792, 39,
               {{"stem.weight", {24, 3, 2, 2}}, {"stem.bias", {24}}, {"block1.conv1.weight", {64, 24, 3, 3}}},
               {{"block3.norm2.running_var", {256}}, {"block3.norm2.num_batches_tracked", {}}, {"head.weight", {10, 256}}},
               {{"block2.conv1.weight", {256, 64, 3, 3}}, {"block3.conv2.weight", {256, 256, 3, 3}}}},
              {{-0.1377955, -0.1044064, 0.01471118, 0.08162811, 0.09657286, -0.1157708, -0.06710881, 0.04201924,
                0.1182463, 0.007606697},
               {-0.1861112, -0.09215817, 0.03257659, 0.1054923, 0.08461848, -0.1390254, -0.04864567, 0.06972227,
                0.1298839, -0.02521252}});
  CHECK_THROWS_WITH(fast_cifar(10, {.w1 = 0}), Catch::Contains("widths must be positive"));
}

TEST_CASE("models: airbench is the PyTorch module of docs/fast-training.md (logits, frozen tensors, init)", "[models]") {
  // GELU, BatchNorm eps 1e-12, logits / 9: the airbench module of docs/fast-training.md,
  // filled as above (its BatchNorm weights are filled too: frozen is not fixed).
  check_model({"airbench", 1972792, 39,
               {{"stem.weight", {24, 3, 2, 2}}, {"stem.bias", {24}}, {"block1.conv1.weight", {64, 24, 3, 3}}},
               {{"block3.norm2.running_var", {256}}, {"block3.norm2.num_batches_tracked", {}}, {"head.weight", {10, 256}}},
               {{"block2.conv1.weight", {256, 64, 3, 3}}, {"block3.conv2.weight", {256, 256, 3, 3}}}},
              {{-0.004744293, -0.00488033, -0.0004730209, 0.004531097, 0.004640454, -0.005127888, -0.003761679,
                0.001441821, 0.005938822, 0.0005669111},
               {-0.004975444, -0.004829486, -0.0003260509, 0.004668521, 0.004369364, -0.005195852, -0.003565815,
                0.001528927, 0.00592056, 0.0005119852}});

  auto net = fast_cifar(10, {.airbench = true});
  // What the optimizer does not train: the stem's weights and the norms' scales.
  int64_t trained = 0;
  for (const Tensor& p : net->parameters()) trained += p.requires_grad() ? p.numel() : 0;
  CHECK(trained == 1972792 - 24 * 12 - 2 * (64 + 256 + 256));  // 1,971,352
  CHECK_FALSE(net->stem->weight.requires_grad());
  CHECK(net->stem->bias.requires_grad());
  CHECK_FALSE(net->block2->norm1->weight.requires_grad());
  CHECK(net->block2->norm1->bias.requires_grad());
  // Dirac init: conv2 (64 -> 64) starts as the identity; conv1 (24 -> 64) on its first 24 filters.
  Tensor x = deterministic_input();
  Tensor h = Tensor::empty({2, 64, 8, 8});
  for (int64_t i = 0; i < h.numel(); ++i) h.data<float>()[i] = static_cast<float>(u(static_cast<uint64_t>(i), 7));
  {
    NoGradGuard no_grad;
    Tensor y = (*net->block1->conv2)(h);
    // Up to rounding: the winograd variant computes the identity through its transforms.
    for (int64_t i = 0; i < h.numel(); ++i) REQUIRE(y.at(i) == Approx(h.at(i)).margin(1e-6));
  }
  const Tensor& w1 = net->block1->conv1->weight;  // (64, 24, 3, 3)
  CHECK(w1.at(((5 * 24 + 5) * 3 + 1) * 3 + 1) == 1.0f);
  CHECK(w1.at(((5 * 24 + 6) * 3 + 1) * 3 + 1) == 0.0f);
  CHECK(w1.at(((30 * 24 + 6) * 3 + 1) * 3 + 1) != 0.0f);  // beyond the first 24: the random init
}

TEST_CASE("models: airbench's whitening stem decorrelates 2x2 patches of the data", "[models]") {
  // Correlated "images": the three channels of a pixel mix the same three sources (an
  // invertible mix), so the 12 patch coordinates are strongly correlated and unequal in scale
  // before whitening.
  const int64_t N = 16, H = 8, W = 8;
  Tensor images = Tensor::empty({N, 3, H, W});
  Rng rng(5);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t i = 0; i < H; ++i)
      for (int64_t j = 0; j < W; ++j) {
        const double a = rng.uniform(), b = rng.uniform(), c = rng.uniform();
        for (int64_t ch = 0; ch < 3; ++ch)
          images.data<float>()[((n * 3 + ch) * H + i) * W + j] = static_cast<float>(3 * a + (ch + 1) * b + 0.5 * c * ch * ch);
      }
  auto net = fast_cifar(10, {.airbench = true});
  net->init_whitening(images, /*eps=*/1e-9);
  net->stem->bias.fill_(0.0);
  Tensor y;
  {
    NoGradGuard no_grad;
    y = (*net->stem)(images);  // (N, 24, H-1, W-1)
  }
  // The second moments of the first 12 output channels over all positions: the identity.
  const int64_t P = (H - 1) * (W - 1);
  for (int64_t a = 0; a < 12; ++a)
    for (int64_t b = 0; b < 12; ++b) {
      double m = 0;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t p = 0; p < P; ++p) m += static_cast<double>(y.at((n * 24 + a) * P + p)) * y.at((n * 24 + b) * P + p);
      INFO("channels " << a << ", " << b);
      CHECK(m / static_cast<double>(N * P) == Approx(a == b ? 1.0 : 0.0).margin(2e-3));
    }
  // Largest eigenvalue first: filter k has norm 1 / sqrt(λ_k + eps), so the norms grow with k.
  auto norm = [&](int64_t k) {
    double n2 = 0;
    for (int64_t d = 0; d < 12; ++d) n2 += net->stem->weight.at(k * 12 + d) * net->stem->weight.at(k * 12 + d);
    return std::sqrt(n2);
  };
  for (int64_t k = 1; k < 12; ++k) CHECK(norm(k) >= norm(k - 1));
  // Filters 12..23 are the negatives of 0..11.
  for (int64_t i = 0; i < 12 * 12; ++i) CHECK(net->stem->weight.at(12 * 12 + i) == -net->stem->weight.at(i));
  CHECK_THROWS_WITH(net->init_whitening(Tensor::zeros({2, 1, 8, 8})), Catch::Contains("expected f32 images (N,3,H,W)"));
}

// ---- xternalz/WideResNet-pytorch --------------------------------------------------------------------

TEST_CASE("models: wrn_16_4 and wrn_28_10 are xternalz's WideResNet (names, counts, logits)", "[models]") {
  // 36,479,194 is WRN-28-10 as in the paper: no convolution biases. meliketoy's version, with
  // biases, has 36,489,290.
  check_model({"wrn_16_4", 2748890, 83,
               {{"conv1.weight", {16, 3, 3, 3}},
                {"block1.layer.0.bn1.weight", {16}},
                {"block1.layer.0.bn1.bias", {16}}},
               {{"bn1.num_batches_tracked", {}}, {"fc.weight", {10, 256}}, {"fc.bias", {10}}},
               {{"block1.layer.0.convShortcut.weight", {64, 16, 1, 1}},
                {"block2.layer.0.conv1.weight", {128, 64, 3, 3}},
                {"block3.layer.1.conv2.weight", {256, 256, 3, 3}}}},
              {{-0.3196779, -0.0513607, 0.01037766, 0.1702166, 0.04868225, -0.2554971, 0.05973074, 0.009553567,
                0.2104858, -0.09057605},
               {-0.3224764, -0.05775687, 0.01877522, 0.1641339, 0.04469185, -0.2696817, 0.07742147, 0.02127239,
                0.2327332, -0.1031985}});
  check_model({"wrn_28_10", 36479194, 155,
               {{"conv1.weight", {16, 3, 3, 3}},
                {"block1.layer.0.bn1.weight", {16}},
                {"block1.layer.0.bn1.bias", {16}}},
               {{"bn1.num_batches_tracked", {}}, {"fc.weight", {10, 640}}, {"fc.bias", {10}}},
               {{"block1.layer.0.convShortcut.weight", {160, 16, 1, 1}},
                {"block2.layer.0.conv1.weight", {320, 160, 3, 3}},
                {"block3.layer.3.conv2.weight", {640, 640, 3, 3}}}});
}

TEST_CASE("models: wide_resnet initializes as xternalz (Kaiming normal, fan_out; fc bias 0)", "[models]") {
  manual_seed(0);
  auto net = wide_resnet(16, 4, 10);
  auto* block = dynamic_cast<WideBasicBlock*>((*net->block3->layer)[1].get());
  REQUIRE(block != nullptr);
  const Tensor& w = block->conv2->weight;  // 256x256x3x3: N(0, 2/(9*256))
  double s2 = 0;
  for (int64_t i = 0; i < w.numel(); ++i) s2 += w.at(i) * w.at(i);
  CHECK(std::sqrt(s2 / static_cast<double>(w.numel())) == Approx(std::sqrt(2.0 / (9 * 256))).epsilon(0.02));
  for (int64_t i = 0; i < net->fc->bias.numel(); ++i) CHECK(net->fc->bias.at(i) == 0.0);
}

// ---- summary ------------------------------------------------------------------------------------------

TEST_CASE("models: summarize(resnet20) lists every layer with its shape, parameters and MACs", "[models]") {
  auto net = make_model("resnet20", 10);
  ModelSummary s = summarize(*net, {3, 32, 32});
  CHECK(s.input == Shape{1, 3, 32, 32});
  CHECK(s.output == Shape{1, 10});
  CHECK(s.total_params == 269722);
  // 16*32*32*27 (conv1) + 6 * 16*32*32*144 (layer1) + 32*16*16*144 + 5 * 32*16*16*288 (layer2)
  // + 64*8*8*288 + 5 * 64*8*8*576 (layer3) + 64*10 (linear) = 40.55 M, the usual figure.
  CHECK(s.total_macs == 40551040);

  // 19 convolutions, 19 BatchNorms, 2 option-A shortcuts, 1 linear; no row for the empty
  // Sequentials of the identity shortcuts.
  REQUIRE(s.layers.size() == 41);
  const LayerSummary& conv1 = s.layers[0];
  CHECK(conv1.name == "conv1");
  CHECK(conv1.type == "Conv2d");
  CHECK(conv1.output == Shape{1, 16, 32, 32});
  CHECK(conv1.params == 432);
  CHECK(conv1.macs == 442368);
  CHECK((s.layers[1].name == "bn1" && s.layers[1].type == "BatchNorm2d" && s.layers[1].macs == 0));
  const LayerSummary& down = s.layers[14];  // layer2.0.conv1: 16 -> 32, stride 2
  CHECK(down.name == "layer2.0.conv1");
  CHECK(down.output == Shape{1, 32, 16, 16});
  CHECK(down.macs == 32 * 16 * 16 * 16 * 9);
  const LayerSummary& shortcut = s.layers[18];
  CHECK(shortcut.name == "layer2.0.shortcut");
  CHECK(shortcut.type == "OptionAShortcut");
  CHECK(shortcut.output.empty());  // called inside the block's forward: not observable
  CHECK((s.layers.back().name == "linear" && s.layers.back().output == Shape{1, 10} && s.layers.back().macs == 640));

  const std::string table = format_summary(s);
  CHECK_THAT(table, Catch::Contains("layer2.0.conv1") && Catch::Contains("(1,32,16,16)") &&
                        Catch::Contains("total: 269,722 parameters") && Catch::Contains("40.55 M MACs"));
}

TEST_CASE("models: summarize runs the layers of a Sequential one by one, and leaves the model as it was", "[models]") {
  auto net = make_model("vgg11", 10);
  net->train();
  const NamedTensors before = net->state_dict();
  std::vector<double> running_var = before[5].second.to_vector();
  REQUIRE(before[5].first == "features.1.running_var");

  ModelSummary s = summarize(*net, {3, 32, 32});
  // 8 x (conv, bn, relu) + 5 max-pools + the final AvgPool2d(1, 1) + the classifier.
  REQUIRE(s.layers.size() == 8 * 3 + 5 + 1 + 1);
  CHECK((s.layers[2].name == "features.2" && s.layers[2].type == "ReLU" && s.layers[2].output == Shape{1, 64, 32, 32}));
  CHECK((s.layers[3].name == "features.3" && s.layers[3].type == "MaxPool2d" &&
         s.layers[3].output == Shape{1, 64, 16, 16}));
  CHECK((s.layers[29].type == "AvgPool2d" && s.layers[29].output == Shape{1, 512, 1, 1}));
  for (const LayerSummary& l : s.layers) {
    INFO(l.name);
    CHECK(!l.output.empty());
  }
  CHECK(s.total_params == 9231114);

  // Evaluation mode for the pass: the running statistics did not move, the batch counter did
  // not count, and the model is back in training mode.
  CHECK(net->is_training());
  CHECK(net->state_dict()[5].second.to_vector() == running_var);
  CHECK(net->state_dict()[6].second.item() == 0);  // features.1.num_batches_tracked
}

TEST_CASE("models: multiply-accumulates of resnet18 and mobilenetv2", "[models]") {
  // The same totals as forward hooks on every nn.Conv2d and nn.Linear of the PyTorch models
  // count (out.numel() * weight.numel() / out_channels, and weight.numel()).
  // resnet18: 0.56 G per 32x32 image, the figure usually quoted for kuangliu's ResNet18.
  CHECK(summarize(*make_model("resnet18", 10), {3, 32, 32}).total_macs == 555422720);
  // mobilenetv2: 91 M; the depthwise convolutions are cheap (groups = channels), and
  // kuangliu's CIFAR strides keep the first blocks at 32x32.
  CHECK(summarize(*make_model("mobilenetv2", 10), {3, 32, 32}).total_macs == 91154944);
}
