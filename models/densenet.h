// densenet.h — DenseNet-BC for CIFAR (Huang et al. 2017, "Densely Connected Convolutional
// Networks", https://arxiv.org/abs/1608.06993), as kuangliu/pytorch-cifar builds it
// (models/densenet.py), with its state_dict names.
//
// Inside a dense block every layer sees the concatenation of all feature maps before it and
// adds `growth_rate` new channels. "BC" is the compact variant: each layer first narrows its
// input with a 1x1 convolution to 4*growth_rate channels (Bottleneck), and each transition
// halves the channels (reduction 0.5) as well as the resolution.
//
//   conv1 3x3 3->2*growth (no bias)                                     32x32
//   dense1, trans1, dense2, trans2, dense3, trans3, dense4              32, 16, 8, 4
//   bn, relu, avg_pool2d(4), linear
//
// densenet_cifar is kuangliu's densenet_cifar(): blocks {6, 12, 24, 16}, growth rate 12
// (1,000,618 parameters with 10 classes); DenseNet121 is {6, 12, 24, 16} with growth 32.
//
//   auto net = edl::densenet_cifar(10);   // = edl::make_model("densenet_cifar", 10)
//
// Initialization: PyTorch's defaults (nn.h), as kuangliu does not re-initialize.
//
// Tested by tests/test_models.cpp:  build/tests/edl_tests '[models]'
#pragma once

#include <memory>
#include <vector>

#include "engine/nn.h"

namespace edl {

// kuangliu's Bottleneck(in_planes, growth_rate):
//   y = concat([conv2(relu(bn2(conv1(relu(bn1(x)))))), x], 1)
// conv1 1x1 in->4*growth, conv2 3x3 4*growth->growth (padding 1), no biases. The new channels
// come FIRST and the input after them (torch.cat([out, x], 1)): the order matters for loading
// weights, since every later layer's conv1 sees its input channels in this order.
class DenseBottleneck : public Module {
 public:
  DenseBottleneck(int64_t in_planes, int64_t growth_rate);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<BatchNorm2d> bn1, bn2;
  std::shared_ptr<Conv2d> conv1, conv2;
};

// kuangliu's Transition(in_planes, out_planes): y = avg_pool2d(conv(relu(bn(x))), 2), conv 1x1.
class DenseTransition : public Module {
 public:
  DenseTransition(int64_t in_planes, int64_t out_planes);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<BatchNorm2d> bn;
  std::shared_ptr<Conv2d> conv;
};

// kuangliu's DenseNet(Bottleneck, nblocks, growth_rate, reduction, num_classes).
class DenseNet : public Module {
 public:
  DenseNet(const std::vector<int64_t>& nblocks, int64_t growth_rate, int64_t num_classes, double reduction = 0.5);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Conv2d> conv1;
  std::shared_ptr<Sequential> dense1, dense2, dense3, dense4;
  std::shared_ptr<DenseTransition> trans1, trans2, trans3;
  std::shared_ptr<BatchNorm2d> bn;
  std::shared_ptr<Linear> linear;
};

std::shared_ptr<DenseNet> densenet_cifar(int64_t num_classes);

}  // namespace edl
