// fast_cifar.h — a small, wide, shallow network for fast CIFAR-10 training: the shape of Keller
// Jordan's airbench94 network (https://github.com/KellerJordan/airbench, "94% on CIFAR-10 in
// 3.29 seconds"), in two versions:
//
//   fast_cifar  the shape alone: ReLU, ordinary BatchNorm, a trained 2×2 stem, default init.
//   airbench    with airbench94's choices for the layers themselves:
//               - the stem's weights whiten 2×2 patches of the data (init_whitening, called by
//                 the trainer on 5000 training images) and are frozen; its bias is trained;
//               - GELU instead of ReLU;
//               - BatchNorm with a fixed scale of 1 (weight not trained), eps 1e-12 and
//                 momentum 0.4 (airbench's "0.6" is the weight of the old running statistics);
//               - each 3×3 convolution's first C_in filters start as the identity (Dirac), an
//                 implicit residual connection;
//               - the logits are scaled by 1/9.
//               The optimizer side of the recipe (Lookahead, a larger learning rate for the
//               norms' biases, translation) is in the trainer's flags: docs/fast-training.md.
//
//   stem    Conv2d 3->24, 2×2, no padding, bias           32×32 -> 31×31, ReLU/GELU
//   block1  conv1 3×3 24->w1, MaxPool 2, norm1, act,       31×31 -> 15×15
//           conv2 3×3 w1->w1, norm2, act
//   block2  the same, w1->w2                               15×15 -> 7×7
//   block3  the same, w2->w3                               7×7   -> 3×3
//   pool    MaxPool 3 (3×3 -> 1×1), flatten, head: Linear w3->classes, no bias
//
// With the default widths (64, 256, 256): 1,972,792 parameters (10 classes; the airbench
// version trains 1,971,352 of them: not the stem's weights nor the norms' scales), 118.15 M
// multiply-accumulates per image, a fifth of ResNet-18's 555 M. Seven convolutions, all but the
// stem at 3×3 with 64 channels or more, so nearly every FLOP is in a GEMM-shaped product our
// kernels run fast. docs/fast-training.md has the recipes and the equivalent PyTorch modules
// (same state_dict names: stem, block1.conv1, ..., head).
//
// Tested by tests/test_models.cpp:  build/tests/edl_tests '[models]'
#pragma once

#include <memory>

#include "engine/nn.h"

namespace edl {

struct FastCifarOptions {
  int64_t w1 = 64, w2 = 256, w3 = 256;
  bool airbench = false;  // the layer choices listed above
};

class FastCifarBlock : public Module {
 public:
  FastCifarBlock(int64_t in_channels, int64_t out_channels, bool airbench);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Conv2d> conv1, conv2;
  std::shared_ptr<BatchNorm2d> norm1, norm2;
  bool gelu_activation;
};

class FastCifar : public Module {
 public:
  FastCifar(int64_t num_classes, FastCifarOptions options = {});
  Tensor forward(const Tensor& x) override;

  // airbench's whitening stem: images f32 (N,3,H,W), normalized as for training. With Σ the
  // (uncentred) second-moment matrix of all 2×2 patches of the images (12×12) and Σ = Σ_k λ_k
  // v_k v_kᵀ its eigendecomposition, filter k (λ in decreasing order) becomes v_k / sqrt(λ_k +
  // eps) and filter 12 + k its negative: the first 12 outputs of the stem then have an identity
  // second-moment matrix over the data (up to eps), and the ReLU/GELU after it sees both signs.
  // Needs a 3→24 stem with a 2×2 kernel (the default); the bias is left as it is.
  void init_whitening(const Tensor& images, double eps = 5e-4);

  std::shared_ptr<Conv2d> stem;
  std::shared_ptr<FastCifarBlock> block1, block2, block3;
  std::shared_ptr<Linear> head;
  FastCifarOptions options;
};

std::shared_ptr<FastCifar> fast_cifar(int64_t num_classes, FastCifarOptions options = {});

}  // namespace edl
