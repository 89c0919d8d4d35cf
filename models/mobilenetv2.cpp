// mobilenetv2.cpp — kuangliu/pytorch-cifar's MobileNetV2 (models/mobilenetv2.py), with a
// torchvision-style width multiplier; see mobilenetv2.h.
#include "models/mobilenetv2.h"

#include <algorithm>
#include <cmath>

namespace edl {

MobileNetV2Block::MobileNetV2Block(int64_t in_planes, int64_t out_planes, int64_t expansion, int64_t stride_)
    : stride(stride_) {
  const int64_t planes = expansion * in_planes;
  conv1 = register_module("conv1", std::make_shared<Conv2d>(in_planes, planes, 1, 1, 0, 1, false));
  bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(planes));
  conv2 = register_module("conv2", std::make_shared<Conv2d>(planes, planes, 3, stride, 1, /*groups=*/planes, false));
  bn2 = register_module("bn2", std::make_shared<BatchNorm2d>(planes));
  conv3 = register_module("conv3", std::make_shared<Conv2d>(planes, out_planes, 1, 1, 0, 1, false));
  bn3 = register_module("bn3", std::make_shared<BatchNorm2d>(out_planes));
  shortcut = register_module("shortcut", std::make_shared<Sequential>());
  if (stride == 1 && in_planes != out_planes) {
    shortcut->add(std::make_shared<Conv2d>(in_planes, out_planes, 1, 1, 0, 1, false));
    shortcut->add(std::make_shared<BatchNorm2d>(out_planes));
  }
}

Tensor MobileNetV2Block::forward(const Tensor& x) {
  Tensor out = bn1->forward_relu((*conv1)(x));
  out = bn2->forward_relu((*conv2)(out));
  out = (*bn3)((*conv3)(out));
  return stride == 1 ? out + (*shortcut)(x) : out;
}

// torchvision's _make_divisible(v, 8): the nearest multiple of 8, at least 8, and never more
// than 10% below v.
static int64_t make_divisible(double v, int64_t divisor = 8) {
  int64_t r = std::max(divisor, static_cast<int64_t>(v + divisor / 2.0) / divisor * divisor);
  if (r < 0.9 * v) r += divisor;
  return r;
}

MobileNetV2::MobileNetV2(int64_t num_classes, double width) {
  EDL_CHECK(num_classes >= 1, "MobileNetV2: num_classes must be at least 1, got {}", num_classes);
  EDL_CHECK(width > 0, "MobileNetV2: width must be positive, got {}", width);
  struct Stage {
    int64_t expansion, out_planes, num_blocks, stride;
  };
  // kuangliu's cfg: "NOTE: change stride 2 -> 1 for CIFAR10" on the second stage.
  const Stage cfg[] = {{1, 16, 1, 1}, {6, 24, 2, 1}, {6, 32, 3, 2},  {6, 64, 4, 2},
                       {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};

  int64_t in_planes = make_divisible(32 * width);
  conv1 = register_module("conv1", std::make_shared<Conv2d>(3, in_planes, 3, 1, 1, 1, false));  // stride 1 for CIFAR
  bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(in_planes));
  layers = register_module("layers", std::make_shared<Sequential>());
  for (const Stage& s : cfg) {
    const int64_t out_planes = make_divisible(s.out_planes * width);
    for (int64_t i = 0; i < s.num_blocks; ++i) {
      layers->add(std::make_shared<MobileNetV2Block>(in_planes, out_planes, s.expansion, i == 0 ? s.stride : 1));
      in_planes = out_planes;
    }
  }
  const int64_t last = make_divisible(1280 * std::max(1.0, width));
  conv2 = register_module("conv2", std::make_shared<Conv2d>(in_planes, last, 1, 1, 0, 1, false));
  bn2 = register_module("bn2", std::make_shared<BatchNorm2d>(last));
  linear = register_module("linear", std::make_shared<Linear>(last, num_classes));
}

Tensor MobileNetV2::forward(const Tensor& x) {
  Tensor out = bn1->forward_relu((*conv1)(x));
  out = (*layers)(out);
  out = bn2->forward_relu((*conv2)(out));
  out = avg_pool2d(out, 4);  // kuangliu: "change pooling kernel_size 7 -> 4 for CIFAR10"
  return (*linear)(flatten(out));
}

std::shared_ptr<MobileNetV2> mobilenetv2(int64_t num_classes, double width) {
  return std::make_shared<MobileNetV2>(num_classes, width);
}

}  // namespace edl
