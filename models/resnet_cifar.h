// resnet_cifar.h — the CIFAR ResNets of He et al. 2016 ("Deep Residual Learning for Image
// Recognition", https://arxiv.org/abs/1512.03385, section 4.2): ResNet-20, 32, 44, 56, 110.
// They follow akamaster/pytorch_resnet_cifar10 (resnet.py) layer for layer, with its
// state_dict names, so its checkpoints load here and ours load there:
//
//   conv1 3x3 3->16 (no bias), bn1, relu                          32x32
//   layer1: n blocks, 16 planes                                   32x32
//   layer2: n blocks, 32 planes, the first one with stride 2      16x16
//   layer3: n blocks, 64 planes, the first one with stride 2       8x8
//   global average pool, linear 64->num_classes
//
// depth = 6n + 2 (two 3x3 convolutions per block, plus conv1 and linear). The blocks are not
// the BasicBlock of nn.h (kuangliu's, with a 1x1-convolution shortcut): where the shape changes
// the shortcut is the paper's "option A", parameter-free subsampling and zero channels, which
// is why ResNet-20 has 0.27M parameters and not more.
//
//   auto net = edl::resnet_cifar(20, 10);      // = edl::make_model("resnet20", 10)
//   // state_dict: conv1.weight, bn1.*, layer1.0.conv1.weight, ..., linear.weight, linear.bias
//
// Weights are initialized as akamaster's _weights_init does: every Conv2d and Linear weight
// ~ N(0, 2/fan_in); Linear's bias keeps PyTorch's default U(-1/sqrt(64), 1/sqrt(64)).
//
// Tested by tests/test_models.cpp:  build/tests/edl_tests '[models]'
#pragma once

#include <memory>

#include "engine/nn.h"

namespace edl {

// akamaster's LambdaLayer(lambda x: F.pad(x[:, :, ::2, ::2], (0,0,0,0, planes//4, planes//4))):
// keeps every second row and column, then puts planes/4 zero channels before and after the
// input's channels. No parameters. One op, subsample_pad2d, which writes each output once
// (it was avg_pool2d with a 1x1 window and stride 2, then a concat with zero tensors: every
// output written twice).
class OptionAShortcut : public Module {
 public:
  OptionAShortcut(int64_t in_planes, int64_t planes, int64_t stride);
  Tensor forward(const Tensor& x) override;
  int64_t pad;  // zero channels on each side
};

// akamaster's BasicBlock(in_planes, planes, stride, option='A'):
//   y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))
// conv1 3x3 with `stride`, conv2 3x3, both padding 1 and no bias. shortcut is an empty
// Sequential (the identity) when the shape is kept, else an OptionAShortcut.
class ResNetCifarBlock : public Module {
 public:
  ResNetCifarBlock(int64_t in_planes, int64_t planes, int64_t stride = 1);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Conv2d> conv1, conv2;
  std::shared_ptr<BatchNorm2d> bn1, bn2;
  std::shared_ptr<Module> shortcut;
};

// akamaster's ResNet(BasicBlock, [n, n, n], num_classes) with n = (depth - 2) / 6.
// width scales the 16/32/64 planes (an addition of ours, for width-multiplier experiments;
// 1.0 is akamaster's network). 16*width is rounded and must be even, because option A pads by
// a quarter of the doubled width on each side.
class ResNetCifar : public Module {
 public:
  ResNetCifar(int64_t depth, int64_t num_classes, double width = 1.0);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Conv2d> conv1;
  std::shared_ptr<BatchNorm2d> bn1;
  std::shared_ptr<Sequential> layer1, layer2, layer3;
  std::shared_ptr<Linear> linear;
};

// resnet_cifar(20, k) is akamaster's resnet20(); depth 32, 44, 56, 110 (and 1202) likewise.
std::shared_ptr<ResNetCifar> resnet_cifar(int64_t depth, int64_t num_classes, double width = 1.0);

}  // namespace edl
