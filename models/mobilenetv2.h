// mobilenetv2.h — MobileNetV2 for CIFAR (Sandler et al. 2018, "MobileNetV2: Inverted
// Residuals and Linear Bottlenecks", https://arxiv.org/abs/1801.04381), as kuangliu/pytorch-cifar
// builds it (models/mobilenetv2.py), with its state_dict names.
//
// A block expands the channels t times with a 1x1 convolution, filters each channel alone with
// a 3x3 depthwise convolution (groups = channels), and projects back down with a 1x1
// convolution that has no activation (the "linear bottleneck"):
//   out = bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x))))))))  [+ shortcut(x) when stride is 1]
//
// kuangliu's CIFAR changes to the ImageNet network, kept here:
//   - conv1 has stride 1 (not 2), and the second stage (t=6, 24 channels) stride 1 (not 2):
//     configuration (expansion, out_planes, num_blocks, stride) =
//     (1,16,1,1) (6,24,2,1) (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2) (6,320,1,1),
//     so a 32x32 image is 4x4 at the end, and the pooling is avg_pool2d(4);
//   - ReLU, not ReLU6;
//   - every stride-1 block has a residual, even when in_planes != out_planes: then the
//     shortcut is a 1x1 convolution and a BatchNorm (shortcut.0, shortcut.1). The paper and
//     torchvision have no residual there; these projections are part of kuangliu's
//     2,296,922 parameters;
//   - the t=1 block keeps its (32->32) expansion convolution, which torchvision drops.
//
// width (ours; kuangliu has none) scales every channel count as torchvision's width_mult does
// (torchvision/models/mobilenetv2.py): c -> _make_divisible(c*width, 8), and the last 1x1
// convolution to _make_divisible(1280*max(1, width), 8). width 1.0 is kuangliu's network.
//
//   auto net = edl::mobilenetv2(10);   // = edl::make_model("mobilenetv2", 10)
//
// Initialization: PyTorch's defaults (nn.h), as kuangliu does not re-initialize.
//
// Tested by tests/test_models.cpp:  build/tests/edl_tests '[models]'
#pragma once

#include <memory>

#include "engine/nn.h"

namespace edl {

// kuangliu's Block(in_planes, out_planes, expansion, stride): expand 1x1, depthwise 3x3 with
// `stride`, project 1x1; each followed by a BatchNorm, the first two by a ReLU.
class MobileNetV2Block : public Module {
 public:
  MobileNetV2Block(int64_t in_planes, int64_t out_planes, int64_t expansion, int64_t stride);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Conv2d> conv1, conv2, conv3;
  std::shared_ptr<BatchNorm2d> bn1, bn2, bn3;
  std::shared_ptr<Sequential> shortcut;  // empty (identity) unless stride 1 and in != out
  int64_t stride;
};

class MobileNetV2 : public Module {
 public:
  explicit MobileNetV2(int64_t num_classes, double width = 1.0);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Conv2d> conv1, conv2;
  std::shared_ptr<BatchNorm2d> bn1, bn2;
  std::shared_ptr<Sequential> layers;  // the 17 blocks, layers.0 ... layers.16
  std::shared_ptr<Linear> linear;
};

std::shared_ptr<MobileNetV2> mobilenetv2(int64_t num_classes, double width = 1.0);

}  // namespace edl
