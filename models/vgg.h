// vgg.h — VGG-11/13/16/19 with BatchNorm for CIFAR (Simonyan & Zisserman 2014,
// https://arxiv.org/abs/1409.1556), as kuangliu/pytorch-cifar builds them (models/vgg.py),
// with its state_dict names.
//
// `features` is one Sequential, so the names are indices into it: for each number of the
// configuration a Conv2d 3x3 (padding 1, with bias), a BatchNorm2d and a ReLU (three indices);
// for each 'M' a MaxPool2d(2) (one index); at the end an AvgPool2d(kernel_size=1, stride=1),
// which does nothing but is there in kuangliu's code and takes an index. After five 'M' a
// 32x32 image is 512x1x1, and `classifier` is a single Linear 512->num_classes.
//
//   VGG11: 64 M 128 M 256 256 M 512 512 M 512 512 M
//   -> features.0 conv, .1 bn, .2 relu, .3 pool, .4 conv, ..., .26 bn, .27 relu, .28 pool, .29 avgpool
//
//   auto net = edl::vgg("vgg16", 10);   // = edl::make_model("vgg16", 10), 14,728,266 parameters
//
// Initialization: PyTorch's defaults (nn.h), as kuangliu does not re-initialize.
//
// Tested by tests/test_models.cpp:  build/tests/edl_tests '[models]'
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/nn.h"

namespace edl {

// One entry per layer: a number of output channels (conv-bn-relu), or vgg_max_pool for 'M'.
constexpr int64_t vgg_max_pool = 0;
// kuangliu's cfg['VGG11'], ... for name "vgg11", "vgg13", "vgg16", "vgg19".
const std::vector<int64_t>& vgg_config(const std::string& name);

class VGG : public Module {
 public:
  VGG(const std::vector<int64_t>& config, int64_t num_classes);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Sequential> features;
  std::shared_ptr<Linear> classifier;
};

std::shared_ptr<VGG> vgg(const std::string& name, int64_t num_classes);

}  // namespace edl
