// resnet.h — ResNet-18 and PreAct-ResNet-18 for CIFAR, as kuangliu/pytorch-cifar builds them
// (models/resnet.py and models/preact_resnet.py), with their state_dict names.
//
// ResNet (He et al. 2016, https://arxiv.org/abs/1512.03385) with the BasicBlock of nn.h:
//   conv1 3x3 3->64 (no bias), bn1, relu                          32x32
//   layer1..layer4: BasicBlocks of 64, 128, 256, 512 planes,
//                   strides 1, 2, 2, 2                            32, 16, 8, 4
//   avg_pool2d(4) (global on the 4x4 map), linear 512->num_classes
// The shortcut of a block that changes shape is a 1x1 convolution and a BatchNorm
// ("option B"), named shortcut.0 and shortcut.1.
//
// Pre-activation ResNet (He et al. 2016, "Identity Mappings in Deep Residual Networks",
// https://arxiv.org/abs/1603.05027): BatchNorm and ReLU come before each convolution, the
// addition is left unactivated, and the network has no bn1 after conv1 and no BatchNorm
// before the pooling (kuangliu's version; the paper adds a final BN-ReLU).
//
//   auto net = edl::resnet18(10);   // = edl::make_model("resnet18", 10), 11,173,962 parameters
//
// Initialization: PyTorch's defaults (nn.h), as kuangliu does not re-initialize.
//
// Tested by tests/test_models.cpp:  build/tests/edl_tests '[models]'
#pragma once

#include <memory>
#include <vector>

#include "engine/nn.h"

namespace edl {

// kuangliu's ResNet(BasicBlock, num_blocks, num_classes): four layers of BasicBlocks.
class ResNet : public Module {
 public:
  ResNet(const std::vector<int64_t>& num_blocks, int64_t num_classes);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Conv2d> conv1;
  std::shared_ptr<BatchNorm2d> bn1;
  std::shared_ptr<Sequential> layer1, layer2, layer3, layer4;
  std::shared_ptr<Linear> linear;
};

// kuangliu's PreActBlock(in_planes, planes, stride):
//   a   = relu(bn1(x))
//   out = conv2(relu(bn2(conv1(a)))) + (shortcut ? shortcut(a) : x)
// The shortcut (a 1x1 convolution with `stride`, no BatchNorm) exists only when the shape
// changes, and then it taps the pre-activated a, not x. Where it does not exist PyTorch has
// no attribute at all, so `shortcut` is null and not registered: no shortcut.* names.
class PreActBlock : public Module {
 public:
  PreActBlock(int64_t in_planes, int64_t planes, int64_t stride = 1);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<BatchNorm2d> bn1, bn2;
  std::shared_ptr<Conv2d> conv1, conv2;
  std::shared_ptr<Sequential> shortcut;  // null when the block keeps its shape
};

// kuangliu's PreActResNet(PreActBlock, num_blocks, num_classes): conv1, layer1..layer4 of
// PreActBlocks (64, 128, 256, 512 planes; strides 1, 2, 2, 2), avg_pool2d(4), linear.
class PreActResNet : public Module {
 public:
  PreActResNet(const std::vector<int64_t>& num_blocks, int64_t num_classes);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Conv2d> conv1;
  std::shared_ptr<Sequential> layer1, layer2, layer3, layer4;
  std::shared_ptr<Linear> linear;
};

std::shared_ptr<ResNet> resnet18(int64_t num_classes);               // ResNet18(): [2, 2, 2, 2]
std::shared_ptr<PreActResNet> preact_resnet18(int64_t num_classes);  // PreActResNet18(): [2, 2, 2, 2]

}  // namespace edl
