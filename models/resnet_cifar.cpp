// resnet_cifar.cpp — ResNet-20/32/44/56/110 for CIFAR, as akamaster/pytorch_resnet_cifar10
// (resnet.py) builds them; see resnet_cifar.h.
#include "models/resnet_cifar.h"

#include <cmath>

#include "models/init.h"

namespace edl {

OptionAShortcut::OptionAShortcut(int64_t in_planes, int64_t planes, int64_t stride) : pad(planes / 4) {
  // akamaster's lambda always takes x[:, :, ::2, ::2] and pads planes//4 channels on each
  // side: it fits only the blocks that halve the resolution and double the channels.
  EDL_CHECK(stride == 2 && in_planes + 2 * pad == planes,
            "OptionAShortcut: the option-A shortcut halves the resolution and pads planes/4 zero channels on "
            "each side; it needs stride 2 and planes = 2*in_planes (a multiple of 4), got in_planes={}, planes={}, "
            "stride={}",
            in_planes, planes, stride);
}

Tensor OptionAShortcut::forward(const Tensor& x) {
  return subsample_pad2d(x, /*stride=*/2, pad);  // F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad))
}

ResNetCifarBlock::ResNetCifarBlock(int64_t in_planes, int64_t planes, int64_t stride) {
  conv1 = register_module("conv1", std::make_shared<Conv2d>(in_planes, planes, 3, stride, 1, 1, false));
  bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(planes));
  conv2 = register_module("conv2", std::make_shared<Conv2d>(planes, planes, 3, 1, 1, 1, false));
  bn2 = register_module("bn2", std::make_shared<BatchNorm2d>(planes));
  if (stride != 1 || in_planes != planes)
    shortcut = register_module("shortcut", std::make_shared<OptionAShortcut>(in_planes, planes, stride));
  else
    shortcut = register_module("shortcut", std::make_shared<Sequential>());  // the identity
}

Tensor ResNetCifarBlock::forward(const Tensor& x) {
  Tensor out = bn1->forward_relu((*conv1)(x));
  out = (*conv2)(out);
  return bn2->forward_add_relu(out, (*shortcut)(x));  // relu(bn2(out) + shortcut(x)), one op
}

// strides = [stride] + [1]*(n-1): only the first block of a layer changes the shape.
static std::shared_ptr<Sequential> make_layer(int64_t& in_planes, int64_t planes, int64_t n, int64_t stride) {
  auto layer = std::make_shared<Sequential>();
  for (int64_t i = 0; i < n; ++i) {
    layer->add(std::make_shared<ResNetCifarBlock>(in_planes, planes, i == 0 ? stride : 1));
    in_planes = planes;
  }
  return layer;
}

ResNetCifar::ResNetCifar(int64_t depth, int64_t num_classes, double width) {
  EDL_CHECK(depth >= 8 && (depth - 2) % 6 == 0,
            "ResNetCifar: depth {} must be 6n+2 with n >= 1 (20, 32, 44, 56, 110, 1202)", depth);
  EDL_CHECK(num_classes >= 1, "ResNetCifar: num_classes must be at least 1, got {}", num_classes);
  const int64_t n = (depth - 2) / 6;
  const int64_t w = std::llround(16 * width);
  EDL_CHECK(w >= 2 && w % 2 == 0,
            "ResNetCifar: width {} gives {} planes in layer1; they must be even (and at least 2) so that the "
            "option-A shortcuts can pad a quarter of the doubled planes on each side",
            width, w);

  int64_t in_planes = w;
  conv1 = register_module("conv1", std::make_shared<Conv2d>(3, w, 3, 1, 1, 1, false));
  bn1 = register_module("bn1", std::make_shared<BatchNorm2d>(w));
  layer1 = register_module("layer1", make_layer(in_planes, w, n, 1));
  layer2 = register_module("layer2", make_layer(in_planes, 2 * w, n, 2));
  layer3 = register_module("layer3", make_layer(in_planes, 4 * w, n, 2));
  linear = register_module("linear", std::make_shared<Linear>(4 * w, num_classes));

  // akamaster's self.apply(_weights_init): kaiming_normal_ on every Conv2d and Linear weight.
  for_each_module(*this, [](const std::string&, Module& m) {
    if (auto* conv = dynamic_cast<Conv2d*>(&m)) kaiming_normal_(conv->weight);
    if (auto* fc = dynamic_cast<Linear*>(&m)) kaiming_normal_(fc->weight);
  });
}

Tensor ResNetCifar::forward(const Tensor& x) {
  Tensor out = bn1->forward_relu((*conv1)(x));
  out = (*layer3)((*layer2)((*layer1)(out)));
  // akamaster: F.avg_pool2d(out, out.size()[3]) and a flatten, i.e. a global average pool.
  return (*linear)(global_avg_pool2d(out));
}

std::shared_ptr<ResNetCifar> resnet_cifar(int64_t depth, int64_t num_classes, double width) {
  return std::make_shared<ResNetCifar>(depth, num_classes, width);
}

}  // namespace edl
