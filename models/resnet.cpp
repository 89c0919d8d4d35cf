// resnet.cpp — kuangliu/pytorch-cifar's ResNet (models/resnet.py) and pre-activation ResNet
// (models/preact_resnet.py); see resnet.h.
#include "models/resnet.h"

namespace edl {

static void check_num_blocks(const char* what, const std::vector<int64_t>& num_blocks, int64_t num_classes) {
  EDL_CHECK(num_blocks.size() == 4, "{}: num_blocks must list 4 layers (ResNet-18: {{2, 2, 2, 2}}), got {}", what,
            num_blocks.size());
  for (int64_t n : num_blocks) EDL_CHECK(n >= 1, "{}: every layer needs at least one block, got {}", what, n);
  EDL_CHECK(num_classes >= 1, "{}: num_classes must be at least 1, got {}", what, num_classes);
}

// _make_layer: strides = [stride] + [1]*(n-1); in_planes follows the blocks.
template <typename Block>
static std::shared_ptr<Sequential> make_layer(int64_t& in_planes, int64_t planes, int64_t n, int64_t stride) {
  auto layer = std::make_shared<Sequential>();
  for (int64_t i = 0; i < n; ++i) {
    layer->add(std::make_shared<Block>(in_planes, planes, i == 0 ? stride : 1));
    in_planes = planes;
  }
  return layer;
}

// ---- ResNet -------------------------------------------------------------------------------------

ResNet::ResNet(const std::vector<int64_t>& num_blocks, int64_t num_classes) {
  check_num_blocks("ResNet", num_blocks, num_classes);
  int64_t in_planes = 64;
  conv1 = register_module("conv1", std::make_shared<Conv2d>(3, 64, 3, 1, 1, 1, false));
  bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(64));
  layer1 = register_module("layer1", make_layer<BasicBlock>(in_planes, 64, num_blocks[0], 1));
  layer2 = register_module("layer2", make_layer<BasicBlock>(in_planes, 128, num_blocks[1], 2));
  layer3 = register_module("layer3", make_layer<BasicBlock>(in_planes, 256, num_blocks[2], 2));
  layer4 = register_module("layer4", make_layer<BasicBlock>(in_planes, 512, num_blocks[3], 2));
  linear = register_module("linear", std::make_shared<Linear>(512, num_classes));
}

Tensor ResNet::forward(const Tensor& x) {
  Tensor out = bn1->forward_relu((*conv1)(x));
  out = (*layer4)((*layer3)((*layer2)((*layer1)(out))));
  out = avg_pool2d(out, 4);  // kuangliu: F.avg_pool2d(out, 4); the 4x4 map of a 32x32 image becomes 1x1
  return (*linear)(flatten(out));
}

// ---- PreActResNet -------------------------------------------------------------------------------

PreActBlock::PreActBlock(int64_t in_planes, int64_t planes, int64_t stride) {
  bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(in_planes));
  conv1 = register_module("conv1", std::make_shared<Conv2d>(in_planes, planes, 3, stride, 1, 1, false));
  bn2 = register_module("bn2", std::make_shared<BatchNorm2d>(planes));
  conv2 = register_module("conv2", std::make_shared<Conv2d>(planes, planes, 3, 1, 1, 1, false));
  if (stride != 1 || in_planes != planes)
    shortcut = register_module(
        "shortcut", std::make_shared<Sequential>(std::make_shared<Conv2d>(in_planes, planes, 1, stride, 0, 1, false)));
}

Tensor PreActBlock::forward(const Tensor& x) {
  Tensor a = bn1->forward_relu(x);
  Tensor skip = shortcut ? (*shortcut)(a) : x;
  Tensor out = (*conv1)(a);
  out = (*conv2)(bn2->forward_relu(out));
  return out + skip;
}

PreActResNet::PreActResNet(const std::vector<int64_t>& num_blocks, int64_t num_classes) {
  check_num_blocks("PreActResNet", num_blocks, num_classes);
  int64_t in_planes = 64;
  conv1 = register_module("conv1", std::make_shared<Conv2d>(3, 64, 3, 1, 1, 1, false));
  layer1 = register_module("layer1", make_layer<PreActBlock>(in_planes, 64, num_blocks[0], 1));
  layer2 = register_module("layer2", make_layer<PreActBlock>(in_planes, 128, num_blocks[1], 2));
  layer3 = register_module("layer3", make_layer<PreActBlock>(in_planes, 256, num_blocks[2], 2));
  layer4 = register_module("layer4", make_layer<PreActBlock>(in_planes, 512, num_blocks[3], 2));
  linear = register_module("linear", std::make_shared<Linear>(512, num_classes));
}

Tensor PreActResNet::forward(const Tensor& x) {
  Tensor out = (*conv1)(x);
  out = (*layer4)((*layer3)((*layer2)((*layer1)(out))));
  out = avg_pool2d(out, 4);
  return (*linear)(flatten(out));
}

std::shared_ptr<ResNet> resnet18(int64_t num_classes) {
  return std::make_shared<ResNet>(std::vector<int64_t>{2, 2, 2, 2}, num_classes);
}

std::shared_ptr<PreActResNet> preact_resnet18(int64_t num_classes) {
  return std::make_shared<PreActResNet>(std::vector<int64_t>{2, 2, 2, 2}, num_classes);
}

}  // namespace edl
