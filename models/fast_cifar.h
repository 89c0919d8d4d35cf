// fast_cifar.h — a small, wide, shallow network for fast CIFAR-10 training: the shape of Keller
// Jordan's airbench94 network (https://github.com/KellerJordan/airbench, "94% on CIFAR-10 in
// 3.29 seconds"), reduced to what edl has: ReLU for GELU, a plain trained 2×2 stem where
// airbench freezes a patch-whitening initialization, ordinary BatchNorm.
//
//   stem    Conv2d 3->24, 2×2, no padding, bias           32×32 -> 31×31, ReLU
//   block1  conv1 3×3 24->w1, MaxPool 2, norm1, ReLU,      31×31 -> 15×15
//           conv2 3×3 w1->w1, norm2, ReLU
//   block2  the same, w1->w2                               15×15 -> 7×7
//   block3  the same, w2->w3                               7×7   -> 3×3
//   pool    MaxPool 3 (3×3 -> 1×1), flatten, head: Linear w3->classes, no bias
//
// With the default widths (64, 256, 256): 1,972,792 parameters (10 classes), 118.15 M
// multiply-accumulates per image, a fifth of ResNet-18's 555 M. Seven
// convolutions, all but the stem at 3×3 with 64 channels or more, so nearly every FLOP is in a
// GEMM-shaped product our kernels run fast; docs/fast-training.md has the recipe that trains it
// to 90% and the equivalent PyTorch module (same state_dict names: stem, block1.conv1, ...,
// head).
//
// Tested by tests/test_models.cpp:  build/tests/edl_tests '[models]'
#pragma once

#include <memory>

#include "engine/nn.h"

namespace edl {

class FastCifarBlock : public Module {
 public:
  FastCifarBlock(int64_t in_channels, int64_t out_channels);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Conv2d> conv1, conv2;
  std::shared_ptr<BatchNorm2d> norm1, norm2;
};

class FastCifar : public Module {
 public:
  FastCifar(int64_t num_classes, int64_t w1 = 64, int64_t w2 = 256, int64_t w3 = 256);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Conv2d> stem;
  std::shared_ptr<FastCifarBlock> block1, block2, block3;
  std::shared_ptr<Linear> head;
};

std::shared_ptr<FastCifar> fast_cifar(int64_t num_classes, int64_t w1 = 64, int64_t w2 = 256, int64_t w3 = 256);

}  // namespace edl
