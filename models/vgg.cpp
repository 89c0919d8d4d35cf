// vgg.cpp — kuangliu/pytorch-cifar's VGG (models/vgg.py); see vgg.h.
#include "models/vgg.h"

#include <map>

namespace edl {

const std::vector<int64_t>& vgg_config(const std::string& name) {
  constexpr int64_t M = vgg_max_pool;
  static const std::map<std::string, std::vector<int64_t>> configs = {
      {"vgg11", {64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M}},
      {"vgg13", {64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M}},
      {"vgg16", {64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M}},
      {"vgg19", {64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M, 512, 512, 512, 512, M}},
  };
  auto it = configs.find(name);
  EDL_CHECK(it != configs.end(), "vgg: unknown configuration '{}' (known: vgg11, vgg13, vgg16, vgg19)", name);
  return it->second;
}

VGG::VGG(const std::vector<int64_t>& config, int64_t num_classes) {
  EDL_CHECK(num_classes >= 1, "VGG: num_classes must be at least 1, got {}", num_classes);
  // kuangliu's _make_layers.
  features = register_module("features", std::make_shared<Sequential>());
  int64_t in_channels = 3;
  for (int64_t c : config) {
    if (c == vgg_max_pool) {
      features->add(std::make_shared<MaxPool2d>(2, 2));
    } else {
      EDL_CHECK(c > 0, "VGG: configuration entries are channel counts or vgg_max_pool, got {}", c);
      features->add(std::make_shared<Conv2d>(in_channels, c, 3, 1, 1));  // with bias, as in kuangliu's code
      features->add(std::make_shared<BatchNorm2d>(c));
      features->add(std::make_shared<ReLU>());
      in_channels = c;
    }
  }
  features->add(std::make_shared<AvgPool2d>(1, 1));
  // kuangliu writes nn.Linear(512, 10); the 512 is the last configuration entry.
  classifier = register_module("classifier", std::make_shared<Linear>(in_channels, num_classes));
}

Tensor VGG::forward(const Tensor& x) { return (*classifier)(flatten((*features)(x))); }

std::shared_ptr<VGG> vgg(const std::string& name, int64_t num_classes) {
  return std::make_shared<VGG>(vgg_config(name), num_classes);
}

}  // namespace edl
