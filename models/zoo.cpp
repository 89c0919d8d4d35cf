// zoo.cpp — the zoo's names, each mapped to a constructor of one of the model families
// (see zoo.h for the list and the PyTorch code each one follows), and small_cnn.
#include "models/zoo.h"

#include <functional>
#include <utility>

namespace edl {

// conv 3x3 (padding 1, no bias: the BatchNorm's shift replaces it) + BatchNorm + ReLU
static void conv_bn_relu(Sequential& s, int64_t in, int64_t out) {
  s.add(std::make_shared<Conv2d>(in, out, 3, 1, 1, 1, false));
  s.add(std::make_shared<BatchNorm2d>(out));
  s.add(std::make_shared<ReLU>());
}

std::shared_ptr<Sequential> small_cnn(int64_t num_classes) {
  auto s = std::make_shared<Sequential>();
  conv_bn_relu(*s, 3, 16);
  s->add(std::make_shared<MaxPool2d>(2));
  conv_bn_relu(*s, 16, 32);
  s->add(std::make_shared<MaxPool2d>(2));
  conv_bn_relu(*s, 32, 64);
  s->add(std::make_shared<GlobalAvgPool2d>());
  s->add(std::make_shared<Linear>(64, num_classes));
  return s;
}

using Factory = std::function<std::shared_ptr<Module>(int64_t num_classes)>;

static const std::vector<std::pair<std::string, Factory>>& zoo() {
  static const std::vector<std::pair<std::string, Factory>> models = {
      {"small_cnn", [](int64_t k) { return small_cnn(k); }},
      {"resnet20", [](int64_t k) { return resnet_cifar(20, k); }},
      {"resnet32", [](int64_t k) { return resnet_cifar(32, k); }},
      {"resnet44", [](int64_t k) { return resnet_cifar(44, k); }},
      {"resnet56", [](int64_t k) { return resnet_cifar(56, k); }},
      {"resnet110", [](int64_t k) { return resnet_cifar(110, k); }},
      {"resnet18", [](int64_t k) { return resnet18(k); }},
      {"preact_resnet18", [](int64_t k) { return preact_resnet18(k); }},
      {"vgg11", [](int64_t k) { return vgg("vgg11", k); }},
      {"vgg13", [](int64_t k) { return vgg("vgg13", k); }},
      {"vgg16", [](int64_t k) { return vgg("vgg16", k); }},
      {"vgg19", [](int64_t k) { return vgg("vgg19", k); }},
      {"mobilenetv2", [](int64_t k) { return mobilenetv2(k); }},
      {"densenet_cifar", [](int64_t k) { return densenet_cifar(k); }},
      {"wrn_16_4", [](int64_t k) { return wide_resnet(16, 4, k); }},
      {"wrn_28_10", [](int64_t k) { return wide_resnet(28, 10, k); }},
      {"fast_cifar", [](int64_t k) { return fast_cifar(k); }},
      {"airbench", [](int64_t k) { return fast_cifar(k, {.airbench = true}); }},
  };
  return models;
}

std::vector<std::string> model_names() {
  std::vector<std::string> names;
  for (const auto& [name, _] : zoo()) names.push_back(name);
  return names;
}

std::shared_ptr<Module> make_model(const std::string& name, int64_t num_classes) {
  EDL_CHECK(num_classes >= 1, "make_model: num_classes must be at least 1, got {}", num_classes);
  for (const auto& [n, factory] : zoo())
    if (n == name) return factory(num_classes);
  throw Error(fmt::format("unknown model '{}' (known: {})", name, join(model_names())));
}

}  // namespace edl
