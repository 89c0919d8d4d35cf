// fast_cifar.cpp — the airbench-shaped network of fast_cifar.h.
#include "models/fast_cifar.h"

namespace edl {

FastCifarBlock::FastCifarBlock(int64_t in_channels, int64_t out_channels) {
  // Registration order = state_dict order of the PyTorch module in docs/fast-training.md.
  conv1 = register_module("conv1", std::make_shared<Conv2d>(in_channels, out_channels, 3, 1, 1, 1, false));
  norm1 = register_module("norm1", std::make_shared<BatchNorm2d>(out_channels));
  conv2 = register_module("conv2", std::make_shared<Conv2d>(out_channels, out_channels, 3, 1, 1, 1, false));
  norm2 = register_module("norm2", std::make_shared<BatchNorm2d>(out_channels));
}

Tensor FastCifarBlock::forward(const Tensor& x) {
  // Pooling before the norm, as airbench does: the norm and ReLU then run on a quarter of the
  // pixels.
  Tensor h = relu((*norm1)(max_pool2d((*conv1)(x), 2, 2, 0)));
  return relu((*norm2)((*conv2)(h)));
}

FastCifar::FastCifar(int64_t num_classes, int64_t w1, int64_t w2, int64_t w3) {
  EDL_CHECK(num_classes >= 1, "FastCifar: num_classes must be at least 1, got {}", num_classes);
  EDL_CHECK(w1 >= 1 && w2 >= 1 && w3 >= 1, "FastCifar: widths must be positive, got {}, {}, {}", w1, w2, w3);
  stem = register_module("stem", std::make_shared<Conv2d>(3, 24, 2, 1, 0, 1, true));
  block1 = register_module("block1", std::make_shared<FastCifarBlock>(24, w1));
  block2 = register_module("block2", std::make_shared<FastCifarBlock>(w1, w2));
  block3 = register_module("block3", std::make_shared<FastCifarBlock>(w2, w3));
  head = register_module("head", std::make_shared<Linear>(w3, num_classes, false));
}

Tensor FastCifar::forward(const Tensor& x) {
  Tensor h = (*block3)((*block2)((*block1)(relu((*stem)(x)))));
  return (*head)(flatten(max_pool2d(h, 3, 3, 0)));
}

std::shared_ptr<FastCifar> fast_cifar(int64_t num_classes, int64_t w1, int64_t w2, int64_t w3) {
  return std::make_shared<FastCifar>(num_classes, w1, w2, w3);
}

}  // namespace edl
